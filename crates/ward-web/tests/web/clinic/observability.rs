//! What the operator's listener shows after real traffic: the request and handle-cache
//! counters move, and nothing in the metrics names a patient, a clinic or a person.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use crate::support::staffed::Staffed as _;
use crate::support::{TestApp, id_of};

/// `/metrics` from the operator's router of `t`'s app.
async fn scrape(t: &TestApp) -> String {
    let response = ward_web::operator_router(t.app.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The sum of the samples of `name` whose labels include each of `labels`. Other tests
/// in this binary share the process's recorder, so callers compare two scrapes.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, rest) = key.split_once('{').unwrap_or((key, ""));
            (metric == name && labels.iter().all(|x| rest.contains(x)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_after_real_requests_show_requests_and_handle_cache_counters_moving() {
    let t = TestApp::new().await;
    let before = scrape(&t).await;
    let mut c = t.clinic("Metric Clinic", "metric").await;
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(&base, &[("full_name", "Ana Maria Rao")])
        .await;
    // Closed, so the next page opens it again (a miss, an open, then hits).
    t.app.tenants.evict(c.id).await;
    for _ in 0..3 {
        let page = c.receptionist.get(&format!("{base}/patients")).await;
        assert_eq!(page.status, StatusCode::OK);
    }
    assert_eq!(c.doctor.get(&patient).await.status, StatusCode::OK);
    let mut stranger = c.owner.fresh_browser();
    let refused = stranger
        .login("owner@metric.test", "not the password")
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    // The patient page noted a view; written now, it shows as one flush-lag sample.
    t.app.audit.flush().await;
    let after = scrape(&t).await;
    let moved =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    let patients = [
        "method=\"GET\"",
        "route=\"/c/{slug}/patients\"",
        "status=\"200\"",
    ];
    assert!(
        moved("ward_http_requests_total", &patients) >= 3.0,
        "{after}"
    );
    assert!(
        moved("ward_http_request_duration_seconds_count", &patients) >= 3.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "ward_http_request_duration_seconds_bucket",
            &["route=\"/c/{slug}/patients\"", "le=\"+Inf\""]
        ) >= 3.0,
        "{after}"
    );
    let show = ["route=\"/c/{slug}/patients/{id}\"", "status=\"200\""];
    assert!(moved("ward_http_requests_total", &show) >= 1.0, "{after}");
    assert!(moved("ward_tenant_cache_hits_total", &[]) >= 3.0, "{after}");
    assert!(
        moved("ward_tenant_cache_misses_total", &[]) >= 1.0,
        "{after}"
    );
    assert!(moved("ward_tenant_opens_total", &[]) >= 1.0, "{after}");
    assert!(
        moved("ward_tenant_cache_admissions_total", &["verdict=\"room\""]) >= 1.0,
        "{after}"
    );
    assert!(
        moved("ward_tenant_cache_evictions_total", &["cause=\"explicit\""]) >= 1.0,
        "{after}"
    );
    assert!(
        moved("ward_signin_failures_total", &["reason=\"credentials\""]) >= 1.0,
        "{after}"
    );
    assert!(
        moved("ward_audit_read_flush_lag_seconds_count", &[]) >= 1.0,
        "{after}"
    );
    for gauge in [
        "ward_tenant_open_handles",
        "ward_tenant_cache_capacity",
        "ward_tenant_handle_budget",
        "ward_mail_outbox_pending",
        "ward_job_queue_depth",
        "ward_audit_reads_pending",
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(gauge)),
            "no {gauge}: {after}"
        );
    }
    assert!(sample(&after, "ward_tenant_cache_capacity", &[]) >= 1.0);

    // Labels carry templates and fixed words only: no slug, patient id, name or address.
    let patient_id = id_of(&patient);
    for secret in [
        base.as_str(),
        &format!("/patients/{patient_id}"),
        "Ana Maria Rao",
        "@metric.test",
        &c.id.to_string(),
    ] {
        assert!(!after.contains(secret), "/metrics shows {secret:?}");
    }
}

/// Collects what a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the subscriber set for this test sees every request it makes.
#[tokio::test(flavor = "current_thread")]
async fn the_request_log_names_route_template_and_clinic_id_but_no_patient_or_query() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let t = TestApp::new().await;
    let mut c = t.clinic("Logging Clinic", "logging").await;
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(&base, &[("full_name", "Zebulon Quartermain")])
        .await;
    let page = c.doctor.get(&format!("{patient}?tab=secretquery")).await;
    assert_eq!(page.status, StatusCode::OK);
    let request_id = page.headers["x-request-id"].to_str().unwrap().to_owned();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("request_id={request_id}")))
        .unwrap_or_else(|| panic!("no line for {request_id}: {log}"));
    assert!(line.contains("route=/c/{slug}/patients/{id}"), "{line}");
    assert!(line.contains(&format!("clinic_id={}", c.id)), "{line}");
    assert!(line.contains("status=200"), "{line}");
    let patient_id = id_of(&patient);
    for secret in [
        base.as_str(),
        &format!("/patients/{patient_id}"),
        "secretquery",
        "Zebulon",
        "Quartermain",
        "@logging.test",
        crate::support::PASSWORD,
        "_csrf",
        "ward_session",
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}: {log}");
    }
}
