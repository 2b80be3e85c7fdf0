//! Role changes, removal, and the last-owner rule.

use axum::http::StatusCode;
use ward_core::Role;

use crate::support::admin::{Clinic, OwnerPages as _, acme, acme_with_doctor, assert_role_change};
use crate::support::{Response, TestApp};

/// `browser` changes member `user`'s role to `role` on the staff page.
async fn set_role(browser: &mut TestApp, a: &Clinic, user: &str, role: &str) -> Response {
    browser
        .submit(
            &a.path("staff"),
            &a.path(&format!("staff/{user}/role")),
            &[("role", role)],
        )
        .await
}

/// `browser` removes member `user` on the staff page.
async fn remove(browser: &mut TestApp, a: &Clinic, user: &str) -> Response {
    browser
        .submit(
            &a.path("staff"),
            &a.path(&format!("staff/{user}/remove")),
            &[],
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_staff_page_lists_members_and_changes_a_role() {
    let (mut owner, a, doc) = acme_with_doctor().await;
    let page = owner.get(&a.path("staff")).await;
    page.assert_shows(&[
        "Dr. Ana Rao",
        "owner@acme.test",
        "Dr. Doc",
        "doc@example.com",
        "2026-03-01",
    ]);
    let r = set_role(&mut owner, &a, &doc, "billing").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(owner.role_of(&a, &doc).await, Some(Role::Billing));
    let row = owner.audit_rows(&a).await.pop().unwrap();
    assert_role_change(&row, &doc, "doctor", "billing");

    // A role that does not exist, or a user who is not a member, changes nothing.
    let r = set_role(&mut owner, &a, &doc, "admin").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = owner
        .submit(
            &a.path("staff"),
            &a.path("staff/no-such-user/role"),
            &[("role", "doctor")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(owner.role_of(&a, &doc).await, Some(Role::Billing));
}

#[tokio::test(flavor = "multi_thread")]
async fn removal_ends_the_members_access_at_once() {
    let (mut owner, a) = acme().await;
    let rec = owner
        .staff(&a, "rec@example.com", "Rae Reception", Role::Receptionist)
        .await;
    let mut receptionist = owner.browser_as("rec@example.com").await;
    assert_eq!(receptionist.get(&a.path("")).await.status, StatusCode::OK);

    let r = remove(&mut owner, &a, &rec).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(owner.role_of(&a, &rec).await, None);
    assert!(
        owner
            .app
            .control
            .list_sessions(&rec, owner.app.session_policy)
            .await
            .unwrap()
            .is_empty()
    );

    // The very next request is turned away.
    let r = receptionist.get(&a.path("")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login");
    // Signing in again does not bring the clinic back.
    let mut again = owner.browser_as("rec@example.com").await;
    assert_eq!(again.get(&a.path("")).await.status, StatusCode::NOT_FOUND);

    let row = owner.audit_rows(&a).await.pop().unwrap();
    assert_eq!(row.action, "delete");
    assert_eq!(row.entity_id.as_deref(), Some(rec.as_str()));
    assert_eq!(
        row.diff.as_deref(),
        Some(r#"{"role":["receptionist",null]}"#)
    );
    assert_eq!(
        row.detail.as_deref(),
        Some("Rae Reception <rec@example.com>")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_owner_can_be_neither_removed_nor_demoted() {
    let (mut owner, a) = acme().await;
    let me = a.owner_id.clone();
    let before = owner.audit_rows(&a).await.len();

    let r = set_role(&mut owner, &a, &me, "doctor").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    r.assert_contains("only owner");
    let r = remove(&mut owner, &a, &me).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("only owner"));
    assert_eq!(owner.role_of(&a, &me).await, Some(Role::Owner));
    assert_eq!(
        owner.audit_rows(&a).await.len(),
        before,
        "refusals record nothing"
    );

    // With a second owner, the first may step down, and lands outside the staff page.
    let other = owner
        .staff(&a, "co@example.com", "Co Owner", Role::Owner)
        .await;
    let r = set_role(&mut owner, &a, &me, "doctor").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), a.path(""));
    assert_eq!(owner.role_of(&a, &me).await, Some(Role::Doctor));
    assert_eq!(
        owner.get(&a.path("staff")).await.status,
        StatusCode::FORBIDDEN
    );

    // And now the other is the last owner.
    let mut co = owner.browser_as("co@example.com").await;
    let r = remove(&mut co, &a, &other).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(owner.app.control.count_owners(a.id).await.unwrap(), 1);
}
