//! The clinic's export (`/c/{slug}/export`): requested by the owner, prepared by the
//! worker, mailed as a one-time link, downloaded once as JSON or a zip of CSV files.

use axum::http::StatusCode;

use crate::support::{self, TestApp};

const CANARY: &str = "Zebediah Quillfeather";

/// A browser signed in as the owner of a new clinic `clinic`; with the clinic's path.
async fn owner_of(clinic: &str) -> (TestApp, String) {
    let mut t = TestApp::new().await;
    let home = t.signup_verified(clinic, "owner@example.com").await;
    (t, home)
}

/// The download link in the newest mail, and its token.
async fn export_link(t: &TestApp) -> (String, String) {
    let link = t.link_in_last_mail("/export/download").await;
    let token = link.split("token=").nth(1).unwrap().to_owned();
    (link, token)
}

/// Posts the download form with `token`, with the `_csrf` of the page at `from`.
async fn download(t: &mut TestApp, from: &str, token: &str) -> support::Response {
    t.submit(from, "/export/download", &[("token", token)])
        .await
}

async fn add_canary_patient(t: &TestApp, home: &str) {
    let (_, clinic) = t.clinic_at(home).await;
    let tenant = t.app.tenants.get(clinic.id).await.unwrap();
    tenant
        .with(|conn| {
            conn.execute(
                "INSERT INTO patients (number, full_name, sex, created_at, updated_at) VALUES (1, ?1, 'female', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                [CANARY],
            )
            .unwrap();
        })
        .await;
}

