//! `/healthz`, the public `/status` (one word) and the operator's detailed `/status`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;

use crate::support::body_text;
use crate::support::direct::Direct as TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_ok() {
    let t = TestApp::new().await;
    let body = t.answer("/healthz", StatusCode::OK, "text/plain").await;
    assert_eq!(body, "ok");
}

/// GET `path` on the operator listener's router.
async fn operator(t: &TestApp, path: &str, accept: &str) -> (StatusCode, String) {
    let response = ward_web::operator_router(t.app.clone())
        .oneshot(
            Request::get(path)
                .header(header::ACCEPT, accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    (status, body_text(response).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn public_status_is_one_word_and_503_when_a_clinic_fails_while_the_operator_sees_which() {
    let t = TestApp::new().await;
    let (status, body) = t.get_text("/status").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(">ok</p>"), "{body}");
    let (status, text) = operator(&t, "/status", "text/plain").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("overall: ok"), "{text}");
    assert!(text.contains("version: 9.9.9-test"), "{text}");

    let broken = t.clinic("Zanzibar Broken Clinic").await;
    let second = t.clinic("Second Clinic").await;
    t.clinic("Third Clinic").await;
    t.break_clinic(&broken).await;

    // Publicly: degraded, as a 503 a monitor notices, and nothing else.
    let (status, body) = t.get_text("/status").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains(">degraded</p>"), "{body}");
    for secret in [
        broken.id.to_string().as_str(),
        second.id.to_string().as_str(),
        "Zanzibar",
        "zanzibar",
        "Second Clinic",
        "9.9.9-test",
        "active",
        "clinics/",
        ".db",
        "key",
        t.dir.path().to_str().unwrap(),
    ] {
        assert!(!body.contains(secret), "/status shows {secret:?}: {body}");
    }

    // The operator's view: counts, the failing clinic by id, the process's handles.
    let (status, text) = operator(&t, "/status", "text/plain").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("overall: degraded"), "{text}");
    assert!(text.contains("clinics: 3 · 3 active"), "{text}");
    assert!(text.contains(&broken.id.to_string()), "{text}");
    assert!(!text.contains(&second.id.to_string()), "{text}");
    // Open handles: the two healthy clinics created above are still cached.
    assert!(text.contains("2 of at most 1000"), "{text}");
    for secret in ["Zanzibar", "zanzibar", "Second Clinic", "clinics/", ".db"] {
        assert!(!text.contains(secret), "operator /status shows {secret:?}");
    }

    let (status, json) = operator(&t, "/status", "application/json").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["state"], "degraded");
    assert_eq!(v["clinics"]["total"], 3);
    assert_eq!(v["failing"][0]["id"], broken.id.to_string());
    assert_eq!(v["process"]["handles"]["open"], 2);
    let (_, same) = operator(&t, "/status?format=json", "*/*").await;
    assert!(same.starts_with('{'), "{same}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_pages_are_not_on_the_public_router() {
    let t = TestApp::new().await;
    for path in ["/metrics", "/status?format=json"] {
        let (status, body) = t.get_text(path).await;
        assert!(!body.contains("ward_http_requests_total"), "{path}: {body}");
        assert!(!body.contains("\"clinics\""), "{path}: {body}");
        if path == "/metrics" {
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
    }
}
