//! gRPC request metrics: a tower layer in front of a tonic server that counts
//! every call by RPC and status code and times it.
//!
//! The status is read where tonic puts it: in the response headers for a
//! trailers-only answer (every error tonic or [`crate::AuthzLayer`] returns
//! before a handler streams anything), otherwise in the trailers at the end
//! of the body, so a call is recorded when its last frame has been sent. A
//! body dropped before its trailers (the client went away) counts as
//! `CANCELLED`. RPC paths the service does not serve are counted as `other`,
//! so callers cannot grow the label set.
//!
//! The layer also completes the audit trail: a call of one of the service's
//! own RPCs whose response lacks [`AUDITED_HEADER`] (no handler answered it:
//! tonic refused the request while decoding it, say an oversized message, or
//! the call was cancelled first) gets its one audit event here, with the
//! caller, the RPC and the status. The header itself never leaves the
//! server.
//!
//! With an audit table whose `on_overflow` is `block`, the layer first
//! reserves room for the call's audit event ([`AuditGate::admit`]) and
//! serves the call with that room reserved; a call that finds none within
//! the wait is answered UNAVAILABLE and never served.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

use tokenvault_runtime::audit_gate::{self, AuditGate, Reserved};
use tokenvault_runtime::metrics::{LatencyFamily, latency_family, registered};
use tokenvault_tls::PeerInfo;

use crate::audit::AUDITED_HEADER;

/// The discovery RPCs every server serves (health and reflection), as
/// `package.Service/Method`.
pub const DISCOVERY_METHODS: [&str; 4] = [
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The `rpc` label of paths the service does not serve.
const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCode {
    rpc: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    rpc: String,
}

/// gRPC requests by RPC and status code, and their latency by RPC.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    requests: Family<RpcCode, Counter>,
    duration: LatencyFamily<Rpc>,
}

impl GrpcMetrics {
    /// Registers `grpc_requests` and `grpc_request_duration_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            requests: registered(
                registry,
                "grpc_requests",
                "gRPC requests by RPC (package.Service/Method) and status code",
                Family::default(),
            ),
            duration: registered(
                registry,
                "grpc_request_duration_seconds",
                "Time from request to the response's last frame, by RPC",
                latency_family(),
            ),
        }
    }

    /// The layer for a server that serves `methods` (`package.Service/Method`,
    /// e.g. `tokenvault.v1.SetService/StoreRefreshToken`) and the
    /// [`DISCOVERY_METHODS`]. Put it before [`crate::AuthzLayer`], so that
    /// refused calls are counted too. `audit` is the audit table's gate, if
    /// the process writes one.
    pub fn layer<I, S>(&self, methods: I, audit: Option<AuditGate>) -> GrpcMetricsLayer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let route = |rpc: String, audited: bool| Arc::new(RpcMetrics::new(self, rpc, audited));
        let mut known: HashMap<String, Arc<RpcMetrics>> = methods
            .into_iter()
            .map(|m| {
                let rpc = m.into();
                (rpc.clone(), route(rpc, true))
            })
            .collect();
        for m in DISCOVERY_METHODS {
            known.insert(m.to_owned(), route(m.to_owned(), false));
        }
        GrpcMetricsLayer {
            known: Arc::new(known),
            other: route(OTHER.to_owned(), false),
            audit,
        }
    }
}

/// One RPC's series, looked up once per call by its path: its request
/// counters (each made on its status code's first call, so that only codes
/// that happened are exported) and its latency histogram (exported from the
/// start, empty until the first call).
#[derive(Debug)]
struct RpcMetrics {
    rpc: String,
    /// The method name its audit events carry; `None` for RPCs that are not
    /// audited (health, reflection, unknown paths).
    audited: Option<String>,
    family: Family<RpcCode, Counter>,
    by_code: [OnceLock<Counter>; CODES],
    duration: Histogram,
}

/// How many gRPC status codes there are (`OK` = 0 to `UNAUTHENTICATED` = 16).
const CODES: usize = 17;

impl RpcMetrics {
    fn new(metrics: &GrpcMetrics, rpc: String, audited: bool) -> Self {
        let duration = metrics
            .duration
            .get_or_create(&Rpc { rpc: rpc.clone() })
            .clone();
        Self {
            audited: audited.then(|| rpc.rsplit('/').next().unwrap_or(&rpc).to_owned()),
            family: metrics.requests.clone(),
            by_code: std::array::from_fn(|_| OnceLock::new()),
            duration,
            rpc,
        }
    }

    fn record(&self, code: tonic::Code, started: Instant) {
        let counter = self.by_code.get(code as usize).map(|slot| {
            slot.get_or_init(|| {
                self.family
                    .get_or_create(&RpcCode {
                        rpc: self.rpc.clone(),
                        code: code_name(code),
                    })
                    .clone()
            })
        });
        if let Some(counter) = counter {
            counter.inc();
        }
        self.duration.observe(started.elapsed().as_secs_f64());
    }
}

