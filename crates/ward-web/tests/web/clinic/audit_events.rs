//! A staff change, a settings change and sign-ins leave exactly the expected audit rows
//! and auth events.

use axum::http::StatusCode;
use ward_core::Clock as _;

use crate::support::PASSWORD;
use crate::support::admin::{OwnerPages as _, acme_with_doctor, assert_role_change};

#[tokio::test(flavor = "multi_thread")]
async fn sign_ins_staff_and_settings_changes_are_recorded_exactly() {
    let (mut owner, a, doc) = acme_with_doctor().await;

    // A failed, then a successful sign-in: one auth event each.
    let mut browser = owner.fresh_browser();
    let r = browser.login("doc@example.com", "wrong password!").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let failed = owner
        .app
        .control
        .recent_auth_events(1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(failed.kind, "login");
    assert_eq!(failed.outcome, "failed");
    assert_eq!(failed.user_id.as_deref(), Some(doc.as_str()));
    assert_eq!(failed.email.as_deref(), Some("doc@example.com"));
    assert_eq!(failed.ip.as_deref(), Some("203.0.113.7"));
    let r = browser.login("doc@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let events = owner.app.control.recent_auth_events(2).await.unwrap();
    assert_eq!(events[0].kind, "login");
    assert_eq!(events[0].outcome, "ok");
    assert_eq!(events[0].user_id.as_deref(), Some(doc.as_str()));
    assert_eq!(events[1].outcome, "failed", "nothing else in between");
    assert!(
        owner.audit_rows(&a).await.is_empty(),
        "signing in reads no record"
    );
    // The clinic's own log has the successful sign-in (not the failed one), as the
    // member in their role, from their address.
    let logins: Vec<_> = owner
        .all_audit_rows(&a)
        .await
        .into_iter()
        .filter(|r| r.actor_id.as_deref() == Some(doc.as_str()))
        .collect();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0].action, "login");
    assert_eq!(logins[0].actor_role.as_deref(), Some("doctor"));
    assert_eq!(logins[0].ip.as_deref(), Some("203.0.113.7"));
    let base = owner.all_audit_rows(&a).await.len() as i64;

    // One role change: one audit row, one clinic event.
    let r = owner
        .submit(
            &a.path("staff"),
            &a.path(&format!("staff/{doc}/role")),
            &[("role", "receptionist")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let rows = owner.audit_rows(&a).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.seq, base + 1);
    assert_eq!(row.actor_kind, "user");
    assert_eq!(row.actor_id.as_deref(), Some(a.owner_id.as_str()));
    assert_eq!(row.actor_name, "Dr. Ana Rao");
    assert_eq!(row.actor_role.as_deref(), Some("owner"));
    assert_eq!(row.ip.as_deref(), Some("203.0.113.7"));
    assert_role_change(row, &doc, "doctor", "receptionist");
    assert_eq!(row.detail.as_deref(), Some("Dr. Doc <doc@example.com>"));
    assert_eq!(row.reason, None);
    assert_eq!(row.at, owner.clock.now());
    let events = owner.app.control.clinic_events(a.id, 1).await.unwrap();
    assert_eq!(events[0].1, "staff_role_changed");
    assert_eq!(events[0].2, format!("user:{}", a.owner_id));
    assert!(
        events[0]
            .3
            .as_deref()
            .unwrap()
            .contains("\"to\":\"receptionist\"")
    );

    // One settings change: one more row, with only the changed field.
    let r = owner
        .submit_page(
            &a.path("settings"),
            &[
                ("name", "Acme Clinic"),
                ("phone", "555 0100"),
                ("timezone", "UTC"),
                ("currency", "INR"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rows = owner.audit_rows(&a).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].seq, base + 2);
    assert_eq!(rows[1].action, "update");
    assert_eq!(rows[1].entity_type.as_deref(), Some("settings"));
    assert_eq!(
        rows[1].diff.as_deref(),
        Some(r#"{"phone":["","555 0100"]}"#)
    );
    // The chain still verifies.
    owner.assert_audit_chain_holds(a.id).await;
}
