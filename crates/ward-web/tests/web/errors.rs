//! Error pages: the right status, a plain sentence, and nothing internal.

use axum::http::{StatusCode, header};
use axum::response::IntoResponse as _;
use ward_core::ClinicId;
use ward_tenancy::TenantError;
use ward_web::AppError;

use crate::support::body_text;
use crate::support::direct::Direct as TestApp;

async fn render(e: AppError) -> (StatusCode, Option<String>, String) {
    let response = e.into_response();
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, body_text(response).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_clinic_gets_a_maintenance_page() {
    let t = TestApp::new().await;
    let clinic = t.clinic("Locked").await;
    let store = &t.platform.tenants;
    let _lock = store.lock(clinic.id, "restore").await.unwrap();
    let err = store.get(clinic.id).await.err().unwrap();
    let (status, retry, body) = render(AppError::from(err)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=3600).contains(&retry));
    assert!(body.contains("Maintenance in progress"), "{body}");
    assert!(body.to_lowercase().contains("maintained"), "{body}");
    assert!(!body.contains(&clinic.id.to_string()), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unopenable_clinic_gets_a_503_without_internal_detail() {
    let t = TestApp::new().await;
    let clinic = t.clinic("Broken").await;
    t.break_clinic(&clinic).await;
    // Overwritten with garbage, the file no longer opens with its key: damage.
    let err = t.platform.tenants.get(clinic.id).await.err().unwrap();
    let cause = err.to_string();
    assert!(matches!(err, TenantError::Damaged(_)), "{err:?}");
    let reason = t
        .platform
        .control
        .clinic_by_id(clinic.id)
        .await
        .unwrap()
        .open_error
        .unwrap();
    let (status, retry, body) = render(AppError::from(err)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.is_some());
    assert!(
        body.contains("records need attention; the operator has been told"),
        "{body}"
    );
    for internal in [
        cause.as_str(),
        reason.as_str(),
        &clinic.id.to_string(),
        ".db",
        "clinics",
        "key",
        "database file",
        t.dir.path().to_str().unwrap(),
    ] {
        assert!(
            !body.contains(internal),
            "the page shows {internal:?}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_error_has_its_status() {
    let id = ClinicId::new();
    let cases = [
        (AppError::NotFound, StatusCode::NOT_FOUND, false),
        (
            AppError::from(TenantError::Unknown(id)),
            StatusCode::NOT_FOUND,
            false,
        ),
        (
            AppError::from(TenantError::ShuttingDown),
            StatusCode::SERVICE_UNAVAILABLE,
            true,
        ),
        (
            AppError::Internal("SELECT * FROM secret_table at /srv/data/x.db".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            false,
        ),
    ];
    for (err, expected, retry_expected) in cases {
        let label = format!("{err:?}");
        let (status, retry, body) = render(err).await;
        assert_eq!(status, expected, "{label}");
        assert_eq!(retry.is_some(), retry_expected, "{label}");
        assert!(!body.contains("SELECT"), "{body}");
        assert!(!body.contains("/srv/data"), "{body}");
        assert!(!body.contains(&id.to_string()), "{body}");
        assert!(body.contains("<h1>"), "{body}");
    }
}
