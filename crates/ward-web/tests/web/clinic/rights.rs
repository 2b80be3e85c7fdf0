//! A patient's rights through the pages: their whole record (JSON and print), a legal
//! hold, and erasure that leaves no trace of them in the clinic's readable rows.

use axum::http::StatusCode;
use ward_clinic::audit::{Action, Filter};
use ward_clinic::export;
use ward_core::Role;

use crate::support::TestApp;
use crate::support::staffed::{Clinic, ROLES, Staffed as _};

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
    let id = patient.rsplit('/').next().unwrap().to_owned();
    let r = c
        .doctor
        .submit(
            &format!("{patient}/visits/new"),
            &format!("{patient}/visits"),
            &[
                ("action", "save"),
                ("presenting_complaints", &format!("{tag} first complaint")),
                ("diagnosis_0", &format!("{tag} diagnosis")),
                ("item_0_drug", &format!("{tag}mycin")),
                ("fee", "500"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let edit = format!("{}/edit", r.location());
    let r = c
        .doctor
        .submit(
            &edit,
            &edit,
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
    let doctor = t
        .app
        .control
        .clinic_members(c.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.role == Role::Doctor)
        .unwrap()
        .user_id;
    let r = c
        .receptionist
        .submit(
            &format!("{base}/appointments"),
            &format!("{base}/appointments"),
            &[
                ("patient_id", &id),
                ("doctor", &doctor),
                ("date", "2026-12-20"),
                (
                    "time",
                    if tag.starts_with('A') {
                        "10:00"
                    } else {
                        "11:00"
                    },
                ),
                ("minutes", "15"),
                ("reason", &format!("{tag} appointment reason")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = c
        .billing
        .submit(
            &format!("{base}/payments/new"),
            &format!("{base}/payments"),
            &[
                ("patient_id", &id),
                ("method", "cash"),
                ("item_description", &format!("{tag} dressing")),
                ("item_amount", "500"),
            ],
        )
        .await;
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
        .submit(
            &refund,
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
    assert_eq!(page.status, StatusCode::OK);
    for shown in [
        "Aardvark Person",
        "Aardvark corrected complaint",
        "Aardvarkmycin",
        "₹500.00",
    ] {
        assert!(page.body.contains(shown), "{shown}");
    }
    assert!(!page.body.contains("Bumblebee"));
    let id = a.rsplit('/').next().unwrap();
    let exports: Vec<_> = t
        .audit(
            c.id,
            Filter {
                entity: Some(("patient".into(), id.into())),
                action: Some(Action::Export),
                ..Filter::default()
            },
        )
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
    let id = a.rsplit('/').next().unwrap().to_owned();
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
        .submit(
            &erase,
            &erase,
            &[("ground", "patient_request"), ("confirm", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("legal hold"), "{}", r.body);
    assert!(all_rows(&t, &c).await.contains("Aardvark Person"));

    // Lifted: a wrong number or no ground is refused on the form.
    let r = c
        .owner
        .submit(&a, &format!("{a}/legal-hold"), &[("hold", "off")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = c
        .owner
        .submit(
            &erase,
            &erase,
            &[("ground", "patient_request"), ("confirm", "2")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("erase-error"));
    let r = c.owner.submit(&erase, &erase, &[("confirm", "1")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(all_rows(&t, &c).await.contains("Aardvark Person"));

    let r = c
        .owner
        .submit(
            &erase,
            &erase,
            &[("ground", "patient_request"), ("confirm", "1")],
        )
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
        .audit(
            c.id,
            Filter {
                entity: Some(("patient".into(), id)),
                action: Some(Action::Delete),
                ..Filter::default()
            },
        )
        .await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        deleted[0].detail.as_deref(),
        Some("erased: patient_request")
    );
    assert_eq!(deleted[0].actor_role.as_deref(), Some("owner"));
    let tenant = t.app.tenants.get(c.id).await.unwrap();
    let report = tenant
        .with(|conn| ward_clinic::audit::verify_chain(&conn, None))
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    // Once erased, erasing again is refused.
    let r = c
        .owner
        .submit(
            &erase,
            &erase,
            &[("ground", "patient_request"), ("confirm", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}
