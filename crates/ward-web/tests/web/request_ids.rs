//! Every response carries an `x-request-id`; a client's well-formed one is echoed.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt as _;

use crate::support::body_text;
use crate::support::direct::Direct as TestApp;

fn id_of(response: &axum::http::Response<Body>) -> String {
    response
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on a {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn send(t: &TestApp, req: Request<Body>) -> axum::http::Response<Body> {
    ward_web::router(t.app.clone()).oneshot(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_a_fresh_request_id() {
    let t = TestApp::new().await;
    let mut seen = std::collections::HashSet::new();
    for (method, path, expected) in [
        ("GET", "/healthz", StatusCode::OK),
        ("GET", "/status", StatusCode::OK),
        ("GET", "/static/ward.css", StatusCode::OK),
        ("GET", "/login", StatusCode::OK),
        ("GET", "/no/such/page?q=Ana+Rao", StatusCode::NOT_FOUND),
        ("GET", "/c/acme/patients", StatusCode::SEE_OTHER),
        ("PUT", "/healthz", StatusCode::METHOD_NOT_ALLOWED),
        ("DELETE", "/login", StatusCode::FORBIDDEN),
        ("POST", "/login", StatusCode::FORBIDDEN),
    ] {
        let response = send(
            &t,
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(response.status(), expected, "{method} {path}");
        let id = id_of(&response);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert!(seen.insert(id.clone()), "{id} given twice");
        // A 404 is the same page for everyone; 5xx pages show the id (clinic/damage.rs).
        let body = body_text(response).await;
        assert!(!body.contains(&id), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_well_formed_incoming_request_id_is_echoed_and_a_bad_one_replaced() {
    let t = TestApp::new().await;
    let get = |id: &str| {
        Request::get("/no/such/page")
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let response = send(&t, get("edge-7f3a.42:1")).await;
    assert_eq!(id_of(&response), "edge-7f3a.42:1");

    let long = "a".repeat(65);
    for bad in ["two words", "<b>x</b>", "a;b=c", long.as_str()] {
        let response = send(&t, get(bad)).await;
        let id = id_of(&response);
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert!(!body_text(response).await.contains(bad));
    }
}
