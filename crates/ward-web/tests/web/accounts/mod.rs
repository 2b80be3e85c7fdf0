//! Accounts: signup, verification, sign-in, sessions, CSRF, reset, limits.

mod signup_abuse;
mod two_factor;

use crate::support::{Options, PASSWORD, TestApp, field_value, signed_in_twice, times};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::TimeDelta;
use ward_web::limits::IpLimit;

#[tokio::test(flavor = "multi_thread")]
async fn signup_then_verify_from_the_mail_lands_the_owner_on_their_clinic() {
    let mut t = TestApp::new().await;
    let r = t
        .sign_up("Acme Clinic", "Dr. Ana Rao", "ana@example.com", PASSWORD)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Check your email"));
    assert!(
        t.session_cookie().is_none(),
        "no session before the address is confirmed"
    );

    let link = t.link_in_last_mail("/verify-email").await;
    // Opening the link only shows a button; the token is still good afterwards.
    let page = t.get(&link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("ana@example.com"));
    let again = t.get(&link).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a GET must not consume the link"
    );

    let token = field_value(&page.body, "token").unwrap();
    let r = t
        .post_with_csrf("/verify-email", &page.csrf(), &[("token", &token)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/c/acme-clinic/");
    let home = t.get("/c/acme-clinic/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("Acme Clinic"));
    assert!(home.body.contains("owner"));

    // The link was single use.
    let mut other = t.fresh_browser();
    let reuse = other.get(&link).await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert!(reuse.body.contains("expired or was already used"));

    let kinds: Vec<_> = t
        .app
        .control
        .recent_auth_events(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.outcome))
        .collect();
    assert!(kinds.contains(&("signup".into(), "ok".into())));
    assert!(kinds.contains(&("verify_email".into(), "ok".into())));
}

#[tokio::test(flavor = "multi_thread")]
async fn signup_form_errors_are_shown_next_to_fields_and_keep_the_input() {
    let mut t = TestApp::new().await;
    let r = t
        .sign_up("Acme <Clinic>", "", "not-an-email", "short")
        .await;
    r.assert_refused(&[
        "Enter your name.",
        "Enter an email address",
        "at least 10 characters",
    ]);
    assert!(
        r.body.contains("value=\"Acme &#60;Clinic&#62;\"")
            || r.body.contains("value=\"Acme &lt;Clinic&gt;\""),
        "input kept, escaped: {}",
        r.body
    );
    assert!(
        !r.body.contains("value=\"short\""),
        "passwords are never echoed"
    );
    assert!(t.clinic_names().await.is_empty(), "nothing created");
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_up_with_a_taken_address_looks_the_same_and_warns_the_owner() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme Clinic", "ana@example.com").await;
    let mut a = t.fresh_browser();
    let fresh = a.sign_up("Beta", "B", "new@example.com", PASSWORD).await;
    let mut b = t.fresh_browser();
    let taken = b.sign_up("Gamma", "G", "ANA@example.com", PASSWORD).await;
    assert_eq!(fresh.status, taken.status);
    assert_eq!(fresh.body, taken.body);
    let last = t.mails().await.pop().unwrap();
    assert!(
        last.contains("Someone tried to sign up with your address"),
        "{last}"
    );
    let names = t.clinic_names().await;
    assert!(
        !names.contains(&"Gamma".to_owned()),
        "no clinic for the taken address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_exists_before_the_address_is_confirmed() {
    let mut t = TestApp::new().await;
    let r = t.sign_up("Acme", "Ana", "ana@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // No account, no clinic row, no clinic file.
    let email = ward_core::Email::parse("ana@example.com").unwrap();
    assert!(t.app.control.user_by_email(&email).await.unwrap().is_none());
    assert!(t.clinic_names().await.is_empty());
    let files = std::fs::read_dir(t.dir.path().join("clinics"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(files, 0, "no clinic database before confirmation");
    // Signing in with those details is refused like any unknown address.
    let r = t.login("ana@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(t.session_cookie().is_none());
    let r = t.get("/c/acme/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login");

    // Confirming makes all of it at once.
    let link = t.link_in_last_mail("/verify-email").await;
    let page = t.get(&link).await;
    let token = field_value(&page.body, "token").unwrap();
    let r = t
        .post_with_csrf("/verify-email", &page.csrf(), &[("token", &token)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/c/acme/");
    assert_eq!(t.clinic_names().await.len(), 1);
    let user = t.app.control.user_by_email(&email).await.unwrap().unwrap();
    assert!(user.email_verified);
    assert_eq!(t.get("/c/acme/").await.status, StatusCode::OK);
    // The link was used up.
    let mut other = t.fresh_browser();
    let page = other.get(&link).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert_eq!(t.clinic_names().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_email_and_wrong_password_are_indistinguishable() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let mut a = t.fresh_browser();
    let mut b = t.fresh_browser();
    // Same pre-session token in both browsers, so the pages can be compared byte for byte.
    let csrf = a.get("/login").await.csrf();
    b.cookies = a.cookies.clone();
    let wrong_pw = a
        .post_with_csrf(
            "/login",
            &csrf,
            &[
                ("email", "ana@example.com"),
                ("password", "wrong password here"),
            ],
        )
        .await;
    let unknown = b
        .post_with_csrf(
            "/login",
            &csrf,
            &[
                ("email", "zed@example.com"),
                ("password", "wrong password here"),
            ],
        )
        .await;
    assert_eq!(wrong_pw.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_pw.status, unknown.status);
    assert_eq!(
        wrong_pw.body.replace("ana@example.com", "X"),
        unknown.body.replace("zed@example.com", "X")
    );
    let events = t.app.control.recent_auth_events(5).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "login"
        && e.outcome == "failed"
        && e.email.as_deref() == Some("zed@example.com")
        && e.ip.as_deref() == Some("203.0.113.7")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_session_token_is_issued_at_sign_in_and_the_old_one_dies() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let first = t.session_cookie().unwrap();
    let r = t.login("ana@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let second = t.session_cookie().unwrap();
    assert_ne!(first, second);
    let mut old = t.fresh_browser();
    old.cookies.insert("ward_session".into(), first);
    let r = old.get("/account").await;
    assert_eq!(
        r.location(),
        "/login",
        "{} {}",
        r.status,
        &r.body[..r.body.len().min(300)]
    );
    assert_eq!(t.get("/account").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_revokes_the_session() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let token = t.session_cookie().unwrap();
    let csrf = t.get("/account").await.csrf();
    let r = t.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(r.location(), "/login");
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("ward_session=;")
                && c.contains("Max-Age=0")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Path=/"))
    );
    let mut replay = t.fresh_browser();
    replay.cookies.insert("ward_session".into(), token);
    assert_eq!(replay.get("/account").await.location(), "/login");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_after_12_idle_hours_and_30_days_in_all() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    t.clock.advance(TimeDelta::hours(11));
    assert_eq!(t.get("/account").await.status, StatusCode::OK);
    t.clock
        .advance(TimeDelta::hours(12) + TimeDelta::minutes(1));
    assert_eq!(t.get("/account").await.location(), "/login", "idle timeout");

    t.login("ana@example.com", PASSWORD).await;
    for _ in 0..29 {
        t.clock.advance(TimeDelta::hours(11));
        assert_eq!(t.get("/account").await.status, StatusCode::OK);
        t.clock.advance(TimeDelta::hours(11));
        assert_eq!(t.get("/account").await.status, StatusCode::OK);
        t.clock.advance(TimeDelta::hours(2));
        assert_eq!(t.get("/account").await.status, StatusCode::OK);
    }
    t.clock.advance(TimeDelta::hours(25));
    assert_eq!(
        t.get("/account").await.location(),
        "/login",
        "absolute lifetime"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn posts_without_the_right_csrf_token_are_refused_and_change_nothing() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let missing = t.post("/account/sessions/revoke-all", &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = t
        .post(
            "/account/sessions/revoke-all",
            &[("_csrf", &"0".repeat(64))],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        t.get("/account").await.status,
        StatusCode::OK,
        "still signed in"
    );

    // A token from another session is no good either.
    let mut other = t.fresh_browser();
    other.signup_verified("Beta", "bo@example.com").await;
    let foreign = other.get("/account").await.csrf();
    assert_eq!(
        t.post("/account/sessions/revoke-all", &[("_csrf", &foreign)])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Cross-site origin, even with the right token.
    let csrf = t.get("/account").await.csrf();
    let body = serde_urlencoded::to_string([("_csrf", csrf.as_str())]).unwrap();
    let req = Request::post("/account/sessions/revoke-all")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(t.send(req).await.status, StatusCode::FORBIDDEN);
    assert_eq!(t.get("/account").await.status, StatusCode::OK);
    // `Origin: null` (our no-referrer policy makes browsers send it) defers to the
    // browser's own cross-site marker and the token.
    let csrf = t.get("/account").await.csrf();
    let body = serde_urlencoded::to_string([("_csrf", csrf.as_str())]).unwrap();
    let req = Request::post("/account/sessions/revoke-all")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "null")
        .header("sec-fetch-site", "cross-site")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(t.send(req).await.status, StatusCode::FORBIDDEN);
    assert_eq!(t.get("/account").await.status, StatusCode::OK);

    // Anonymous forms: the pre-session cookie must match.
    let mut anon = t.fresh_browser();
    let r = anon
        .post(
            "/login",
            &[
                ("_csrf", &"a".repeat(64)),
                ("email", "ana@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_cookie_carries_the_security_attributes_over_https() {
    let mut t = TestApp::with(Options {
        public_url: Some("https://ward.example".into()),
        ..Options::default()
    })
    .await;
    let page = t.get("/signup").await;
    assert!(
        page.headers
            .get(header::STRICT_TRANSPORT_SECURITY)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("max-age=31536000; includeSubDomains")
    );
    // A page without a form (here an error) mints no cookie: a browser's parallel first
    // requests must not overwrite the token of the form it is about to show.
    let mut fresh = t.fresh_browser();
    let err = fresh.get("/no/such/page").await;
    assert_eq!(err.status, StatusCode::NOT_FOUND);
    assert!(err.set_cookies().is_empty());
    let mut all = page.set_cookies();
    // An error page that does show a form sets it with the same attributes.
    let mut other = t.fresh_browser();
    let bad = other.get("/password/forgot").await;
    let rejected = other
        .post_with_csrf(
            "/password/forgot",
            &bad.csrf(),
            &[("email", "not an email")],
        )
        .await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    all.extend(bad.set_cookies());
    let verified_path = {
        let r = t.sign_up("Acme", "Ana", "ana@example.com", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK);
        let link = t.link_in_last_mail("/verify-email").await;
        assert!(
            t.mails()
                .await
                .pop()
                .unwrap()
                .contains("https://ward.example/verify-email?token=")
        );
        let p = t.get(&link).await;
        let token = field_value(&p.body, "token").unwrap();
        let r = t
            .post_with_csrf("/verify-email", &p.csrf(), &[("token", &token)])
            .await;
        all.extend(r.set_cookies());
        r.location().to_owned()
    };
    assert_eq!(verified_path, "/c/acme/");
    let csrf = t.get("/account").await.csrf();
    all.extend(t.post("/logout", &[("_csrf", &csrf)]).await.set_cookies());
    assert!(all.iter().any(|c| c.starts_with("__Host-ward_session=")));
    assert!(all.len() >= 3);
    for c in &all {
        assert!(c.starts_with("__Host-"), "{c}");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_carry_security_headers_and_signed_in_pages_are_not_cached() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    for path in ["/login", "/account", "/c/acme/", "/missing"] {
        let r = t.get(path).await;
        let h = |n: header::HeaderName| {
            r.headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let csp = h(header::CONTENT_SECURITY_POLICY);
        assert!(
            csp.contains("script-src 'self'")
                && !csp.contains("unsafe-inline")
                && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(h(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(h(header::CACHE_CONTROL), "no-store", "{path}");
        assert!(
            r.headers.get(header::STRICT_TRANSPORT_SECURITY).is_none(),
            "no HSTS over plain http"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn password_reset_sets_the_new_password_and_ends_every_session() {
    let (mut t, mut laptop) = signed_in_twice().await;
    assert_eq!(laptop.get("/account").await.status, StatusCode::OK);

    let mut phone = t.fresh_browser();
    let known = phone
        .submit(
            "/password/forgot",
            "/password/forgot",
            &[("email", "ana@example.com")],
        )
        .await;
    let mut nobody = t.fresh_browser();
    let unknown = nobody
        .submit(
            "/password/forgot",
            "/password/forgot",
            &[("email", "nobody@example.com")],
        )
        .await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(
        known.body, unknown.body,
        "the same answer for unknown addresses"
    );

    let link = phone.link_in_last_mail("/password/reset").await;
    assert!(
        phone
            .mails()
            .await
            .pop()
            .unwrap()
            .contains("Reset your Ward password")
    );
    let form = phone.get(&link).await;
    assert_eq!(form.status, StatusCode::OK);
    let token = field_value(&form.body, "token").unwrap();
    let weak = phone.reset_password(&form, &token, "short").await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    let done = phone
        .reset_password(&form, &token, "a brand new passphrase")
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("Your password has been changed"));

    assert_eq!(
        laptop.get("/account").await.location(),
        "/login",
        "other sessions revoked"
    );
    assert_eq!(t.get("/account").await.location(), "/login");
    assert_eq!(
        phone.login("ana@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        phone
            .login("ana@example.com", "a brand new passphrase")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let reuse = t.fresh_browser().get(&link).await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST, "single use");
    assert!(
        t.app
            .control
            .recent_auth_events(20)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "reset_complete")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_links_expire_after_30_minutes() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let mut b = t.fresh_browser();
    b.submit(
        "/password/forgot",
        "/password/forgot",
        &[("email", "ana@example.com")],
    )
    .await;
    let link = b.link_in_last_mail("/password/reset").await;
    t.clock.advance(TimeDelta::minutes(31));
    assert_eq!(b.get(&link).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_password_needs_the_current_one_and_signs_out_other_devices() {
    let (mut t, mut other) = signed_in_twice().await;
    let page = t.get("/account").await;
    assert!(page.body.contains("(this device)"));
    let csrf = page.csrf();
    let bad = t
        .post_with_csrf(
            "/account/password",
            &csrf,
            &[
                ("current_password", "not it at all"),
                ("new_password", "another fine passphrase"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("not your current password"));
    let ok = t
        .post_with_csrf(
            "/account/password",
            &csrf,
            &[
                ("current_password", PASSWORD),
                ("new_password", "another fine passphrase"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(
        t.get("/account").await.status,
        StatusCode::OK,
        "this browser continues with a new session"
    );
    assert_eq!(other.get("/account").await.location(), "/login");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_can_see_and_end_their_other_sessions() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let mut other = t.fresh_browser();
    other.peer = "198.51.100.9:1234".parse().unwrap();
    other
        .send(
            Request::get("/login")
                .header(
                    header::USER_AGENT,
                    "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    other.login("ana@example.com", PASSWORD).await;
    let page = t.get("/account").await;
    page.assert_contains("198.51.100.9");
    let other_id = {
        let sessions = t
            .app
            .control
            .list_sessions(
                &t.app
                    .control
                    .user_by_email(&ward_core::Email::parse("ana@example.com").unwrap())
                    .await
                    .unwrap()
                    .unwrap()
                    .id,
                Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(sessions.len(), 2);
        sessions
            .into_iter()
            .find(|s| s.ip.as_deref() == Some("198.51.100.9"))
            .unwrap()
            .id
    };
    let r = t
        .post_with_csrf(
            "/account/sessions/revoke",
            &page.csrf(),
            &[("session", &other_id)],
        )
        .await;
    assert_eq!(r.location(), "/account");
    assert_eq!(other.get("/account").await.location(), "/login");
    assert_eq!(t.get("/account").await.status, StatusCode::OK);
    let csrf = t.get("/account").await.csrf();
    t.post("/account/sessions/revoke-all", &[("_csrf", &csrf)])
        .await;
    assert_eq!(
        t.get("/account").await.location(),
        "/login",
        "sign out everywhere includes this device"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_rate_limited_per_address_and_spoofed_headers_do_not_help() {
    let mut t = TestApp::with(Options {
        ip_limit: IpLimit {
            burst: 5,
            replenish: std::time::Duration::from_secs(600),
        },
        ..Options::default()
    })
    .await;
    let csrf = t.get("/login").await.csrf();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let body = serde_urlencoded::to_string([
            ("_csrf", csrf.as_str()),
            ("email", &format!("u{i}@example.com")),
            ("password", "wrong password here"),
        ])
        .unwrap();
        let req = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("x-forwarded-for", format!("10.9.8.{i}"))
            .body(Body::from(body))
            .unwrap();
        let r = t.send(req).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers.get(header::RETRY_AFTER).is_some());
            assert!(r.body.contains("Too many attempts"));
        }
        statuses.push(r.status);
    }
    assert_eq!(
        times(&statuses, StatusCode::UNAUTHORIZED),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        times(&statuses, StatusCode::TOO_MANY_REQUESTS),
        3,
        "{statuses:?}"
    );
    // Another client address is not affected; GETs are not limited.
    assert_eq!(t.get("/login").await.status, StatusCode::OK);
    let mut elsewhere = t.fresh_browser();
    elsewhere.peer = "198.51.100.1:1".parse().unwrap();
    assert_eq!(
        elsewhere
            .login("x@example.com", "wrong password here")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_fly_the_client_address_comes_from_fly_client_ip_and_ipv6_is_keyed_by_64() {
    let mut t = TestApp::with(Options {
        trusted_proxy: ward_web::TrustedProxy::Fly,
        ip_limit: IpLimit {
            burst: 2,
            replenish: std::time::Duration::from_secs(600),
        },
        ..Options::default()
    })
    .await;
    let csrf = t.get("/login").await.csrf();
    let attempt = |ip: &str| {
        let body = serde_urlencoded::to_string([
            ("_csrf", csrf.as_str()),
            ("email", "x@example.com"),
            ("password", "wrong password here"),
        ])
        .unwrap();
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("fly-client-ip", ip)
            .body(Body::from(body))
            .unwrap()
    };
    assert_eq!(
        t.send(attempt("2001:db8:1:2::1")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.send(attempt("2001:db8:1:2::ffff")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.send(attempt("2001:db8:1:2:9::1")).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "same /64"
    );
    assert_eq!(
        t.send(attempt("2001:db8:1:3::1")).await.status,
        StatusCode::UNAUTHORIZED,
        "another /64"
    );
    let events = t.app.control.recent_auth_events(1).await.unwrap();
    assert_eq!(
        events[0].ip.as_deref(),
        Some("2001:db8:1:3::1"),
        "the auth log has the address the key extractor saw"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_rate_limited_per_email_across_client_addresses() {
    let mut t = TestApp::new().await;
    let mut limited = 0;
    for i in 0..14 {
        let mut b = t.fresh_browser();
        b.peer = format!("198.51.100.{i}:1").parse().unwrap();
        let r = b.login("target@example.com", "wrong password here").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert_eq!(limited, 4, "10 attempts per address at once, then limited");
    // A different address is unaffected.
    let r = t.login("other@example.com", "wrong password here").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_of_one_clinic_gets_not_found_for_another() {
    let mut a = TestApp::new().await;
    a.signup_verified("Acme", "ana@example.com").await;
    let mut b = a.fresh_browser();
    b.signup_verified("Beta", "bo@example.com").await;
    let foreign = b.get("/c/acme/").await;
    let missing = b.get("/c/no-such-clinic/").await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(
        foreign.body, missing.body,
        "indistinguishable from a clinic that does not exist"
    );
    assert!(!foreign.body.contains("Acme"));
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_back_off_after_100_an_hour_but_never_lock_out_for_good() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    for _ in 0..100 {
        let event = ward_control::AuthEvent {
            kind: "login".into(),
            email: Some("ana@example.com".into()),
            outcome: "failed".into(),
            ..Default::default()
        };
        t.app.control.record_auth_event(event).await.unwrap();
    }
    let mut b = t.fresh_browser();
    let r = b.login("ana@example.com", PASSWORD).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password is not processed now"
    );
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    t.clock.advance(TimeDelta::minutes(61));
    assert_eq!(
        b.login("ana@example.com", PASSWORD).await.status,
        StatusCode::SEE_OTHER,
        "an hour later the owner gets in"
    );
}

/// 50 sign-ins at production cost at once: hashing runs on the blocking pool behind a
/// cap, so the async workers keep answering `/healthz` quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_stays_fast_during_50_concurrent_sign_ins_runs_alone() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let t = TestApp::with_hashing_cost(ward_control::passwords::PRODUCTION_COST).await;
    let hash = t.app.hasher.hash(PASSWORD).await.unwrap();
    // 50 different people, so the per-email limit stays out of the way.
    for i in 0..50 {
        let email = ward_core::Email::parse(&format!("user{i}@example.com")).unwrap();
        let user = t
            .app
            .control
            .create_user(&email, "Staff", &hash)
            .await
            .unwrap()
            .unwrap();
        t.app.control.mark_email_verified(&user.id).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ward_web::router(t.app.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    async fn http(addr: std::net::SocketAddr, request: String) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
    let csrf = "c".repeat(64);
    let login = |i: usize| {
        let body = serde_urlencoded::to_string([
            ("_csrf", csrf.as_str()),
            ("email", &format!("user{i}@example.com")),
            ("password", PASSWORD),
        ])
        .unwrap();
        format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: ward_csrf={csrf}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let logins: Vec<_> = (0..50)
        .map(|i| tokio::spawn(http(addr, login(i))))
        .collect();
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut latencies = Vec::new();
    let started = Instant::now();
    while logins.iter().any(|h| !h.is_finished()) && started.elapsed() < Duration::from_secs(120) {
        let t0 = Instant::now();
        let r = http(addr, health.clone()).await;
        latencies.push(t0.elapsed());
        assert!(r.ends_with("ok"), "{r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ok = 0;
    for h in logins {
        if h.await.unwrap().starts_with("HTTP/1.1 303") {
            ok += 1;
        }
    }
    assert_eq!(ok, 50, "every sign-in succeeds");
    latencies.sort();
    assert!(
        latencies.len() >= 20,
        "the logins took long enough to sample: {}",
        latencies.len()
    );
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    assert!(
        p99 < Duration::from_millis(50),
        "healthz p99 {p99:?} over {} samples",
        latencies.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_an_account_ends_its_sessions_and_refuses_sign_in() {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let email = ward_core::Email::parse("ana@example.com").unwrap();
    assert!(t.app.control.set_user_disabled(&email, true).await.unwrap());
    assert_eq!(
        t.get("/account").await.location(),
        "/login",
        "the session ended"
    );
    assert_eq!(
        t.login("ana@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        t.app
            .control
            .set_user_disabled(&email, false)
            .await
            .unwrap()
    );
    assert_eq!(
        t.login("ana@example.com", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_out_everywhere_ends_sessions_another_browser_holds_at_once() {
    let (mut t, mut other) = signed_in_twice().await;
    // Both sessions have just been used (and may be remembered for a moment).
    assert_eq!(other.get("/account").await.status, StatusCode::OK);
    let csrf = t.get("/account").await.csrf();
    t.post("/account/sessions/revoke-all", &[("_csrf", &csrf)])
        .await;
    assert_eq!(
        other.get("/account").await.location(),
        "/login",
        "no grace period for a revoked session"
    );
}
