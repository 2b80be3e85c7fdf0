//! Two-step sign-in in a real browser: a new owner is sent to set it up, scans (here:
//! reads) the key, confirms with a code, and later signs in with password and code.

use std::time::Duration;

use totp_rs::{Builder, Secret};

use super::server::Server;
use super::webdriver::Driver;
use super::{PASSWORD, artifact, sign_up_and_confirm};

fn unix_now() -> u64 {
    u64::try_from(ward_core::Clock::now(&ward_core::SystemClock).timestamp()).unwrap()
}

/// What an authenticator app shows for `secret` at `at` (Unix seconds).
fn code_at(secret: &str, at: u64) -> String {
    let secret = Secret::try_from_base32(secret.replace(' ', "")).unwrap();
    Builder::new()
        .with_secret(secret)
        .build()
        .unwrap()
        .generate(at)
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_sets_up_two_step_sign_in_and_signs_in_with_a_code() {
    let server = Server::start_with(&[("WARD_OWNER_MFA_GRACE", "0")]);
    let browser = Driver::start().await;

    sign_up_and_confirm(
        &browser,
        &server,
        "Hilltop Clinic",
        "Dr. Kavya Menon",
        "kavya@example.com",
    )
    .await;

    // An owner without a second factor is sent to set one up, not into the clinic.
    let url = browser
        .wait_for_url(|u| u.contains("/account/two-factor"))
        .await;
    assert!(url.ends_with("/account/two-factor?required=1"), "{url}");
    browser
        .click("form[action='/account/two-factor/setup'] button")
        .await;
    browser.wait_for_text("Set up your authenticator app").await;
    let page = browser.source().await;
    assert!(page.contains("<svg"), "the QR code is in the page");
    let secret = browser.text("#secret").await;
    assert!(secret.len() >= 32, "{secret}");
    browser.screenshot(&artifact("two-factor-setup.png")).await;
    let enrolled_at = unix_now();
    browser.fill("#code", &code_at(&secret, enrolled_at)).await;
    browser
        .click("form[action='/account/two-factor/confirm'] button")
        .await;
    browser.wait_for_text("Your recovery codes").await;
    let codes = browser.text("ol.recovery-codes").await;
    assert_eq!(codes.lines().count(), 10, "{codes}");

    browser
        .goto(&format!("{}/c/hilltop-clinic/", server.base))
        .await;
    let url = browser.wait_for_url(|u| u.contains("/c/")).await;
    assert!(url.ends_with("/c/hilltop-clinic/"), "{url}");

    // Sign out and back in: the password, then the code.
    browser.click("nav.user button[type=submit]").await;
    browser.wait_for_url(|u| u.ends_with("/login")).await;
    browser.fill("#email", "kavya@example.com").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_url(|u| u.ends_with("/login/code")).await;
    browser.wait_for_text("Two-step sign-in").await;
    browser
        .goto(&format!("{}/c/hilltop-clinic/", server.base))
        .await;
    browser.wait_for_url(|u| u.ends_with("/login")).await;
    browser.goto(&format!("{}/login/code", server.base)).await;
    browser.wait_for_text("six-digit code").await;

    // The code used at enrolment cannot be used again: wait for the app's next one.
    let next_step = (enrolled_at / 30 + 1) * 30;
    let wait = next_step.saturating_sub(unix_now());
    tokio::time::sleep(Duration::from_secs(wait + 1)).await;
    browser.fill("#code", &code_at(&secret, unix_now())).await;
    browser.click("form[action='/login/code'] button").await;
    let url = browser.wait_for_url(|u| u.contains("/c/")).await;
    assert!(url.ends_with("/c/hilltop-clinic/"), "{url}");
    assert!(browser.source().await.contains("Hilltop Clinic"));
    browser.quit().await;
}
