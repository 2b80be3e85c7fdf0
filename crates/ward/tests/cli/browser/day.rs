//! A day at a clinic in a real browser: the owner sets up the staff, the receptionist
//! registers and books a patient, the doctor sees them and prints the prescription,
//! billing takes the payment and prints the receipt, and the owner reads the audit log.

use super::server::Server;
use super::webdriver::Driver;
use super::{PASSWORD, artifact, register_patient, signed_up_owner};

const SLUG: &str = "lakeside-clinic";

/// Opens the clinic's page `page` (the path after `/c/{slug}/`).
async fn open(browser: &Driver, server: &Server, page: &str) {
    browser
        .goto(&format!("{}/c/{SLUG}/{page}", server.base))
        .await;
}

/// Signs out whoever is signed in, then signs in as `email`.
async fn sign_in_as(browser: &Driver, server: &Server, email: &str) {
    browser.delete_cookies().await;
    browser.goto(&format!("{}/login", server.base)).await;
    browser.fill("#email", email).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    let url = browser.wait_for_url(|u| u.contains("/c/")).await;
    assert!(url.ends_with(&format!("/c/{SLUG}/")), "{url}");
}

/// The owner invites `email` as `role`; the invited person accepts in a fresh session.
async fn invite(browser: &Driver, server: &Server, name: &str, email: &str, role: &str) {
    sign_in_as(browser, server, "owner@lakeside.example").await;
    open(browser, server, "staff").await;
    browser.fill("#invite-email", email).await;
    browser.select("#invite-role", role).await;
    browser
        .click("form[action$=\"/staff/invite\"] button[type=submit]")
        .await;
    browser.wait_for_url(|u| u.contains("done=invited")).await;
    browser.wait_for_text(email).await;

    let link = server.link_in_newest_mail("/invite");
    browser.delete_cookies().await;
    browser.goto(&link).await;
    browser.wait_for_text("Create account and join").await;
    browser.fill("#name", name).await;
    browser.fill("#password", PASSWORD).await;
    browser
        .click("form[action=\"/invite\"] button[type=submit]")
        .await;
    let url = browser.wait_for_url(|u| u.contains("/c/")).await;
    assert!(url.ends_with(&format!("/c/{SLUG}/")), "{url}");
    browser.wait_for_text(name).await;
}

/// The path's last segment after `marker` in `url`, e.g. the id in `/patients/{id}`.
fn id_after(url: &str, marker: &str) -> String {
    let rest = url
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker} in {url}"));
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Whether some table row of `page` holds all of `cells`.
fn has_row(page: &str, cells: &[&str]) -> bool {
    page.split("<tr")
        .any(|row| cells.iter().all(|c| row.contains(c)))
}

