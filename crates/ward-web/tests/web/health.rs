//! `/healthz` and `/status`.

use axum::http::{StatusCode, header};

use crate::support::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_ok() {
    let t = TestApp::new().await;
    let response = t.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(crate::support::body_text(response).await, "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_clinics_and_names_a_failing_one_by_id_only() {
    let t = TestApp::new().await;
    let (status, body) = t.get_text("/status").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("All systems working"), "{body}");
    assert!(body.contains("9.9.9-test"));

    let broken = t.clinic("Zanzibar Broken Clinic").await;
    t.clinic("Second Clinic").await;
    t.clinic("Third Clinic").await;
    t.break_clinic(&broken).await;

    let (status, body) = t.get_text("/status").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Degraded"), "{body}");
    assert!(body.contains("<td>3 · 3 active</td>"), "{body}");
    assert!(body.contains(&broken.id.to_string()), "{body}");
    // Open handles: the two healthy clinics created above are still cached.
    assert!(body.contains("2 of at most 1000"), "{body}");
    // No clinic data and no internal detail: names, slugs, paths, causes.
    for secret in [
        "Zanzibar",
        "zanzibar",
        "Second Clinic",
        "clinics/",
        ".db",
        "key",
        t.dir.path().to_str().unwrap(),
    ] {
        assert!(!body.contains(secret), "/status shows {secret:?}");
    }
}
