//! Real-browser tests: headless Chromium driven through chromedriver against the real
//! `ward serve`. Screenshots land in `target/browser-artifacts/`.

mod attachments;
mod day;
mod server;
mod two_factor;
mod webdriver;

use std::path::PathBuf;

use server::Server;
use webdriver::Driver;

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/browser-artifacts")
        .join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_owner_signs_up_confirms_from_the_mail_signs_out_and_back_in() {
    let server = Server::start();
    let browser = Driver::start().await;

    browser.goto(&format!("{}/signup", server.base)).await;
    browser.fill("#clinic_name", "Sunrise Family Clinic").await;
    browser.fill("#name", "Dr. Meera Iyer").await;
    browser.fill("#email", "meera@example.com").await;
    browser
        .fill("#password", "a long and private passphrase")
        .await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your email").await;

    let link = server.link_in_newest_mail("/verify-email");
    browser.goto(&link).await;
    browser.wait_for_text("meera@example.com").await;
    browser.click("button[type=submit]").await;
    let url = browser.wait_for_url(|u| u.contains("/c/")).await;
    assert!(url.ends_with("/c/sunrise-family-clinic/"), "{url}");
    let page = browser.source().await;
    assert!(
        page.contains("Sunrise Family Clinic") && page.contains("Dr. Meera Iyer"),
        "{page}"
    );
    browser
        .screenshot(&artifact("accounts-clinic-home.png"))
        .await;

    browser.click("nav.user button[type=submit]").await;
    browser.wait_for_url(|u| u.ends_with("/login")).await;
    browser
        .goto(&format!("{}/c/sunrise-family-clinic/", server.base))
        .await;
    browser.wait_for_url(|u| u.ends_with("/login")).await;

    browser.fill("#email", "meera@example.com").await;
    browser
        .fill("#password", "a long and private passphrase")
        .await;
    browser.click("button[type=submit]").await;
    let url = browser.wait_for_url(|u| u.contains("/c/")).await;
    assert!(url.ends_with("/c/sunrise-family-clinic/"), "{url}");
    browser.quit().await;
}