fn exports(t: &TestApp) -> Vec<std::path::PathBuf> {
    let dir = t
        .app
        .tenants
        .clinics_dir()
        .parent()
        .unwrap()
        .join("exports");
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

async fn audit_details(t: &TestApp, home: &str) -> Vec<String> {
    let (_, clinic) = t.clinic_at(home).await;
    let tenant = t.app.tenants.get(clinic.id).await.unwrap();
    tenant
        .with(|conn| {
            ward_testkit::texts(
                &conn,
                "SELECT detail FROM audit_log WHERE action = 'export' ORDER BY seq",
            )
        })
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_gets_the_export_by_mail_once_and_no_one_else_can() {
    let (mut t, home) = owner_of("Canary Clinic").await;
    add_canary_patient(&t, &home).await;
    let export = format!("{home}export");
    let page = t.get(&export).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        !page.body.contains("name=\"password\""),
        "a fresh sign-in needs no password"
    );
    let r = t.submit_page(&export, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.assert_contains("Your export has been requested");
    assert!(
        exports(&t).is_empty(),
        "nothing is prepared before the worker runs"
    );

    assert_eq!(ward_app::exports::run_jobs(&t.app).await, 1);
    let files = exports(&t);
    assert_eq!(files.len(), 1);
    let sealed = std::fs::read(&files[0]).unwrap();
    assert!(
        !sealed.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "sealed at rest"
    );

    let mail = t.last_mail("Your Ward export is ready").await;
    assert!(
        !mail.contains(CANARY) && !mail.contains("Canary Clinic"),
        "{mail}"
    );
    let (link, token) = export_link(&t).await;

    // Another clinic's owner, and an anonymous browser, get nothing.
    let mut other = t.fresh_browser();
    other
        .signup_verified("Other Clinic", "other@example.com")
        .await;
    assert_eq!(other.get(&link).await.status, StatusCode::NOT_FOUND);
    let r = download(&mut other, "/account", &token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let mut anonymous = t.fresh_browser();
    assert_ne!(anonymous.get(&link).await.status, StatusCode::OK);
    assert_eq!(exports(&t).len(), 1, "refusals leave the file");

    let page = t.get(&link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let r = download(&mut t, &link, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let disposition = r.headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert_eq!(r.headers["cache-control"], "no-store");
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["format"], "ward-export");
    assert!(r.body.contains(CANARY));
    assert!(!r.body.contains("password_hash"));
    assert!(
        exports(&t).is_empty(),
        "the file is deleted after the download"
    );

    // Single use.
    let r = download(&mut t, &home, &token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let details = audit_details(&t, &home).await;
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(details[0].contains("requested") && details[1].contains("downloaded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_export_file_is_refused_whole_before_anything_is_sent_or_recorded() {
    let (mut t, home) = owner_of("Canary Clinic").await;
    add_canary_patient(&t, &home).await;
    let export = format!("{home}export");
    let r = t.submit_page(&export, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(ward_app::exports::run_jobs(&t.app).await, 1);
    let files = exports(&t);
    assert_eq!(files.len(), 1);
    // One byte near the end changed: only a check of the whole file can see it, after
    // every earlier chunk decrypted fine.
    let mut sealed = std::fs::read(&files[0]).unwrap();
    let at = sealed.len() - 3;
    sealed[at] ^= 0x40;
    std::fs::write(&files[0], sealed).unwrap();
    let (link, token) = export_link(&t).await;
    let r = download(&mut t, &link, &token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    r.assert_contains("This link is not valid");
    assert!(!r.body.contains(CANARY), "no part of the file was sent");
    assert!(exports(&t).is_empty(), "the damaged file is deleted");
    let details = audit_details(&t, &home).await;
    assert!(
        !details.iter().any(|d| d.contains("downloaded")),
        "{details:?}"
    );
}

/// The CSV files of a downloaded zip, by name, each as rows of cells (header first),
/// after checking that each starts with the UTF-8 byte-order mark.
fn csv_files(zip: &[u8]) -> std::collections::BTreeMap<String, Vec<Vec<String>>> {
    use std::io::Read as _;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        let name = f.name().unwrap().into_owned();
        let body = data
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or_else(|| panic!("{name} has no byte-order mark"));
        let rows = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(body)
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        out.insert(name, rows);
    }
    out
}

/// The cells of `file`'s rows as (column name → value) maps.
fn records(rows: &[Vec<String>]) -> Vec<std::collections::BTreeMap<String, String>> {
    rows[1..]
        .iter()
        .map(|r| rows[0].iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_can_take_the_export_as_a_zip_of_csv_files_with_refunds() {
    let (mut t, home) = owner_of("Canary Clinic").await;
    add_canary_patient(&t, &home).await;
    let r = t
        .submit(
            &format!("{home}payments/new"),
            &format!("{home}payments"),
            &[
                ("patient_id", "1"),
                ("method", "card"),
                ("item_description", "Consultation"),
                ("item_amount", "1,250.50"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let refund = format!("{home}payments/1/refund");
    let r = t
        .submit_page(
            &refund,
            &[
                ("amount", "250.25"),
                ("method", "cash"),
                ("reason", "Charged twice for the dressing"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    let export = format!("{home}export");
    let page = t.get(&export).await;
    page.assert_contains("name=\"format\" value=\"csv\"");
    let r = t.submit_page(&export, &[("format", "xml")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_contains("Choose JSON, JSON with files, or CSV.");
    assert_eq!(
        ward_app::exports::run_jobs(&t.app).await,
        0,
        "nothing queued"
    );
    let r = t.submit_page(&export, &[("format", "csv")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.assert_contains("a zip of spreadsheet (CSV) files");
    assert_eq!(ward_app::exports::run_jobs(&t.app).await, 1);
    let sealed = std::fs::read(&exports(&t)[0]).unwrap();
    assert!(
        !sealed.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "sealed at rest"
    );
    let (link, token) = export_link(&t).await;
    let r = download(&mut t, &link, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/zip");
    let disposition = r.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment") && disposition.ends_with(".zip\""),
        "{disposition}"
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.bytes.starts_with(b"PK"), "a zip");

    let files = csv_files(&r.bytes);
    for name in [
        "export.csv",
        "staff.csv",
        "patients.csv",
        "visits.csv",
        "diagnoses.csv",
        "prescription_items.csv",
        "appointments.csv",
        "payments.csv",
        "payment_items.csv",
        "payment_corrections.csv",
        "settings.csv",
        "audit_log.csv",
    ] {
        assert!(files.contains_key(name), "{name} in {:?}", files.keys());
    }
    let patients = records(&files["patients.csv"]);
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["full_name"], CANARY);
    assert_eq!(patients[0]["number"], "1");
    let payments = &files["payments.csv"];
    assert_eq!(payments[0], ward_testkit::PAYMENTS_CSV_HEADER);
    let payments = records(payments);
    assert_eq!(payments[0]["amount_minor"], "125050");
    assert_eq!(payments[0]["amount"], "1250.50");
    assert_eq!(payments[0]["method"], "card");
    let refunds = &files["payment_corrections.csv"];
    assert_eq!(refunds[0], ward_testkit::PAYMENT_CORRECTIONS_CSV_HEADER);
    let refunds = records(refunds);
    assert_eq!(refunds.len(), 1);
    let row = &refunds[0];
    assert_eq!(
        (
            row["payment_id"].as_str(),
            row["kind"].as_str(),
            row["receipt_number"].as_str(),
            row["amount_minor"].as_str(),
            row["amount"].as_str(),
            row["currency"].as_str(),
            row["method"].as_str(),
            row["reason"].as_str(),
        ),
        (
            "1",
            "refund",
            "2",
            "25025",
            "250.25",
            "INR",
            "cash",
            "Charged twice for the dressing"
        )
    );
    let staff = records(&files["staff.csv"]);
    assert_eq!(staff[0]["email"], "owner@example.com");
    assert_eq!(staff[0]["role"], "owner");
    let details = audit_details(&t, &home).await;
    assert!(
        details.iter().any(|d| d.contains("requested (csv)"))
            && details.iter().any(|d| d.contains("downloaded (csv)")),
        "{details:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_sign_in_needs_the_password_and_links_expire() {
    let (mut t, home) = owner_of("Canary Clinic").await;
    let export = format!("{home}export");
    t.clock.advance(chrono::TimeDelta::minutes(16));
    let page = t.get(&export).await;
    page.assert_contains("name=\"password\"");
    let r = t
        .submit_page(&export, &[("password", "wrong password")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        ward_app::exports::run_jobs(&t.app).await,
        0,
        "nothing queued"
    );
    let r = t
        .submit_page(&export, &[("password", support::PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(ward_app::exports::run_jobs(&t.app).await, 1);
    let link = t.link_in_last_mail("/export/download").await;
    assert_eq!(exports(&t).len(), 1);

    // 72 hours later the worker deletes the file and the link is dead.
    t.clock.advance(chrono::TimeDelta::hours(73));
    ward_app::exports::run_jobs(&t.app).await;
    assert!(exports(&t).is_empty(), "expired exports are deleted");
    assert_ne!(t.get(&link).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_clinics_owner_can_still_export() {
    let (mut t, home) = owner_of("Canary Clinic").await;
    let close = format!("{home}settings/close");
    let r = t
        .submit_page(&close, &[("clinic_name", "Canary Clinic")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let closed = t.get(&home).await;
    closed.assert_contains(&format!("{home}export"));
    let export = format!("{home}export");
    assert_eq!(t.get(&export).await.status, StatusCode::OK);
    let r = t.submit_page(&export, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(ward_app::exports::run_jobs(&t.app).await, 1);
    assert!(
        t.mails()
            .await
            .last()
            .unwrap()
            .contains("Your Ward export is ready")
    );
}

/// The workers `App::start` runs prepare a queued export and mail it without any test
/// calling the job runner, and `Workers::shutdown` stops them and closes the clinics.
#[tokio::test(flavor = "multi_thread")]
async fn the_apps_workers_prepare_a_queued_export_and_stop_through_one_path() {
    let (mut t, home) = owner_of("Worker Clinic").await;
    let export = format!("{home}export");
    let r = t.submit_page(&export, &[]).await;
    r.assert_contains("Your export has been requested");
    assert!(exports(&t).is_empty());

    let workers = t.app.app.start();
    for name in [
        "anchoring",
        "housekeeping",
        "exports",
        "session touches",
        "sweep",
    ] {
        assert!(workers.names().contains(&name), "{:?}", workers.names());
    }
    let mut ready = false;
    for _ in 0..100 {
        let sent = t.mailbox.sent();
        if !exports(&t).is_empty()
            && sent
                .iter()
                .any(|m| m.subject == "Your Ward export is ready")
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "the export worker prepared the file and the mail worker sent the link"
    );

    let (_, clinic) = t.clinic_at(&home).await;
    assert!(t.app.tenants.get(clinic.id).await.is_ok());
    assert_eq!(workers.shutdown(std::time::Duration::from_secs(5)).await, 0);
    assert!(
        t.app.tenants.get(clinic.id).await.is_err(),
        "after shutdown no clinic opens"
    );
}
