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

/// The password of every account the browser tests make.
const PASSWORD: &str = "a long and private passphrase";

/// Signs up `name` (`email`) with the clinic `clinic` and confirms the address from the
/// mail, ending with the click that signs them in.
async fn sign_up_and_confirm(
    browser: &Driver,
    server: &Server,
    clinic: &str,
    name: &str,
    email: &str,
) {
    browser.goto(&format!("{}/signup", server.base)).await;
    browser.fill("#clinic_name", clinic).await;
    browser.fill("#name", name).await;
    browser.fill("#email", email).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your email").await;
    let link = server.link_in_newest_mail("/verify-email");
    browser.goto(&link).await;
    browser.wait_for_text(email).await;
    browser.click("button[type=submit]").await;
}

/// A served ward and a browser in which `name` (`email`) has signed up the clinic
/// `clinic` and confirmed the address; with the clinic's home page the browser lands on.
async fn signed_up_owner(clinic: &str, name: &str, email: &str) -> (Server, Driver, String) {
    let server = Server::start();
    let browser = Driver::start().await;
    sign_up_and_confirm(&browser, &server, clinic, name, email).await;
    let home = browser.wait_for_url(|u| u.contains("/c/")).await;
    (server, browser, home)
}

/// Sends the filled new-patient form; returns the new patient's page once it shows.
async fn register_patient(browser: &Driver) -> String {
    browser
        .click("form[action$=\"/patients/new\"] button[type=submit]")
        .await;
    browser
        .wait_for_url(|u| u.contains("/patients/") && !u.ends_with("/new"))
        .await
}

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/browser-artifacts")
        .join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_owner_signs_up_confirms_from_the_mail_signs_out_and_back_in() {
    let (server, browser, url) = signed_up_owner(
        "Sunrise Family Clinic",
        "Dr. Meera Iyer",
        "meera@example.com",
    )
    .await;
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
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    let url = browser.wait_for_url(|u| u.contains("/c/")).await;
    assert!(url.ends_with("/c/sunrise-family-clinic/"), "{url}");
    browser.quit().await;
}
