//! A patient's rights through the pages: their whole record (JSON and print), a legal
//! hold, and erasure that leaves no trace of them in the clinic's readable rows.

use axum::http::StatusCode;
use ward_clinic::audit::Action;
use ward_clinic::export;
use ward_core::Role;

use crate::support::staffed::{Clinic, ROLES, Staffed as _};
use crate::support::{Response, TestApp, id_of};

/// Books `id` with `doctor` at `(date, time)` for 15 minutes, through the form.
async fn book(
    b: &mut TestApp,
    base: &str,
    id: &str,
    doctor: &str,
    (date, time): (&str, &str),
    reason: &str,
) -> Response {
    let form = [
        ("patient_id", id),
        ("doctor", doctor),
        ("date", date),
        ("time", time),
        ("minutes", "15"),
        ("reason", reason),
    ];
    b.submit_page(&format!("{base}/appointments"), &form).await
}

/// Takes a cash payment of one item from `id`, through the form.
async fn pay_cash(b: &mut TestApp, base: &str, id: &str, item: &str, amount: &str) -> Response {
    let form = [
        ("patient_id", id),
        ("method", "cash"),
        ("item_description", item),
        ("item_amount", amount),
    ];
    b.submit(
        &format!("{base}/payments/new"),
        &format!("{base}/payments"),
        &form,
    )
    .await
}

/// The user id of the clinic's doctor.
async fn doctor_of(t: &TestApp, c: &Clinic) -> String {
    c.member(t, Role::Doctor).await.user_id
}

