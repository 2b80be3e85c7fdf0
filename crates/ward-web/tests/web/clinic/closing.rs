//! Closing a clinic from its settings (`/c/{slug}/settings/close`), and what happens to
//! access afterwards.

use axum::http::StatusCode;
use ward_core::{ClinicStatus, Slug};

use crate::support::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_closes_the_clinic_by_typing_its_name() {
    let mut t = TestApp::new().await;
    let home = t
        .signup_verified("Canary Clinic", "owner@example.com")
        .await;
    let close = format!("{home}settings/close");
    let page = t.get(&close).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains("90 days");
    assert!(page.body.contains("name=\"clinic_name\""));

    // A wrong name closes nothing.
    let r = t.submit_page(&close, &[("clinic_name", "Canary")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_contains("exactly");
    assert_eq!(t.get(&home).await.status, StatusCode::OK);

    let r = t
        .submit_page(&close, &[("clinic_name", "Canary Clinic")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let slug = Slug::parse(home.trim_start_matches("/c/").trim_end_matches('/')).unwrap();
    let clinic = t.app.control.clinic_by_slug(&slug).await.unwrap();
    assert_eq!(clinic.status, ClinicStatus::Closed);

    // The owner is told when the data goes; the clinic's pages are closed to them.
    let r = t.get(&home).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    r.assert_contains("This clinic is closed");
    r.assert_contains("permanently deleted");
    r.assert_contains("export");
    assert_eq!(t.get(&close).await.status, StatusCode::FORBIDDEN);

    // The close is in the clinic's own audit log.
    let tenant = t.app.tenants.get(clinic.id).await.unwrap();
    let details = tenant
        .with(|conn| {
            ward_testkit::texts(
                &conn,
                "SELECT detail FROM audit_log WHERE entity_type = 'clinic'",
            )
        })
        .await;
    assert_eq!(details, ["clinic status active → closed"]);

    // Someone else gets no clinic at all.
    let mut other = t.fresh_browser();
    other
        .signup_verified("Other Clinic", "other@example.com")
        .await;
    assert_eq!(other.get(&home).await.status, StatusCode::NOT_FOUND);
}
