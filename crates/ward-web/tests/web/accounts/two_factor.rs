//! Two-step sign-in: enrolment, the code after the password, replay, recovery codes,
//! limits, removal, owners sent to enrol, and sensitive actions asking again.

use axum::http::StatusCode;
use chrono::TimeDelta;
use totp_rs::{Builder, Secret};

use crate::support::{Options, PASSWORD, TestApp, field_value};

const OWNER: &str = "owner@example.com";

async fn strict() -> TestApp {
    TestApp::with(Options {
        owner_mfa_grace: TimeDelta::zero(),
        ..Options::default()
    })
    .await
}

/// The code an authenticator app shows for `secret` (as printed on the page) now.
fn code(t: &TestApp, secret: &str) -> String {
    let secret = Secret::try_from_base32(secret.replace(' ', "")).unwrap();
    let totp = Builder::new().with_secret(secret).build().unwrap();
    let now = ward_core::Clock::now(&t.clock);
    totp.generate(u64::try_from(now.timestamp()).unwrap())
        .to_string()
}

fn between<'a>(body: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    body.split(start)
        .skip(1)
        .filter_map(|rest| rest.split(end).next())
        .collect()
}

/// A new clinic's owner, signed in and enrolled, with a strict grace; with the clinic's
/// path and what [`enrol`] returns.
async fn enrolled_owner() -> (TestApp, String, (String, Vec<String>)) {
    let mut t = strict().await;
    let home = t.signup_verified("Acme Clinic", OWNER).await;
    let enrolment = enrol(&mut t).await;
    (t, home, enrolment)
}

/// Invites a doctor from the staff page at `staff`.
async fn invite_doctor(t: &mut TestApp, staff: &str) -> crate::support::Response {
    let invite = format!("{staff}/invite");
    t.submit(
        staff,
        &invite,
        &[("email", "dr@example.com"), ("role", "doctor")],
    )
    .await
}

/// Turns two-step sign-in on from the account page; returns the secret and the
/// recovery codes shown.
async fn enrol(t: &mut TestApp) -> (String, Vec<String>) {
    let r = t
        .submit("/account/two-factor", "/account/two-factor/setup", &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("<svg"), "a QR code is drawn in the page");
    let secret = between(&r.body, "<code id=\"secret\">", "</code>")[0].to_owned();
    let code = code(t, &secret);
    let r = t
        .post_with_csrf("/account/two-factor/confirm", &r.csrf(), &[("code", &code)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.assert_contains("Two-step sign-in is on");
    let codes: Vec<String> = between(&r.body, "<li><code>", "</code>")
        .into_iter()
        .map(str::to_owned)
        .collect();
    (secret, codes)
}

async fn sign_out(t: &mut TestApp) {
    let csrf = t.get("/account").await.csrf();
    t.post("/logout", &[("_csrf", &csrf)]).await;
    t.cookies.clear();
}

/// Signs in with the password; returns the answer (303 to the code form for an
/// account with a second factor).
async fn password_step(t: &mut TestApp) -> crate::support::Response {
    t.login(OWNER, PASSWORD).await
}

async fn code_step(t: &mut TestApp, code: &str) -> crate::support::Response {
    t.submit("/login/code", "/login/code", &[("code", code)])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_enrols_before_reaching_the_clinic_then_signs_in_with_a_code() {
    let mut t = strict().await;
    let home = t.signup_verified("Acme Clinic", OWNER).await;
    let r = t.get(&home).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/account/two-factor?required=1");
    let page = t.get(r.location()).await;
    page.assert_contains("Owners sign in with two steps");

    // A wrong first code does not turn it on.
    let setup = t
        .submit("/account/two-factor", "/account/two-factor/setup", &[])
        .await;
    let r = t
        .post_with_csrf(
            "/account/two-factor/confirm",
            &setup.csrf(),
            &[("code", "000000")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(!enrolled(&t).await);
    assert_eq!(t.get(&home).await.status, StatusCode::SEE_OTHER);

    let (secret, codes) = enrol(&mut t).await;
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.len() == 19), "{codes:?}");
    let r = t.get(&home).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "enrolled, the owner reaches the clinic"
    );

    // The mail says what happened and carries no secret and no code.
    let mails = t.mails().await;
    let notice = mails.last().unwrap();
    assert!(
        notice.contains("Two-step sign-in was turned on"),
        "{notice}"
    );
    assert!(!notice.contains(&secret.replace(' ', "")));
    assert!(codes.iter().all(|c| !notice.contains(c.as_str())));

    // Signing in: the password alone starts no session.
    sign_out(&mut t).await;
    t.clock.advance(TimeDelta::seconds(30));
    let r = password_step(&mut t).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login/code");
    assert!(t.session_cookie().is_none(), "no session before the code");
    assert_eq!(
        t.get("/account").await.status,
        StatusCode::SEE_OTHER,
        "the pending cookie opens nothing"
    );
    let r = code_step(&mut t, "123456").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("That code is not right"));
    assert!(t.session_cookie().is_none());
    let now_code = code(&t, &secret);
    let r = code_step(&mut t, &now_code).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), home);
    assert!(t.session_cookie().is_some());
    assert_eq!(t.get(&home).await.status, StatusCode::OK);

    let events = t.app.control.recent_auth_events(8).await.unwrap();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.kind.clone(), e.outcome.clone()))
        .collect();
    for want in [
        ("second_factor", "failed"),
        ("second_factor", "ok"),
        ("login", "password_ok"),
        ("login", "ok"),
    ] {
        assert!(
            seen.iter().any(|(k, o)| k == want.0 && o == want.1),
            "{want:?} not in {seen:?}"
        );
    }
}

