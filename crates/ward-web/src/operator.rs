//! The operator's listener (`WARD_OPERATOR_ADDR`): Prometheus metrics at `/metrics` and
//! the detailed `/status`. Never merged into the public router: it names clinics by id
//! and shows counts the public must not see.
//!
//! The metrics go through the `metrics` facade: the crates count where things happen
//! (requests here, the handle cache in ward-tenancy, mail in ward-mail), and gauges of
//! state (open handles, queues) are read when scraped. The Prometheus recorder is
//! process-wide and installed once, on first use; every app built in the process (tests
//! build many) shares it.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::status::{ProcessSection, StatusReport};
use crate::{AppState, Web};

/// Latency buckets (seconds): page targets are a few milliseconds, a slow export or a
/// cold open of a large clinic takes seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed on first call. `None` if another
/// recorder was installed first (then nothing is exported; the log says why).
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the metrics recorder; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The `# HELP` lines.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "ward_http_requests_total",
        "Requests answered, by method, route template and status."
    );
    describe_histogram!(
        "ward_http_request_duration_seconds",
        "Time from request to response headers, by method, route template and status."
    );
    describe_counter!(
        "ward_tenant_cache_hits_total",
        "Clinic lookups served from the handle cache."
    );
    describe_counter!(
        "ward_tenant_cache_misses_total",
        "Clinic lookups that had to open the clinic (or wait for an open)."
    );
    describe_counter!("ward_tenant_opens_total", "Clinic database files opened.");
    describe_counter!(
        "ward_tenant_cache_admissions_total",
        "Clinics opened for a lookup, by what the cache did with them (room, replaced, passed)."
    );
    describe_counter!(
        "ward_tenant_cache_evictions_total",
        "Handles that left the cache, by cause (idle, capacity, explicit)."
    );
    describe_gauge!(
        "ward_tenant_open_handles",
        "Clinic database handles open now."
    );
    describe_gauge!("ward_tenant_cached", "Entries in the handle cache.");
    describe_gauge!(
        "ward_replica_worst_lag_seconds",
        "The longest a committed change has waited to reach the replica."
    );
    describe_gauge!(
        "ward_replica_failing_databases",
        "Databases whose last replication attempt failed."
    );
    describe_gauge!(
        "ward_tenant_cache_capacity",
        "The handle cache's cap (WARD_MAX_OPEN_TENANTS)."
    );
    describe_gauge!(
        "ward_tenant_handle_budget",
        "Most handles the open-file limit allows (4 descriptors each)."
    );
    describe_gauge!("ward_open_file_limit", "The process's open-file limit.");
    describe_gauge!(
        "ward_mail_outbox_pending",
        "Mails waiting in the outbox to be delivered."
    );
    describe_gauge!(
        "ward_mail_outbox_given_up",
        "Mails in the outbox whose delivery was given up."
    );
    describe_counter!("ward_mail_sent_total", "Mails delivered.");
    describe_counter!(
        "ward_mail_send_failures_total",
        "Failed delivery attempts, by outcome (retry, gave_up)."
    );
    describe_gauge!(
        "ward_job_queue_depth",
        "Background jobs (exports), by state (queued, running)."
    );
    describe_gauge!(
        "ward_audit_reads_pending",
        "Record views noted but not yet written to their clinics' audit logs."
    );
    describe_histogram!(
        "ward_audit_read_flush_lag_seconds",
        "Time from a record view to its audit row, per written batch."
    );
    describe_gauge!(
        "ward_audit_read_write_failures",
        "Failed batch writes of record views since start (each retried)."
    );
    describe_counter!(
        "ward_signin_failures_total",
        "Refused sign-ins, by reason (credentials, limited, unverified)."
    );
    describe_gauge!(
        "ward_clinics_failing",
        "Clinics whose database cannot be opened."
    );
    describe_gauge!(
        "ward_up",
        "1 when the operator status is ok, 0 when degraded."
    );
}

/// The operator's router: `/metrics`, `/status` and `/healthz`. Building it installs
/// the metrics recorder.
pub fn operator_router(app: Arc<Web>) -> Router {
    metrics_handle();
    Router::new()
        .route("/metrics", get(metrics_get))
        .route("/status", get(status_get))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(AppState(app))
}

/// Serves the operator's router on `listener` until `shutdown` completes.
pub async fn serve_operator(
    listener: tokio::net::TcpListener,
    app: Arc<Web>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    /// Stops the upkeep with the listener, however that ends (even aborted).
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let router = operator_router(app);
    // Histograms are kept as raw samples until upkeep folds them into their buckets;
    // without a scrape for a while, this keeps memory flat.
    let _upkeep = AbortOnDrop(tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if let Some(h) = metrics_handle() {
                h.run_upkeep();
            }
        }
    }));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Sets the gauges that are read rather than counted.
fn refresh_gauges(app: &Web, report: &StatusReport) {
    use metrics::gauge;
    let stats = app.tenants.stats();
    gauge!("ward_tenant_open_handles").set(stats.open_handles as f64);
    if let Some(r) = &report.replica {
        gauge!("ward_replica_worst_lag_seconds").set(r.worst_lag_ms as f64 / 1000.0);
        gauge!("ward_replica_failing_databases").set(r.failing.len() as f64);
    }
    gauge!("ward_tenant_cached").set(stats.cached as f64);
    gauge!("ward_tenant_cache_capacity").set(stats.max_open as f64);
    gauge!("ward_tenant_handle_budget").set(stats.max_handles as f64);
    if let Ok(limit) = ward_tenancy::fds::limit() {
        gauge!("ward_open_file_limit").set(limit as f64);
    }
    gauge!("ward_mail_outbox_pending").set(report.mail.pending as f64);
    gauge!("ward_mail_outbox_given_up").set(report.mail.failed as f64);
    gauge!("ward_job_queue_depth", "state" => "queued").set(report.jobs.queued as f64);
    gauge!("ward_job_queue_depth", "state" => "running").set(report.jobs.running as f64);
    let audit = app.audit.stats();
    gauge!("ward_audit_reads_pending").set(audit.noted.saturating_sub(audit.written) as f64);
    gauge!("ward_audit_read_write_failures").set(audit.failed_writes as f64);
    gauge!("ward_clinics_failing").set(report.failing.len() as f64);
    gauge!("ward_up").set(if report.healthy() { 1.0 } else { 0.0 });
}

async fn metrics_get(State(app): State<AppState>) -> Response {
    let Some(handle) = metrics_handle() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not being recorded (see the log)\n",
        )
            .into_response();
    };
    let report = StatusReport::gather(&app.control, app.clock.now()).await;
    refresh_gauges(&app, &report);
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// The full report: JSON when asked for (`Accept: application/json` or
/// `?format=json`), text otherwise; 503 when degraded, for a monitor.
async fn status_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let mut report = StatusReport::gather(&app.control, app.clock.now()).await;
    report.process = Some(ProcessSection {
        version: app.config.version.clone(),
        started_at: app.started_at,
        tenant_schema: app.tenants.latest_version(),
        handles: app.tenants.stats().into(),
    });
    let code = if report.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let wants_json = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "format=json"))
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        (code, axum::Json(report)).into_response()
    } else {
        (
            code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            report.to_string(),
        )
            .into_response()
    }
}
