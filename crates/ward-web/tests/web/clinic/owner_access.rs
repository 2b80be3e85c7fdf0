//! Only owners reach the owner's pages; other clinics' owners do not even see them.

use axum::http::StatusCode;
use ward_core::Role;

use crate::support::admin::{Clinic, OwnerPages as _, SignUp as _, acme};

/// The owner's pages of clinic `a`: staff, settings, the audit log plain and with
/// `audit_query`, and the form that removes its owner.
fn owner_pages(a: &Clinic, audit_query: &str) -> [String; 5] {
    [
        a.path("staff"),
        a.path("settings"),
        a.path("audit"),
        a.path(&format!("audit?{audit_query}")),
        a.path(&format!("staff/{}/remove", a.owner_id)),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn other_roles_get_403_and_change_nothing() {
    let (mut owner, a) = acme().await;
    let settings_before = owner.get(&a.path("settings")).await.body;
    for (i, role) in [Role::Doctor, Role::Receptionist, Role::Billing]
        .into_iter()
        .enumerate()
    {
        let email = format!("member{i}@example.com");
        owner.staff(&a, &email, "A Member", role).await;
        let mut member = owner.browser_as(&email).await;
        for page in owner_pages(&a, "action=view") {
            let r = member.get(&page).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{role} {page}");
            assert!(!r.body.contains("owner@acme.test"), "{role} {page}");
        }
        let home = a.path("");
        let owner_id = a.owner_id.clone();
        let attempts: [(String, Vec<(&str, &str)>); 5] = [
            (
                a.path("staff/invite"),
                vec![("email", "x@example.com"), ("role", "owner")],
            ),
            (
                a.path(&format!("staff/{owner_id}/role")),
                vec![("role", "billing")],
            ),
            (a.path(&format!("staff/{owner_id}/remove")), vec![]),
            (
                a.path(&format!("staff/invites/{}/withdraw", "ab".repeat(32))),
                vec![],
            ),
            (
                a.path("settings"),
                vec![
                    ("name", "Taken Over"),
                    ("timezone", "UTC"),
                    ("currency", "USD"),
                ],
            ),
        ];
        for (action, fields) in &attempts {
            let r = member.submit(&home, action, fields).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{role} {action}");
        }
    }
    assert_eq!(owner.role_of(&a, &a.owner_id).await, Some(Role::Owner));
    assert_eq!(
        owner.app.control.clinic_members(a.id).await.unwrap().len(),
        4
    );
    assert_eq!(
        owner.app.control.clinic_by_id(a.id).await.unwrap().name,
        "Acme Clinic"
    );
    assert_eq!(owner.get(&a.path("settings")).await.body, settings_before);
    assert!(
        owner.audit_rows(&a).await.is_empty(),
        "nothing was recorded: nothing happened"
    );
    assert_eq!(owner.mails().await.len(), 1, "no invitation went out");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_clinics_owner_gets_404_for_every_owner_page() {
    let (owner_a, a) = acme().await;
    let mut owner_b = owner_a.fresh_browser();
    let b = owner_b.clinic("Bravo Clinic", "owner@bravo.test").await;
    let a_owner = a.owner_id.clone();
    for page in owner_pages(&a, "actor=x&before=5") {
        let r = owner_b.get(&page).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{page}");
        assert!(!r.body.contains("Acme"), "{page}");
    }
    let home = b.path("");
    for (action, fields) in [
        (
            a.path("staff/invite"),
            vec![("email", "x@example.com"), ("role", "owner")],
        ),
        (
            a.path(&format!("staff/{a_owner}/role")),
            vec![("role", "billing")],
        ),
        (a.path(&format!("staff/{a_owner}/remove")), vec![]),
        (
            a.path("settings"),
            vec![("name", "Mine"), ("timezone", "UTC"), ("currency", "USD")],
        ),
    ] {
        let r = owner_b.submit(&home, &action, &fields).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}");
    }
    // B's own staff page cannot reach A's members either.
    let r = owner_b
        .submit(
            &b.path("staff"),
            &b.path(&format!("staff/{a_owner}/remove")),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(owner_a.role_of(&a, &a_owner).await, Some(Role::Owner));
    assert_eq!(
        owner_a.app.control.clinic_by_id(a.id).await.unwrap().name,
        "Acme Clinic"
    );
    assert!(owner_a.audit_rows(&a).await.is_empty());
}
