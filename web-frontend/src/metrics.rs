//! The axum middleware that counts every request by route template and HTTP
//! status and times it ([`HttpMetrics`]). The route is the template that
//! matched (e.g. `/connect/{provider}`), or `unmatched` for the fallback, so
//! neither account names nor arbitrary paths become label values.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokenvault_runtime::metrics::HttpMetrics;

/// The `route` label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Records one request in `metrics`.
pub(crate) async fn record(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record(&route, response.status().as_u16(), started.elapsed());
    response
}
