//! Signup that cannot be abused: a hidden field and a form stamp against scripts, a
//! few signups per client address an hour (forwarded headers do not help), a limit per
//! email address, and a sweeper that deletes what was never confirmed.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::TimeDelta;

use crate::support::{Options, PASSWORD, TestApp, field_value, signed_in_twice, times};

async fn guarded() -> TestApp {
    TestApp::with(Options {
        signup_per_hour: 5,
        signup_min_fill_secs: 3,
        ..Options::default()
    })
    .await
}

/// Opens the signup form, waits `wait` (the test clock), and sends it back with every
/// field the page carries, plus `extra` headers.
async fn sign_up(
    t: &mut TestApp,
    email: &str,
    wait: TimeDelta,
    headers: &[(&str, &str)],
    overrides: &[(&str, &str)],
) -> crate::support::Response {
    let page = t.get("/signup").await;
    let stamp = field_value(&page.body, "started").unwrap();
    t.clock.advance(wait);
    let mut fields = vec![
        ("_csrf", page.csrf()),
        ("started", stamp),
        ("website", String::new()),
        ("clinic_name", format!("Clinic of {email}")),
        ("name", "Dr. Ana Rao".to_owned()),
        ("email", email.to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    for (k, v) in overrides {
        fields.retain(|(name, _)| name != k);
        fields.push((k, (*v).to_owned()));
    }
    let mut req =
        Request::post("/signup").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = serde_urlencoded::to_string(&fields).unwrap();
    t.send(req.body(Body::from(body)).unwrap()).await
}

async fn verify_links_sent(t: &TestApp) -> usize {
    t.mails()
        .await
        .iter()
        .filter(|m| m.contains("/verify-email?token="))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_that_fill_the_hidden_field_or_do_not_wait_are_refused() {
    let mut t = guarded().await;
    let wait = TimeDelta::seconds(4);

    let r = sign_up(
        &mut t,
        "a@example.com",
        wait,
        &[],
        &[("website", "https://spam.example")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = sign_up(&mut t, "b@example.com", TimeDelta::zero(), &[], &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "sent at once");
    r.assert_contains("send the form again");
    assert!(r.body.contains("b@example.com"), "what was typed is kept");
    let r = sign_up(&mut t, "c@example.com", wait, &[], &[("started", "")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "no stamp");
    // A stamp claiming an earlier time, with a made-up MAC.
    let forged = format!(
        "{}.{}",
        ward_core::Clock::now(&t.clock).timestamp() - 60,
        "00".repeat(32)
    );
    let r = sign_up(
        &mut t,
        "d@example.com",
        TimeDelta::zero(),
        &[],
        &[("started", &forged)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "forged stamp");
    assert_eq!(verify_links_sent(&t).await, 0, "none of them got a link");

    // A person who takes a few seconds gets through.
    let r = sign_up(&mut t, "e@example.com", wait, &[], &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Check your email"));
    assert_eq!(verify_links_sent(&t).await, 1);
    let events = t.app.control.recent_auth_events(10).await.unwrap();
    for why in ["honeypot", "too_fast", "no_stamp"] {
        assert!(
            events
                .iter()
                .any(|e| e.kind == "signup" && e.outcome == why),
            "{why} is in the auth log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_few_signups_per_address_an_hour_whatever_the_forwarded_headers_say() {
    let mut t = guarded().await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let spoof = format!("198.51.100.{i}");
        let r = sign_up(
            &mut t,
            &format!("owner{i}@example.com"),
            TimeDelta::seconds(4),
            &[("x-forwarded-for", &spoof), ("fly-client-ip", &spoof)],
            &[],
        )
        .await;
        statuses.push(r.status);
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = times(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!((ok, limited), (5, 3), "{statuses:?}");
    assert_eq!(verify_links_sent(&t).await, 5);
    let events = t.app.control.recent_auth_events(20).await.unwrap();
    assert!(events.iter().any(|e| e.outcome == "limited_address"));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_email_address_cannot_be_signed_up_over_and_over() {
    let mut t = TestApp::new().await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        // From a different address each time: the limit is the email's.
        t.peer = format!("203.0.113.{}:4000", 10 + i).parse().unwrap();
        let r = sign_up(&mut t, "same@example.com", TimeDelta::seconds(4), &[], &[]).await;
        statuses.push(r.status);
    }
    assert_eq!(
        times(&statuses, StatusCode::TOO_MANY_REQUESTS),
        2,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unconfirmed_signups_expire_and_are_swept() {
    let mut t = TestApp::new().await;
    let r = sign_up(&mut t, "late@example.com", TimeDelta::seconds(4), &[], &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let link = t.link_in_last_mail("/verify-email").await;
    assert_eq!(t.get(&link).await.status, StatusCode::OK, "valid at first");

    // A day later the link is dead and the sweeper deletes it.
    t.clock
        .advance(TimeDelta::hours(24) + TimeDelta::minutes(1));
    assert_eq!(t.get(&link).await.status, StatusCode::BAD_REQUEST);
    let swept = t.app.control.sweep(t.app.session_policy).await.unwrap();
    assert!(swept.tokens >= 1, "{swept:?}");
    assert!(t.clinic_names().await.is_empty());
    let again = t.app.control.sweep(t.app.session_policy).await.unwrap();
    assert_eq!(again.tokens, 0, "nothing left to sweep: {again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_deletes_ended_sessions_and_leaves_live_ones() {
    let (mut t, mut laptop) = signed_in_twice().await;
    // The laptop signs out (revoked); the first browser stays signed in.
    let csrf = laptop.get("/account").await.csrf();
    laptop.post("/logout", &[("_csrf", &csrf)]).await;
    let swept = t.app.control.sweep(t.app.session_policy).await.unwrap();
    assert_eq!(swept.sessions, 1, "{swept:?}");
    assert_eq!(
        t.get("/account").await.status,
        StatusCode::OK,
        "the live one stays"
    );
    // Idle past the limit: gone at the next sweep.
    t.clock.advance(TimeDelta::hours(13));
    let swept = t.app.control.sweep(t.app.session_policy).await.unwrap();
    assert_eq!(swept.sessions, 1, "{swept:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_ends_every_other_reset_link() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let mut phone = t.fresh_browser();
    let mut links = Vec::new();
    for _ in 0..2 {
        phone
            .submit(
                "/password/forgot",
                "/password/forgot",
                &[("email", "ana@example.com")],
            )
            .await;
        links.push(phone.link_in_last_mail("/password/reset").await);
    }
    assert_ne!(links[0], links[1]);
    let mut before = t.fresh_browser();
    assert_eq!(
        before.get(&links[0]).await.status,
        StatusCode::OK,
        "both work at first"
    );
    let form = phone.get(&links[1]).await;
    let token = field_value(&form.body, "token").unwrap();
    let r = phone
        .reset_password(&form, &token, "a brand new passphrase")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Your password has been changed"));
    let mut other = t.fresh_browser();
    assert_eq!(
        other.get(&links[0]).await.status,
        StatusCode::BAD_REQUEST,
        "the older link no longer works"
    );
}
