//! Raw gRPC requests over a real mTLS channel: a request body of arbitrary
//! bytes, so that a test can send frames no gRPC library would (a body
//! ending inside a frame, a set compression flag, no message at all), and
//! read the status the server answers.

use std::future::poll_fn;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tonic::codegen::Service;
use tonic::transport::Channel;

/// One gRPC frame: the compression flag, the length, the message.
pub fn frame(compressed: u8, message: &[u8]) -> Vec<u8> {
    let mut framed = vec![compressed];
    framed.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(message);
    framed
}

/// Sends `body` as the whole request body of a call of `path` (e.g.
/// `/tokenvault.v1.GetService/GetAccessToken`) on `channel`; returns the
/// status code and message the server answered, from the headers of a
/// trailers-only answer or from the trailers.
pub async fn raw_call(
    channel: &mut Channel,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(tonic::Code, String)> {
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(Full::new(Bytes::from(body))))?;
    poll_fn(|cx| channel.poll_ready(cx)).await?;
    let response = channel.call(request).await?;
    let (parts, body) = response.into_parts();
    let status = |headers: &http::HeaderMap| {
        let code = headers.get("grpc-status")?;
        let message = headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .unwrap_or_default()
            .replace("%20", " ");
        Some((tonic::Code::from_bytes(code.as_bytes()), message))
    };
    if let Some(answer) = status(&parts.headers) {
        return Ok(answer);
    }
    let collected = body.collect().await.context("reading the answer")?;
    collected
        .trailers()
        .and_then(status)
        .context("no grpc-status in the answer")
}