/// A patient with a visit (amended once), an appointment, a payment and a refund, every
/// text carrying `tag`; returns the patient page's path.
pub(crate) async fn patient_with_everything(t: &TestApp, c: &mut Clinic, tag: &str) -> String {
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(
            &base,
            &[
                ("full_name", &format!("{tag} Person")),
                (
                    "phone",
                    if tag.starts_with('A') {
                        "98450 12121"
                    } else {
                        "98450 34343"
                    },
                ),
                ("address", &format!("{tag} Street")),
                ("notes", &format!("{tag} allergy to penicillin")),
            ],
        )
        .await;
    let id = id_of(&patient).to_owned();
    let r = c
        .doctor
        .save_visit(
            &patient,
            &[
                ("presenting_complaints", &format!("{tag} first complaint")),
                ("diagnosis_0", &format!("{tag} diagnosis")),
                ("item_0_drug", &format!("{tag}mycin")),
                ("fee", "500"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let visit = r.location().to_owned();
    let r = c
        .doctor
        .correct(
            &visit,
            &[
                ("action", "save"),
                (
                    "presenting_complaints",
                    &format!("{tag} corrected complaint"),
                ),
                ("diagnosis_0", &format!("{tag} diagnosis")),
                ("item_0_drug", &format!("{tag}mycin")),
                ("fee", "500"),
                ("reason", &format!("{tag} amendment reason")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let doctor = doctor_of(t, c).await;
    let time = if tag.starts_with('A') {
        "10:00"
    } else {
        "11:00"
    };
    let reason = format!("{tag} appointment reason");
    let at = ("2026-12-20", time);
    let r = book(&mut c.receptionist, &base, &id, &doctor, at, &reason).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let item = format!("{tag} dressing");
    let r = pay_cash(&mut c.billing, &base, &id, &item, "500").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let payment = r
        .location()
        .split("/payments/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let refund = format!("{base}/payments/{payment}/refund");
    let r = c
        .billing
        .submit_page(
            &refund,
            &[
                ("amount", "100"),
                ("method", "cash"),
                ("reason", &format!("{tag} refund reason")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    patient
}

/// Every row of every table of the clinic, as text.
async fn all_rows(t: &TestApp, c: &Clinic) -> String {
    t.app.audit.flush().await;
    let tenant = t.app.tenants.get(c.id).await.unwrap();
    tenant
        .with(|conn| {
            let mut text = String::new();
            for table in export::tables(&conn).unwrap() {
                let cols = export::columns(&conn, &table).unwrap();
                let mut rows = conn
                    .query(&format!("SELECT * FROM \"{table}\""), ())
                    .unwrap();
                while let Some(row) = rows.next().unwrap() {
                    for i in 0..cols.len() {
                        text.push_str(&format!("{:?}|", row.get_value(i as i32).unwrap()));
                    }
                    text.push('\n');
                }
            }
            text
        })
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_patients_record_holds_everything_about_them_and_nothing_about_another() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Rights Clinic", "rights").await;
    let a = patient_with_everything(&t, &mut c, "Aardvark").await;
    let _b = patient_with_everything(&t, &mut c, "Bumblebee").await;

    let r = c.owner.get(&format!("{a}/record.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["format"], "ward-patient-record");
    let tables = doc["tables"].as_object().unwrap();
    for (table, _) in ward_clinic::rights::PATIENT_TABLES {
        let rows = tables[table]["rows"].as_array().unwrap();
        // (No merge happened here: docs/patients.md, tests in merges.rs; no file was
        // attached: tests in attachments.rs.)
        if table != "patient_merges" && table != "attachments" {
            assert!(!rows.is_empty(), "{table} has the patient's rows");
        }
    }
    for canary in [
        "Aardvark Person",
        "Aardvark Street",
        "Aardvark allergy",
        "Aardvark first complaint",
        "Aardvark corrected complaint",
        "Aardvark amendment reason",
        "Aardvark diagnosis",
        "Aardvarkmycin",
        "Aardvark appointment reason",
        "Aardvark dressing",
        "Aardvark refund reason",
    ] {
        assert!(r.body.contains(canary), "the record holds {canary}");
    }
    assert!(
        !r.body.contains("Bumblebee"),
        "nothing about another patient"
    );
    // The attachments' own keys stay in Ward.
    let cols = tables["attachments"]["columns"].as_array().unwrap();
    assert!(cols.iter().any(|c| c == "object_name"), "{cols:?}");
    assert!(!cols.iter().any(|c| c == "file_key"), "{cols:?}");
    // Every table that names a patient, a visit or a payment is in the record.
    let tenant = t.app.tenants.get(c.id).await.unwrap();
    let uncovered = tenant
        .with(|conn| {
            let mut missing = Vec::new();
            for table in export::tables(&conn).unwrap() {
                let cols = export::columns(&conn, &table).unwrap();
                let names = cols
                    .iter()
                    .any(|c| ["patient_id", "visit_id", "payment_id"].contains(&c.as_str()));
                let covered = ward_clinic::rights::PATIENT_TABLES
                    .iter()
                    .any(|(t, _)| *t == table)
                    || ward_clinic::rights::NOT_PATIENT_DATA.contains(&table.as_str());
                if (names || table == "patients") && !covered {
                    missing.push(table);
                }
            }
            missing
        })
        .await;
    assert!(uncovered.is_empty(), "tables left out: {uncovered:?}");

    // The printable record, and both are in the log as exports.
    let page = c.owner.get(&format!("{a}/record")).await;
    page.assert_shows(&[
        "Aardvark Person",
        "Aardvark corrected complaint",
        "Aardvarkmycin",
        "₹500.00",
    ]);
    assert!(!page.body.contains("Bumblebee"));
    let id = id_of(&a);
    let exports: Vec<_> = t
        .audit_of(c.id, ("patient", id), Some(Action::Export))
        .await
        .into_iter()
        .filter_map(|r| r.detail)
        .collect();
    assert_eq!(exports.len(), 2, "{exports:?}");
    // Only the owner answers a patient's requests.
    for role in ROLES.into_iter().filter(|r| *r != Role::Owner) {
        let b = c.browser(role);
        for path in [
            format!("{a}/record"),
            format!("{a}/record.json"),
            format!("{a}/erase"),
        ] {
            let r = b.get(&path).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?} {path}");
            assert!(!r.body.contains("Aardvark"), "{role:?} {path}");
        }
        let r = b
            .submit(&a, &format!("{a}/legal-hold"), &[("hold", "on")])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_is_refused_under_a_legal_hold_and_then_leaves_no_trace_in_readable_rows() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Erase Clinic", "erase").await;
    let a = patient_with_everything(&t, &mut c, "Aardvark").await;
    let _b = patient_with_everything(&t, &mut c, "Bumblebee").await;
    let id = id_of(&a).to_owned();
    let balance_before = c.owner.get(&a).await.body.contains("₹500.00");

    // A legal hold: erasure is refused with the reason, nothing changes.
    let r = c
        .owner
        .submit(&a, &format!("{a}/legal-hold"), &[("hold", "on")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = c.owner.get(&a).await.body;
    assert!(page.contains("Under a legal hold since"), "{page}");
    assert!(!page.contains("/erase\""), "no erase link while held");
    let erase = format!("{a}/erase");
    let r = c
        .owner
        .submit_page(&erase, &[("ground", "patient_request"), ("confirm", "1")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    r.assert_contains("legal hold");
    assert!(all_rows(&t, &c).await.contains("Aardvark Person"));

    // Lifted: a wrong number or no ground is refused on the form.
    let r = c
        .owner
        .submit(&a, &format!("{a}/legal-hold"), &[("hold", "off")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = c
        .owner
        .submit_page(&erase, &[("ground", "patient_request"), ("confirm", "2")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("erase-error"));
    let r = c.owner.submit_page(&erase, &[("confirm", "1")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(all_rows(&t, &c).await.contains("Aardvark Person"));

    let r = c
        .owner
        .submit_page(&erase, &[("ground", "patient_request"), ("confirm", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = c.owner.get(&a).await.body;
    assert!(page.contains("Erased patient No. 1"), "{page}");
    assert!(page.contains("This record was erased"));
    assert_eq!(
        balance_before,
        page.contains("₹500.00"),
        "amounts stay for the books"
    );

    // No readable row of the clinic holds anything of theirs; the other patient is whole.
    let rows = all_rows(&t, &c).await;
    for canary in ["Aardvark", "12121"] {
        assert!(
            !rows.contains(canary),
            "{canary} is still in the clinic's rows"
        );
    }
    assert!(rows.contains("Bumblebee Person") && rows.contains("Bumblebee corrected complaint"));
    // Nor in a new export of the patient's record.
    let record = c.owner.get(&format!("{a}/record.json")).await.body;
    assert!(!record.contains("Aardvark") && record.contains("Erased patient No. 1"));
    // The log says it happened, by whom and on what ground; the chain still verifies.
    let deleted = t
        .audit_of(c.id, ("patient", id), Some(Action::Delete))
        .await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        deleted[0].detail.as_deref(),
        Some("erased: patient_request")
    );
    assert_eq!(deleted[0].actor_role.as_deref(), Some("owner"));
    t.assert_audit_chain_holds(c.id).await;
    // Once erased, erasing again is refused.
    let r = c
        .owner
        .submit_page(&erase, &[("ground", "patient_request"), ("confirm", "1")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// How many rows the tables a restricted record must not grow hold, and the audit
/// rows that are not views.
async fn counts(t: &TestApp, clinic: ward_core::ClinicId) -> Vec<i64> {
    let mut n = Vec::new();
    for table in [
        "visits",
        "patient_versions",
        "appointments",
        "payments",
        "attachments",
    ] {
        n.push(
            t.count(clinic, &format!("SELECT count(*) FROM {table}"))
                .await,
        );
    }
    n.push(
        t.count(
            clinic,
            "SELECT count(*) FROM audit_log WHERE action <> 'view'",
        )
        .await,
    );
    n
}

/// Asserts `r` refused a change because the record is restricted.
fn refused_as_restricted(r: &crate::support::Response, what: &str) {
    assert!(
        r.status.is_client_error(),
        "{what}: {} {}",
        r.status,
        r.body
    );
    assert!(
        r.body.contains("Processing of this patient") && r.body.contains("is restricted"),
        "{what}: {}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_record_stays_readable_and_nothing_new_is_recorded_until_lifted() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Restrict Clinic", "restrict").await;
    let a = patient_with_everything(&t, &mut c, "Aardvark").await;
    let id = id_of(&a).to_owned();
    let base = c.base.clone();
    let restriction = format!("{a}/restriction");
    const REASON: &str = "Quokka contests the allergy note";

    // Only the owner restricts; a reason is required.
    let r = c
        .receptionist
        .submit(&a, &restriction, &[("restrict", "on"), ("reason", REASON)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c
        .owner
        .submit(&a, &restriction, &[("restrict", "on"), ("reason", "  ")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    r.assert_contains("Write why");
    assert!(!c.owner.get(&a).await.body.contains("id=\"restricted\""));
    let r = c
        .owner
        .submit(&a, &restriction, &[("restrict", "on"), ("reason", REASON)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // Every role still reads the record and is told; the reason is the owner's.
    let owner_page = c.owner.get(&a).await.body;
    assert!(owner_page.contains("id=\"restricted\""), "{owner_page}");
    assert!(owner_page.contains(REASON), "{owner_page}");
    assert!(owner_page.contains("Lift the restriction"));
    for role in ROLES.into_iter().filter(|r| *r != Role::Owner) {
        let page = c.browser(role).get(&a).await;
        assert_eq!(page.status, StatusCode::OK, "{role:?}");
        assert!(page.body.contains("Aardvark Person"), "{role:?}");
        assert!(page.body.contains("id=\"restricted\""), "{role:?}");
        assert!(!page.body.contains(REASON), "{role:?} sees the reason");
        assert!(!page.body.contains("/visits/new\""), "{role:?}");
        assert!(!page.body.contains(&format!("{a}/edit\"")), "{role:?}");
    }

    // Nothing new is recorded: not a visit, a correction, an appointment, a payment
    // or a file; nothing is written by any attempt.
    let before = counts(&t, c.id).await;
    let csrf = c.doctor.get(&a).await.csrf();
    let r = c
        .doctor
        .post_with_csrf(
            &format!("{a}/visits"),
            &csrf,
            &[
                ("action", "save"),
                ("presenting_complaints", "Aardvark new complaint"),
            ],
        )
        .await;
    refused_as_restricted(&r, "a new visit");
    let visit = t
        .count(
            c.id,
            &format!("SELECT min(id) FROM visits WHERE patient_id = {id}"),
        )
        .await;
    let edit_visit = format!("{base}/visits/{visit}/edit");
    let r = c
        .doctor
        .submit_page(
            &edit_visit,
            &[
                ("action", "save"),
                ("presenting_complaints", "Aardvark sneaky change"),
                ("reason", "late correction"),
            ],
        )
        .await;
    refused_as_restricted(&r, "a visit's correction");
    let r = c
        .receptionist
        .correct(
            &a,
            &[
                ("full_name", "Aardvark Renamed"),
                ("sex", "female"),
                ("phone", "98450 12121"),
                ("reason", "typo"),
            ],
        )
        .await;
    refused_as_restricted(&r, "a correction of the details");
    let doctor = doctor_of(&t, &c).await;
    let at = ("2026-12-21", "12:00");
    let r = book(&mut c.receptionist, &base, &id, &doctor, at, "check-up").await;
    refused_as_restricted(&r, "an appointment");
    let r = pay_cash(&mut c.billing, &base, &id, "dressing", "200").await;
    refused_as_restricted(&r, "a payment");
    let csrf = c.doctor.get(&a).await.csrf();
    let r = c
        .doctor
        .post_multipart(
            &format!("{a}/attachments?_csrf={csrf}"),
            &[("title", "Aardvark scan"), ("kind", "lab_report")],
            (
                "scan.pdf",
                "application/pdf",
                b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
            ),
        )
        .await;
    refused_as_restricted(&r, "a file");
    let appointment = t
        .count(
            c.id,
            &format!("SELECT min(id) FROM appointments WHERE patient_id = {id}"),
        )
        .await;
    let status = format!("{base}/appointments/{appointment}/status");
    let r = c
        .receptionist
        .submit(&a, &status, &[("status", "arrived")])
        .await;
    refused_as_restricted(&r, "an arrival");
    let other = c.patient("Aardvark Twin", "98450 77777").await;
    let other = id_of(&other).to_owned();
    let merge = format!("{a}/merge");
    let r = c
        .receptionist
        .submit_page(&merge, &[("other", &other)])
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);
    assert!(r.body.contains("is restricted"), "a merge: {}", r.body);
    // The twin's registration (its first version and its audit row) is the one write
    // of this stretch.
    let mut expected = before.clone();
    expected[1] += 1;
    expected[5] += 1;
    assert_eq!(counts(&t, c.id).await, expected, "nothing else was written");
    // What records nothing new stays possible: the appointment is cancelled.
    let r = c
        .receptionist
        .submit(&a, &status, &[("status", "cancelled")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        t.count(
            c.id,
            &format!("SELECT count(*) FROM appointments WHERE id = {appointment} AND status = 'cancelled'"),
        )
        .await,
        1
    );

    // Reading and the patient's own record still work; the record says it is
    // restricted and why, the log says that it happened but not why.
    let record = c.owner.get(&format!("{a}/record.json")).await;
    assert_eq!(record.status, StatusCode::OK);
    record.assert_contains(REASON);
    let updates = t
        .audit_of(c.id, ("patient", &id), Some(Action::Update))
        .await;
    assert!(
        updates.iter().any(|u| u
            .diff
            .as_deref()
            .is_some_and(|d| d.contains("processing_restricted"))),
        "{updates:?}"
    );
    let log = t
        .count(
            c.id,
            "SELECT count(*) FROM audit_log WHERE coalesce(detail, '') || coalesce(diff, '') || coalesce(reason, '') LIKE '%Quokka%'",
        )
        .await;
    assert_eq!(log, 0, "the reason is not in the log");

    // Lifted: a visit can be recorded again.
    let r = c
        .owner
        .submit(&a, &restriction, &[("restrict", "off")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!c.doctor.get(&a).await.body.contains("id=\"restricted\""));
    let r = c
        .doctor
        .save_visit(&a, &[("presenting_complaints", "Aardvark after")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        t.count(
            c.id,
            &format!("SELECT count(*) FROM visits WHERE patient_id = {id}")
        )
        .await,
        2
    );

    // Restricted again, then erased: the reason goes with the rest.
    let r = c
        .owner
        .submit(&a, &restriction, &[("restrict", "on"), ("reason", REASON)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let erase = format!("{a}/erase");
    let r = c
        .owner
        .submit_page(&erase, &[("ground", "patient_request"), ("confirm", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!all_rows(&t, &c).await.contains("Quokka"));
}
