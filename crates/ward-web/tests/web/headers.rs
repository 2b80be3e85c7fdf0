//! Every response carries the security headers, error pages included.

use axum::http::{HeaderMap, StatusCode, header};

use crate::support::direct::Direct as TestApp;

fn directive<'a>(csp: &'a str, name: &str) -> Option<&'a str> {
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
        .map(str::trim)
}

fn assert_secure(path: &str, headers: &HeaderMap) {
    let csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap_or_else(|| panic!("{path}: no CSP"))
        .to_str()
        .unwrap();
    let scripts = directive(csp, "script-src")
        .or_else(|| directive(csp, "default-src"))
        .unwrap_or_else(|| panic!("{path}: CSP does not govern scripts: {csp}"));
    assert!(!scripts.contains("'unsafe-inline'"), "{path}: {csp}");
    assert!(!scripts.contains("'unsafe-eval'"), "{path}: {csp}");
    assert!(!scripts.contains('*'), "{path}: {csp}");
    assert_eq!(
        directive(csp, "frame-ancestors"),
        Some("'none'"),
        "{path}: {csp}"
    );
    assert_eq!(
        directive(csp, "object-src"),
        Some("'none'"),
        "{path}: {csp}"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{path}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_the_security_headers() {
    let t = TestApp::new().await;
    for (path, expected) in [
        ("/healthz", StatusCode::OK),
        ("/status", StatusCode::OK),
        ("/static/ward.css", StatusCode::OK),
        ("/no/such/page", StatusCode::NOT_FOUND),
        ("/c/acme/no-such-page", StatusCode::NOT_FOUND),
        ("/c/acme/patients", StatusCode::SEE_OTHER),
        ("/../../etc/passwd", StatusCode::NOT_FOUND),
    ] {
        let response = t.get(path).await;
        assert_eq!(response.status(), expected, "{path}");
        assert_secure(path, response.headers());
        // Plain http: no HSTS (it would lock a local install out of itself).
        assert!(
            !response
                .headers()
                .contains_key(header::STRICT_TRANSPORT_SECURITY)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_deployments_add_hsts() {
    let t = TestApp::with_public_url(Some("https://ward.example.com")).await;
    for path in ["/healthz", "/no/such/page"] {
        let response = t.get(path).await;
        assert_secure(path, response.headers());
        let hsts = response.headers()[header::STRICT_TRANSPORT_SECURITY]
            .to_str()
            .unwrap();
        assert!(hsts.starts_with("max-age="), "{hsts}");
        let age: u64 = hsts["max-age=".len()..]
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(age >= 180 * 24 * 3600, "{hsts}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_not_found_page_is_a_page() {
    let t = TestApp::new().await;
    let body = t.answer("/nope", StatusCode::NOT_FOUND, "text/html").await;
    assert!(body.contains("Not found"), "{body}");
    assert!(!body.contains("<script"), "{body}");
}