/// The doctor corrects visit `visit`: the reason is asked for, the page says it was
/// amended, and the history shows what was first written and what changed.
async fn correct_the_visit(browser: &Driver, server: &Server, visit: &str) {
    open(browser, server, &format!("visits/{visit}")).await;
    browser.wait_for_text("Correct the visit").await;
    browser.click("a[href$=\"/edit\"]").await;
    browser.wait_for_url(|u| u.ends_with("/edit")).await;
    browser.wait_for_text("Reason for the correction").await;
    browser.fill("#diagnosis_0", "Dengue fever").await;
    browser.fill("#item_1_dose", "5 mg").await;
    browser
        .click("button[name=action][value=save]:not(.visually-hidden)")
        .await;
    // No reason: the form comes back with the message by the field, input kept.
    let page = browser.wait_for_text("reason-error").await;
    assert!(
        page.contains("Say why") && page.contains("Dengue fever"),
        "{page}"
    );
    browser
        .fill("#reason", "NS1 antigen test came back positive")
        .await;
    browser
        .click("button[name=action][value=save]:not(.visually-hidden)")
        .await;
    browser
        .wait_for_url(|u| u.ends_with(&format!("/visits/{visit}")))
        .await;
    let page = browser.wait_for_text("Version 2 of 2").await;
    assert!(
        page.contains("Dengue fever") && page.contains("NS1 antigen test came back positive"),
        "{page}"
    );
    browser.click("#amended a[href$=\"/history\"]").await;
    browser.wait_for_url(|u| u.ends_with("/history")).await;
    let page = browser.wait_for_text("History of the visit").await;
    ward_testkit::assert_contains_all(
        &page,
        &[
            "<del>Viral fever</del><ins>Dengue fever</ins>",
            "Cetirizine · </span><del>10</del><ins>5</ins><span> mg · At night",
            "NS1 antigen test came back positive",
            "by Dr. Neha Menon",
        ],
    );
    let original = browser.text("#original").await;
    assert!(original.contains("Viral fever"), "{original}");
    browser.screenshot(&artifact("visit-history.png")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_at_the_clinic_from_registration_to_receipt_shows_in_the_audit_log() {
    // The owner signs up and confirms the address from the mail.
    let (server, browser, url) =
        signed_up_owner("Lakeside Clinic", "Dr. Asha Rao", "owner@lakeside.example").await;
    assert!(url.ends_with(&format!("/c/{SLUG}/")), "{url}");

    // Three staff join through invitations.
    invite(
        &browser,
        &server,
        "Ravi Kumar",
        "ravi@lakeside.example",
        "receptionist",
    )
    .await;
    invite(
        &browser,
        &server,
        "Dr. Neha Menon",
        "neha@lakeside.example",
        "doctor",
    )
    .await;
    invite(
        &browser,
        &server,
        "Sunil Das",
        "sunil@lakeside.example",
        "billing",
    )
    .await;

    // The receptionist registers a patient and books them with the doctor.
    sign_in_as(&browser, &server, "ravi@lakeside.example").await;
    open(&browser, &server, "patients/new").await;
    browser.fill("#full_name", "Kavya Pillai").await;
    browser.set_value("#date_of_birth", "1990-04-12").await;
    browser.click("input[name=sex][value=female]").await;
    browser.fill("#phone", "98450 12345").await;
    browser.fill("#address", "12 Lake Road, Kochi").await;
    let url = register_patient(&browser).await;
    let patient = id_after(&url, "/patients/");
    browser.wait_for_text("Kavya Pillai").await;

    open(
        &browser,
        &server,
        &format!("appointments?patient={patient}#book"),
    )
    .await;
    let page = browser.wait_for_text("Dr. Neha Menon").await;
    assert!(page.contains("Kavya Pillai"), "{page}");
    let doctor_option = page
        .split("<select id=\"doctor\"")
        .nth(1)
        .and_then(|s| s.split("</select>").next())
        .and_then(|s| s.split("<option value=\"").nth(2))
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no doctor to choose:\n{page}"))
        .to_owned();
    browser.select("#doctor", &doctor_option).await;
    browser.set_value("#time", "23:30").await;
    browser.fill("#reason", "Fever for three days").await;
    browser
        .click("form[method=post][action$=\"/appointments\"] button[type=submit]")
        .await;
    browser.wait_for_url(|u| u.contains("booked=1")).await;
    let page = browser.wait_for_text("Kavya Pillai").await;
    assert!(page.contains("Dr. Neha Menon"), "{page}");

    // The doctor sees the patient, writes the visit and prints the prescription.
    sign_in_as(&browser, &server, "neha@lakeside.example").await;
    open(&browser, &server, &format!("patients/{patient}")).await;
    browser.wait_for_text("Kavya Pillai").await;
    browser.click("a[href$=\"/visits/new\"]").await;
    browser.wait_for_url(|u| u.ends_with("/visits/new")).await;
    browser
        .fill(
            "#presenting_complaints",
            "Fever and body ache for three days",
        )
        .await;
    browser.fill("#diagnosis_0", "Viral fever").await;
    // The form offers blank medicine rows; ask for another when there is no second one.
    if !browser.source().await.contains("id=\"item_1_drug\"") {
        browser.click("button[value=add_item]").await;
        browser.wait_for_text("id=\"item_1_drug\"").await;
    }
    browser.fill("#item_0_drug", "Paracetamol").await;
    browser.fill("#item_0_dose", "500 mg").await;
    browser.fill("#item_0_frequency", "Three times a day").await;
    browser.fill("#item_0_duration", "3 days").await;
    browser.fill("#item_1_drug", "Cetirizine").await;
    browser.fill("#item_1_dose", "10 mg").await;
    browser.fill("#item_1_frequency", "At night").await;
    browser.fill("#item_1_duration", "5 days").await;
    browser
        .click("button[name=action][value=save]:not(.visually-hidden)")
        .await;
    let url = browser
        .wait_for_url(|u| u.contains(&format!("/c/{SLUG}/visits/")))
        .await;
    let visit = id_after(&url, "/visits/");
    open(&browser, &server, &format!("visits/{visit}/prescription")).await;
    let page = browser.wait_for_text("Paracetamol").await;
    for text in [
        "Kavya Pillai",
        "Paracetamol",
        "Cetirizine",
        "Dr. Neha Menon",
    ] {
        assert!(
            page.contains(text),
            "{text} missing from the prescription:\n{page}"
        );
    }
    browser.screenshot(&artifact("prescription.png")).await;

    // The doctor corrects the visit (boxed: the test's future would outgrow the stack).
    Box::pin(correct_the_visit(&browser, &server, &visit)).await;

    // Billing takes the payment and prints the receipt.
    sign_in_as(&browser, &server, "sunil@lakeside.example").await;
    open(
        &browser,
        &server,
        &format!("payments/new?patient={patient}"),
    )
    .await;
    browser.wait_for_text("Kavya Pillai").await;
    browser.fill("#item-d-1", "Consultation").await;
    browser.fill("#item-a-1", "450").await;
    browser.select("#method", "cash").await;
    browser
        .click("form[method=post][action$=\"/payments\"] button[type=submit]")
        .await;
    browser.wait_for_url(|u| u.ends_with("/receipt")).await;
    browser.wait_for_text("receipt-number").await;
    let number = browser.text("#receipt-number").await;
    let total = browser.text("#receipt-total").await;
    assert_eq!(number, "1", "the clinic's first receipt");
    assert!(total.contains("450"), "{total}");
    let page = browser.source().await;
    assert!(
        page.contains("Kavya Pillai") && page.contains("Consultation"),
        "{page}"
    );
    browser.screenshot(&artifact("receipt.png")).await;

    // The owner reads who did what.
    sign_in_as(&browser, &server, "owner@lakeside.example").await;
    open(&browser, &server, "audit").await;
    let page = browser.wait_for_text("Sunil Das").await;
    for cells in [
        ["Ravi Kumar", "<td>create</td>"],
        ["Dr. Neha Menon", "<td>create</td>"],
        ["Dr. Neha Menon", "<td>view</td>"],
        ["Dr. Neha Menon", "<td>print</td>"],
        ["Sunil Das", "<td>create</td>"],
        ["Sunil Das", "<td>print</td>"],
    ] {
        assert!(has_row(&page, &cells), "no audit row {cells:?}:\n{page}");
    }
    browser.quit().await;
}
