//! Invitations: one-time links, valid 72 hours, for new and existing accounts.

use axum::http::StatusCode;
use chrono::TimeDelta;
use ward_core::{Email, Role};

use crate::support::admin::{Clinic, OwnerPages as _, SignUp as _, acme, acme_with_doctor};
use crate::support::{PASSWORD, Response, TestApp, field_value};

/// Posts the staff page's invite form from `t`: `email` as `role`.
async fn post_invite(t: &mut TestApp, slug: &str, email: &str, role: &str) -> Response {
    t.submit(
        &format!("/c/{slug}/staff"),
        &format!("/c/{slug}/staff/invite"),
        &[("email", email), ("role", role)],
    )
    .await
}

/// Invites `email` as `role` from the owner's browser; returns the link's path.
async fn invite(t: &mut TestApp, slug: &str, email: &str, role: &str) -> String {
    let r = post_invite(t, slug, email, role).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), format!("/c/{slug}/staff?done=invited"));
    t.link_in_last_mail("/invite").await
}

/// The account for `email`, if there is one.
async fn account(t: &TestApp, email: &str) -> Option<ward_control::User> {
    let email = Email::parse(email).unwrap();
    t.app.control.user_by_email(&email).await.unwrap()
}

/// Accepts the invitation `token` as whoever `t` is signed in as, if anyone.
async fn accept(t: &mut TestApp, token: &str) -> Response {
    let csrf = t.get("/login").await.csrf();
    t.post_with_csrf("/invite", &csrf, &[("token", token)])
        .await
}

/// Creates an account named `name` with `password` from the invitation `token`.
async fn create_account(
    t: &mut TestApp,
    csrf: &str,
    token: &str,
    name: &str,
    password: &str,
) -> Response {
    let form = [("token", token), ("name", name), ("password", password)];
    t.post_with_csrf("/invite", csrf, &form).await
}

