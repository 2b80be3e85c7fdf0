//! A clinic whose file is damaged gets a 503 page of its own, is named on the operator's
//! `/status`, and
//! every other clinic keeps working; once the file is sound again it is served again.

use std::time::Duration;

use axum::http::StatusCode;

use crate::support::TestApp;
use crate::support::staffed::Staffed as _;

const SENTENCE: &str = "records need attention; the operator has been told";

/// Closes clinic `id`'s file (so it is whole, without a WAL) and changes one byte in
/// every page but the first, returning the original bytes.
async fn damage(t: &TestApp, id: ward_core::ClinicId) -> Vec<u8> {
    t.app.audit.flush().await;
    let store = &t.app.tenants;
    store.evict(id).await;
    let path = store.path_of(id);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.is_open(id) {
        assert!(
            std::time::Instant::now() < deadline,
            "the clinic did not close"
        );
        store.run_pending().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    for page in 1..bytes.len() / 4096 {
        bytes[page * 4096 + 1000] ^= 0x20;
    }
    std::fs::write(&path, &bytes).unwrap();
    original
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_clinic_gets_its_own_503_while_the_others_keep_working() {
    let t = TestApp::new().await;
    let mut acme = t.clinic("Acme Clinic", "acme").await;
    let mut bravo = t.clinic("Bravo Clinic", "bravo").await;
    let (acme_base, bravo_base) = (acme.base.clone(), bravo.base.clone());
    acme.receptionist
        .register(&acme_base, &[("full_name", "Ana Maria Rao")])
        .await;
    bravo
        .receptionist
        .register(&bravo_base, &[("full_name", "Bela Kovacs")])
        .await;

    let original = damage(&t, acme.id).await;
    let patients = format!("{acme_base}/patients");
    let page = acme.receptionist.get(&patients).await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    page.assert_contains(SENTENCE);
    // The page shows the request's id, which the response also carries.
    let request_id = page.headers["x-request-id"].to_str().unwrap();
    page.assert_contains(&format!("<code>{request_id}</code>"));
    assert!(!page.body.contains("Ana Maria Rao"));
    assert!(!page.body.contains(".db") && !page.body.contains("HMAC"));

    // The other clinic: reads and writes as before.
    let page = bravo
        .receptionist
        .get(&format!("{bravo_base}/patients"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Bela Kovacs"));
    bravo
        .receptionist
        .register(&bravo_base, &[("full_name", "Cyrus Vale")])
        .await;

    // Named on the operator's /status by id (publicly: only "degraded"), and the damage
    // mark holds for the next request too.
    let public = acme.owner.get("/status").await;
    assert_eq!(public.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !public.body.contains(&acme.id.to_string()),
        "{}",
        public.body
    );
    let (code, status) = operator_status(&t).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(status.contains(&acme.id.to_string()), "{status}");
    assert!(!status.contains(&bravo.id.to_string()), "{status}");
    let again = acme.owner.get(&format!("{acme_base}/patients/new")).await;
    assert_eq!(again.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(again.body.contains(SENTENCE));

    // Repaired (here: the original bytes back) and checked, the clinic is served again.
    let path = t.app.tenants.path_of(acme.id);
    std::fs::write(&path, &original).unwrap();
    assert_eq!(
        t.app.tenants.check_file(acme.id).await.unwrap(),
        Vec::<String>::new()
    );
    let page = acme.receptionist.get(&patients).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Ana Maria Rao"));
    let (_, status) = operator_status(&t).await;
    assert!(!status.contains(&acme.id.to_string()), "{status}");
}

/// The operator listener's `/status`, as text.
async fn operator_status(t: &TestApp) -> (StatusCode, String) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let response = ward_web::operator_router(t.app.clone())
        .oneshot(
            axum::http::Request::get("/status")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let code = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8(bytes.to_vec()).unwrap())
}