async fn owner_id(t: &TestApp) -> String {
    let email = ward_core::Email::parse(OWNER).unwrap();
    t.app
        .control
        .user_by_email(&email)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Whether the owner has a second factor.
async fn enrolled(t: &TestApp) -> bool {
    t.app
        .control
        .second_factor_enrolled(&owner_id(t).await)
        .await
        .unwrap()
}

/// Asks to turn two-step sign-in off with `password` and `code`.
async fn turn_off(t: &mut TestApp, password: &str, code: &str) -> crate::support::Response {
    t.submit(
        "/account/two-factor",
        "/account/two-factor/remove",
        &[("password", password), ("code", code)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_works_once() {
    let (mut t, _, (secret, _)) = enrolled_owner().await;
    sign_out(&mut t).await;
    // The code typed at enrolment is still the current one: it is refused as used.
    password_step(&mut t).await;
    let now_code = code(&t, &secret);
    let r = code_step(&mut t, &now_code).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    r.assert_contains("already used");
    t.clock.advance(TimeDelta::seconds(30));
    let fresh = code(&t, &secret);
    let r = code_step(&mut t, &fresh).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // The same code, a second time in the same 30 seconds, from another browser.
    let mut other = t.fresh_browser();
    other.login(OWNER, PASSWORD).await;
    let r = code_step(&mut other, &fresh).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("already used"));
    assert!(other.session_cookie().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_code_signs_in_once_and_is_mailed_about() {
    let (mut t, _, (_, codes)) = enrolled_owner().await;
    sign_out(&mut t).await;
    password_step(&mut t).await;
    // Typed in capitals and without dashes, as people do.
    let typed = codes[3].replace('-', " ").to_uppercase();
    let r = code_step(&mut t, &typed).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mails = t.mails().await;
    let notice = mails.last().unwrap();
    assert!(notice.contains("recovery codes was just used"), "{notice}");
    assert!(notice.contains("9 unused codes remain"), "{notice}");
    assert!(!notice.contains(&codes[3]));
    let page = t.get("/account/two-factor").await;
    page.assert_contains("9 unused recovery codes");

    sign_out(&mut t).await;
    password_step(&mut t).await;
    let r = code_step(&mut t, &codes[3]).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a recovery code works once"
    );
    let r = code_step(&mut t, &codes[4]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_are_limited_and_end_the_pending_sign_in() {
    let (mut t, _, (secret, _)) = enrolled_owner().await;
    sign_out(&mut t).await;
    t.clock.advance(TimeDelta::seconds(30));
    password_step(&mut t).await;
    for _ in 0..5 {
        assert_eq!(
            code_step(&mut t, "111111").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let right = code(&t, &secret);
    let r = code_step(&mut t, &right).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(t.session_cookie().is_none());
    // The pending sign-in is gone: even the right code now needs the password first.
    let csrf = t.get("/login").await.csrf();
    let r = t
        .post_with_csrf("/login/code", &csrf, &[("code", &right)])
        .await;
    assert_ne!(r.status, StatusCode::SEE_OTHER);
    assert!(t.session_cookie().is_none());

    // Once the window has passed, the account can sign in again.
    t.clock.advance(TimeDelta::minutes(16));
    password_step(&mut t).await;
    let now_code = code(&t, &secret);
    let r = code_step(&mut t, &now_code).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_sign_in_expires() {
    let (mut t, _, (secret, _)) = enrolled_owner().await;
    sign_out(&mut t).await;
    password_step(&mut t).await;
    t.clock.advance(TimeDelta::minutes(6));
    let now_code = code(&t, &secret);
    let r = code_step(&mut t, &now_code).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    r.assert_contains("Sign in again");
    assert!(t.session_cookie().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn turning_it_off_needs_the_password_and_a_code() {
    let (mut t, home, (secret, _)) = enrolled_owner().await;
    t.clock.advance(TimeDelta::seconds(30));
    let current = code(&t, &secret);
    let r = turn_off(&mut t, "not my password", &current).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(enrolled(&t).await);
    let r = turn_off(&mut t, PASSWORD, "000000").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(enrolled(&t).await);
    let current = code(&t, &secret);
    let r = turn_off(&mut t, PASSWORD, &current).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Two-step sign-in is off"));
    assert!(!enrolled(&t).await);
    let mails = t.mails().await;
    assert!(
        mails
            .last()
            .unwrap()
            .contains("Two-step sign-in was turned off")
    );
    // An owner without it is sent to set it up again.
    assert_eq!(
        t.get(&home).await.location(),
        "/account/two-factor?required=1"
    );
    let events = t.app.control.recent_auth_events(10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "second_factor_removed" && e.outcome == "ok")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sensitive_actions_ask_for_the_password_and_a_code_again() {
    let (mut t, home, (secret, _)) = enrolled_owner().await;
    let staff = format!("{home}staff");
    t.clock.advance(TimeDelta::minutes(16));

    // A staff change after an old sign-in goes to "confirm it is you" first.
    let r = invite_doctor(&mut t, &staff).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let confirm = r.location().to_owned();
    assert!(confirm.starts_with("/account/confirm?next="), "{confirm}");
    let page = t.get(&confirm).await;
    page.assert_contains("name=\"code\"");
    let next = field_value(&page.body, "next").unwrap();
    assert_eq!(next, staff.trim_end_matches('/'));
    let r = t
        .post_with_csrf(
            "/account/confirm",
            &page.csrf(),
            &[("password", PASSWORD), ("code", ""), ("next", &next)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the password alone is not enough"
    );
    let r = t
        .post_with_csrf(
            "/account/confirm",
            &page.csrf(),
            &[
                ("password", PASSWORD),
                ("code", &code(&t, &secret)),
                ("next", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/account", "never sent to another site");
    let r = invite_doctor(&mut t, &staff).await;
    assert!(
        r.location().ends_with("staff?done=invited"),
        "{}",
        r.location()
    );
    assert!(
        t.mails().await.last().unwrap().contains("invited"),
        "the invitation went out"
    );

    // The export form asks for a code too once the confirmation is old.
    t.clock.advance(TimeDelta::minutes(16));
    let export = format!("{home}export");
    let page = t.get(&export).await;
    assert!(page.body.contains("name=\"password\"") && page.body.contains("name=\"code\""));
    let r = t
        .submit_page(&export, &[("password", PASSWORD), ("code", "999999")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        ward_app::exports::run_jobs(&t.app).await,
        0,
        "nothing queued"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_owners_get_the_configured_grace() {
    let mut t = TestApp::with(Options {
        owner_mfa_grace: TimeDelta::days(7),
        ..Options::default()
    })
    .await;
    let home = t.signup_verified("Acme Clinic", OWNER).await;
    let page = t.get(&home).await;
    assert_eq!(page.status, StatusCode::OK, "inside the grace");
    assert!(
        page.body
            .contains("Turn on two-step sign-in</a> before 2026-03-08 09:00 UTC"),
        "the owner is told until when: {}",
        page.body
    );
    t.clock.advance(TimeDelta::days(7) + TimeDelta::minutes(1));
    t.cookies.clear();
    let r = t.login(OWNER, PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = t.get(&home).await;
    assert_eq!(r.location(), "/account/two-factor?required=1");
    // Pages outside the clinic (the account, to enrol) still open.
    assert_eq!(t.get("/account/two-factor").await.status, StatusCode::OK);
}