/// The tower layer made by [`GrpcMetrics::layer`].
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    known: Arc<HashMap<String, Arc<RpcMetrics>>>,
    other: Arc<RpcMetrics>,
    audit: Option<AuditGate>,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Body + Default + Unpin + Send + 'static,
{
    type Response = http::Response<RecordingBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().trim_start_matches('/');
        let rpc = Arc::clone(self.layer.known.get(path).unwrap_or(&self.layer.other));
        // The service's own RPCs are audited; health and reflection are not.
        let peer = rpc
            .audited
            .is_some()
            .then(|| req.extensions().get::<PeerInfo>().cloned());
        let gate = self.layer.audit.clone().filter(|_| peer.is_some());
        let mut recorder = Recorder {
            rpc,
            started: Instant::now(),
            done: false,
            audit: peer,
            message: None,
            reserved: None,
        };
        // Take the service that was driven to readiness; leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let served = match gate {
                None => inner.call(req).await,
                Some(gate) => match gate.admit().await {
                    Ok(None) => inner.call(req).await,
                    Ok(Some(reserved)) => {
                        recorder.reserved = Some(Arc::clone(&reserved));
                        audit_gate::with_reserved(reserved, inner.call(req)).await
                    }
                    Err(_) => Ok(refuse_unaudited(&mut recorder)),
                },
            };
            let response = match served {
                Ok(response) => response,
                Err(e) => {
                    recorder.finish(tonic::Code::Unknown);
                    return Err(e);
                }
            };
            let (mut parts, body) = response.into_parts();
            if parts.headers.remove(AUDITED_HEADER).is_some() {
                recorder.audit = None;
            } else {
                // tonic answered before any handler: malformed framing gets
                // the status the `.proto` documents.
                crate::framing::as_documented(&mut parts.headers);
            }
            if let Some(code) = status_code(&parts.headers) {
                // Trailers-only: the whole answer is in the headers.
                recorder.message = parts
                    .headers
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .map(str::to_owned);
                recorder.finish(code);
            }
            Ok(http::Response::from_parts(
                parts,
                RecordingBody {
                    inner: body,
                    recorder,
                },
            ))
        })
    }
}

/// Answers a call for which the audit table's queue has no room: it is not
/// served, since its event could not be kept.
fn refuse_unaudited<B: Default>(recorder: &mut Recorder) -> http::Response<B> {
    let status = tonic::Status::unavailable(
        "the audit trail cannot keep up (no room in the audit table's queue); not served, try again",
    );
    recorder.message = Some(status.message().to_owned());
    status.into_http()
}

/// Records one call once: when its status is known, or when dropped.
#[derive(Debug)]
struct Recorder {
    rpc: Arc<RpcMetrics>,
    started: Instant,
    done: bool,
    /// The caller, while the call still needs its audit event.
    audit: Option<Option<PeerInfo>>,
    /// A trailers-only answer's `grpc-message`, for that event.
    message: Option<String>,
    /// The room reserved for the call's audit event in the audit table's
    /// queue, if the handler has not used it.
    reserved: Option<Reserved>,
}

impl Recorder {
    fn finish(&mut self, code: tonic::Code) {
        if self.done {
            return;
        }
        self.done = true;
        self.rpc.record(code, self.started);
        let (Some(peer), Some(method)) = (self.audit.take(), self.rpc.audited.as_deref()) else {
            return;
        };
        let name = code_name(code);
        let label = name.to_ascii_lowercase();
        let message = self
            .message
            .take()
            .unwrap_or_else(|| "the call ended before a handler answered it".to_owned());
        let outcome = if code == tonic::Code::Ok {
            Ok(())
        } else {
            Err((label.as_str(), &message as &dyn std::fmt::Display))
        };
        let record = || crate::audit::record(method, peer.as_ref(), "", "", outcome);
        match self.reserved.take() {
            Some(reserved) => audit_gate::with_reserved_sync(reserved, record),
            None => record(),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

/// A response body that records its call when the trailers go out.
#[derive(Debug)]
pub struct RecordingBody<B> {
    inner: B,
    recorder: Recorder,
}

impl<B: Body + Unpin> Body for RecordingBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.recorder
                        .finish(status_code(trailers).unwrap_or(tonic::Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(_))) => this.recorder.finish(tonic::Code::Internal),
            Poll::Ready(None) => this.recorder.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` in `headers`, if there is one.
fn status_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?;
    Some(tonic::Code::from_bytes(value.as_bytes()))
}

/// The upper-case name gRPC's documentation uses for `code`.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
