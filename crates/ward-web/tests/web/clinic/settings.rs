//! The settings page saves, keeps the slug, and audits every change with a diff.

use axum::http::StatusCode;

use crate::support::admin::{Clinic, OwnerPages as _, acme};
use crate::support::{Response, TestApp};

fn form<'a>(name: &'a str, timezone: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("address", "12 MG Road, Pune"),
        ("phone", "+91 20 5555 0100"),
        ("timezone", timezone),
        ("currency", "USD"),
        ("letterhead", "MBBS, MD · Mon–Sat 9–5"),
    ]
}

/// Posts `fields` through the settings form of `clinic`.
async fn save(owner: &mut TestApp, clinic: &Clinic, fields: &[(&str, &str)]) -> Response {
    let settings = clinic.path("settings");
    owner.submit_page(&settings, fields).await
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_are_saved_and_audited_with_a_diff() {
    let (mut owner, a) = acme().await;
    let page = owner.get(&a.path("settings")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("value=\"Acme Clinic\""));
    assert!(page.body.contains("<option value=\"Asia/Kolkata\""));
    assert!(page.body.contains("Close this clinic"));

    let r = save(&mut owner, &a, &form("Acme Family Clinic", "Asia/Kolkata")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), a.path("settings?saved=1"));
    let page = owner.get(r.location()).await;
    assert!(page.body.contains("Settings saved"));
    assert!(page.body.contains("value=\"Acme Family Clinic\""));
    assert!(
        page.body
            .contains("<option value=\"Asia/Kolkata\" selected")
    );
    assert!(page.body.contains("<option value=\"USD\" selected"));
    assert!(page.body.contains("12 MG Road, Pune"));

    let clinic = owner.app.control.clinic_by_id(a.id).await.unwrap();
    assert_eq!(clinic.name, "Acme Family Clinic");
    assert_eq!(clinic.slug.as_str(), a.slug, "the address stays");

    let rows = owner.audit_rows(&a).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row.action, "update");
        assert_eq!(row.entity_type.as_deref(), Some("settings"));
        assert_eq!(row.entity_id.as_deref(), Some("clinic"));
        assert_eq!(row.actor_id.as_deref(), Some(a.owner_id.as_str()));
        assert_eq!(row.actor_role.as_deref(), Some("owner"));
        assert_eq!(row.ip.as_deref(), Some("203.0.113.7"));
    }
    assert_eq!(
        rows[0].diff.as_deref(),
        Some(r#"{"name":["Acme Clinic","Acme Family Clinic"]}"#)
    );
    assert_eq!(
        rows[1].diff.as_deref(),
        Some(
            r#"{"address":["","12 MG Road, Pune"],"currency":["INR","USD"],"letterhead":["","MBBS, MD · Mon–Sat 9–5"],"phone":["","+91 20 5555 0100"],"timezone":["UTC","Asia/Kolkata"]}"#
        )
    );

    // Saving the same values again records nothing.
    let r = save(&mut owner, &a, &form("Acme Family Clinic", "Asia/Kolkata")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(owner.audit_rows(&a).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_settings_are_shown_next_to_their_fields_and_nothing_is_saved() {
    let (mut owner, a) = acme().await;
    let mut fields = form("", "Mars/Olympus");
    fields.retain(|(k, _)| *k != "currency");
    fields.push(("currency", "XXX"));
    let r = save(&mut owner, &a, &fields).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in ["name-error", "timezone-error", "currency-error"] {
        assert!(r.body.contains(id), "{id}");
    }
    assert!(r.body.contains("12 MG Road, Pune"), "input kept");
    assert_eq!(
        owner.app.control.clinic_by_id(a.id).await.unwrap().name,
        "Acme Clinic"
    );
    assert!(owner.audit_rows(&a).await.is_empty());
}