/// Withdraws the invitation `id` of `clinic`, with the `_csrf` of its page `from`.
async fn withdraw(t: &mut TestApp, clinic: &Clinic, from: &str, id: &str) -> Response {
    let action = clinic.path(&format!("staff/invites/{id}/withdraw"));
    t.submit(&clinic.path(from), &action, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_person_creates_their_account_from_the_link_and_lands_in_the_clinic() {
    let (mut owner, a) = acme().await;
    let link = invite(&mut owner, &a.slug, "newdoc@example.com", "doctor").await;
    let mail = owner.mails().await.pop().unwrap();
    assert!(
        mail.contains("Acme Clinic") && mail.contains("doctor"),
        "{mail}"
    );

    let mut guest = owner.fresh_browser();
    // Opening the link (as a mail scanner would, twice) changes nothing.
    for _ in 0..2 {
        let page = guest.get(&link).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Acme Clinic"));
        assert!(page.body.contains("doctor"));
        assert!(page.body.contains("Create account and join"));
    }
    let email = "newdoc@example.com";
    assert!(account(&owner, email).await.is_none());

    let page = guest.get(&link).await;
    let token = field_value(&page.body, "token").unwrap();
    let csrf = page.csrf();
    // A short password is refused next to the field, the name kept.
    let r = create_account(&mut guest, &csrf, &token, "Dr. Bo Lin", "short").await;
    r.assert_refused(&["Dr. Bo Lin", "password-error"]);
    assert!(account(&owner, email).await.is_none());

    let r = create_account(&mut guest, &csrf, &token, "Dr. Bo Lin", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), a.path(""));
    assert!(guest.session_cookie().is_some(), "signed in");
    let home = guest.get(&a.path("")).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("Dr. Bo Lin"));

    let user = account(&owner, email).await.unwrap();
    assert!(user.email_verified, "the link proves the address");
    assert_eq!(owner.role_of(&a, &user.id).await, Some(Role::Doctor));

    // Single use.
    let again = guest.fresh_browser().get(&link).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    let csrf = guest.get(&a.path("")).await.csrf();
    let r = guest
        .post_with_csrf("/invite", &csrf, &[("token", &token)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Both steps are in the clinic's log.
    let rows = owner.audit_rows(&a).await;
    let staff: Vec<_> = rows
        .iter()
        .filter(|r| r.entity_type.as_deref() == Some("staff"))
        .collect();
    assert_eq!(staff.len(), 2, "{staff:?}");
    assert_eq!(staff[0].action, "create");
    assert_eq!(staff[0].entity_id.as_deref(), Some("newdoc@example.com"));
    assert_eq!(staff[0].actor_id.as_deref(), Some(a.owner_id.as_str()));
    assert_eq!(
        staff[0].diff.as_deref(),
        Some(r#"{"role":[null,"doctor"]}"#)
    );
    assert_eq!(staff[1].action, "create");
    assert_eq!(staff[1].entity_id.as_deref(), Some(user.id.as_str()));
    assert_eq!(staff[1].actor_id.as_deref(), Some(user.id.as_str()));
    assert_eq!(staff[1].actor_role.as_deref(), Some("doctor"));
    assert_eq!(staff[1].detail.as_deref(), Some("joined by invitation"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_account_joins_only_when_signed_in_as_the_invited_address() {
    let (mut owner, a) = acme().await;
    // Bob owns clinic B; Carol owns clinic C.
    let mut bob = owner.fresh_browser();
    let b = bob.clinic("Bob Clinic", "bob@example.com").await;
    let mut carol = owner.fresh_browser();
    carol.clinic("Carol Clinic", "carol@example.com").await;

    let link = invite(&mut owner, &a.slug, "bob@example.com", "receptionist").await;

    // Not signed in: asked to sign in first; accepting does nothing.
    let mut anon = owner.fresh_browser();
    let page = anon.get(&link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("already have an account"));
    assert!(!page.body.contains("Create account and join"));
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let r = accept(&mut anon, &token).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Another clinic's owner, signed in, cannot use it.
    let page = carol.get(&link).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("this invitation is for bob@example.com"));
    let r = accept(&mut carol, &token).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let carol_id = account(&owner, "carol@example.com").await.unwrap().id;
    assert_eq!(owner.role_of(&a, &carol_id).await, None);
    assert_eq!(carol.get(&a.path("")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(owner.role_of(&a, &b.owner_id).await, None);

    // Bob, signed in, joins; his own clinic is untouched.
    let page = bob.get(&link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Join Acme Clinic"));
    let r = bob
        .post_with_csrf("/invite", &page.csrf(), &[("token", &token)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), a.path(""));
    assert_eq!(
        owner.role_of(&a, &b.owner_id).await,
        Some(Role::Receptionist)
    );
    assert_eq!(owner.role_of(&b, &b.owner_id).await, Some(Role::Owner));
    assert_eq!(bob.get(&a.path("")).await.status, StatusCode::OK);

    // Used up.
    let r = accept(&mut bob, &token).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invitation_expires_after_72_hours() {
    let (mut owner, a) = acme().await;
    let link = invite(&mut owner, &a.slug, "late@example.com", "billing").await;
    let token = link.split("token=").nth(1).unwrap().to_owned();

    owner.clock.advance(TimeDelta::hours(71));
    let mut guest = owner.fresh_browser();
    assert_eq!(guest.get(&link).await.status, StatusCode::OK);

    owner
        .clock
        .advance(TimeDelta::hours(1) + TimeDelta::seconds(1));
    let page = guest.get(&link).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("expired"));
    let csrf = guest.get("/login").await.csrf();
    let r = create_account(&mut guest, &csrf, &token, "Late Person", PASSWORD).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(account(&owner, "late@example.com").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn inviting_refuses_bad_input_and_current_staff() {
    let (mut owner, a, _) = acme_with_doctor().await;
    let r = post_invite(&mut owner, &a.slug, "not-an-address", "doctor").await;
    r.assert_refused(&["invite-email-error", "not-an-address"]);
    let r = post_invite(&mut owner, &a.slug, "x@example.com", "janitor").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("invite-role-error"));
    let r = post_invite(&mut owner, &a.slug, "DOC@example.com", "billing").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("already on the staff"));
    // Only the signup's verification mail was sent.
    assert_eq!(owner.mails().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_invitation_is_listed_and_can_be_withdrawn() {
    let (mut owner, a) = acme().await;
    let link = invite(&mut owner, &a.slug, "maybe@example.com", "billing").await;
    let page = owner.get(&a.path("staff")).await;
    assert!(page.body.contains("Open invitations"));
    assert!(page.body.contains("maybe@example.com"));
    assert!(
        page.body.contains("2026-03-04 09:00"),
        "expiry in the clinic's time"
    );
    let marker = "/staff/invites/";
    let start = page.body.find(marker).unwrap() + marker.len();
    let id = page.body[start..start + 64].to_owned();

    // Another clinic's owner cannot withdraw it.
    let mut other = owner.fresh_browser();
    let b = other.clinic("Bravo Clinic", "owner@bravo.test").await;
    let r = withdraw(&mut other, &b, "", &id).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        owner.fresh_browser().get(&link).await.status,
        StatusCode::OK
    );

    let r = withdraw(&mut owner, &a, "staff", &id).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        owner.fresh_browser().get(&link).await.status,
        StatusCode::BAD_REQUEST
    );
    assert!(
        !owner
            .get(&a.path("staff"))
            .await
            .body
            .contains("Open invitations")
    );
    let row = owner.audit_rows(&a).await.pop().unwrap();
    assert_eq!(row.action, "delete");
    assert_eq!(row.entity_id.as_deref(), Some("maybe@example.com"));
    assert_eq!(row.detail.as_deref(), Some("invitation withdrawn"));
    // Twice is a 404, not a second record.
    let r = withdraw(&mut owner, &a, "staff", &id).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
