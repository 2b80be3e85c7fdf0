//! What the operator sees of each request: a request id, a span, a log line and the
//! request metrics.
//!
//! Every request gets an id: the client's `x-request-id` when it is well formed (a
//! proxy's id then ties its log to ours), a fresh UUID v7 otherwise. The id is echoed on
//! every response, shown on error pages and carried by the request's span, which also
//! holds the method, the route *template* (`/c/{slug}/patients/{id}`; never the path
//! itself, the query string, a cookie or a form field), the clinic's id once the clinic
//! is resolved, the status and the latency in microseconds. Every log line written while the request runs
//! carries those fields.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use ward_core::ClinicId;

/// The header a request id travels in, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request no route matched (its path is never used as a label).
const UNMATCHED: &str = "unmatched";

tokio::task_local! {
    /// The id of the request being handled on this task.
    static REQUEST_ID: Arc<str>;
}

/// The id of the request this task is handling, if it runs inside [`track`].
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Notes on the current request's span which clinic it is for (called where the clinic
/// is resolved, once the user is known to belong to it).
pub fn record_clinic(id: ClinicId) {
    tracing::Span::current().record("clinic_id", tracing::field::display(id));
}

/// A client's request id is kept if it is 1 to 64 characters of letters, digits and
/// `-_.:`; anything else (which could forge log lines or carry data) is replaced.
fn well_formed(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let ok = (1..=64).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok { value.to_str().ok() } else { None }
}

/// The method as a label: the standard ones by name, anything else as `other`, so a
/// client cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The request's id: the client's when well formed, else a new UUID v7.
fn request_id(req: &Request) -> Arc<str> {
    match req.headers().get(REQUEST_ID_HEADER).and_then(well_formed) {
        Some(id) => id.into(),
        None => uuid::Uuid::now_v7().to_string().into(),
    }
}

/// Records how the request ended on its span, logs its line (a warning for a server
/// error), and counts it in the request metrics by method, route and status.
fn finished(
    span: &tracing::Span,
    (method, route): (&'static str, &str),
    status: axum::http::StatusCode,
    elapsed: std::time::Duration,
) {
    span.record("status", status.as_u16());
    span.record(
        "latency_us",
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    );
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!("request finished");
        } else {
            tracing::info!("request finished");
        }
    });
    let status_label = status.as_u16().to_string();
    let route = route.to_owned();
    metrics::counter!(
        "ward_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status_label.clone()
    )
    .increment(1);
    metrics::histogram!(
        "ward_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => status_label
    )
    .record(elapsed.as_secs_f64());
}

/// The middleware: id, span, log line, metrics, and the id on the response.
pub async fn track(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let header = HeaderValue::from_str(&id).ok();
    if let Some(h) = &header {
        req.headers_mut().insert(REQUEST_ID_HEADER, h.clone());
    }
    let route: Arc<str> = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.into(), |p| p.as_str().into());
    let method = method_label(req.method());
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %id,
        clinic_id = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_us = tracing::field::Empty,
    );
    let mut response = REQUEST_ID
        .scope(id, next.run(req))
        .instrument(span.clone())
        .await;
    finished(
        &span,
        (method, &route),
        response.status(),
        started.elapsed(),
    );
    if let Some(h) = header {
        response.headers_mut().insert(REQUEST_ID_HEADER, h);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_ids_are_kept() {
        for good in ["abc", "0190a4c2-7d3e-7b1a-9f00-1234567890ab", "req.1:2_3"] {
            assert_eq!(
                well_formed(&HeaderValue::from_static(good)),
                Some(good),
                "{good}"
            );
        }
        let long = "a".repeat(65);
        for bad in ["", "a b", "a\u{7f}", "x;y", "<script>", long.as_str()] {
            let Ok(value) = HeaderValue::from_str(bad) else {
                continue;
            };
            assert_eq!(well_formed(&value), None, "{bad:?}");
        }
    }
}
