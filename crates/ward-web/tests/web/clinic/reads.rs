//! Every read of a patient is in the clinic's audit log: lists, search results, the day's
//! appointments; the owner's per-patient access report; sign-ins and sign-outs; and no
//! audit row holds a patient's name, phone or clinical text.

use axum::http::StatusCode;
use ward_clinic::audit::{Action, Filter};
use ward_core::{Clock as _, Role};

use crate::support::staffed::{Clinic, Staffed as _};
use crate::support::{TestApp, id_of};

/// The clinic's doctor's user id.
async fn doctor_id(t: &TestApp, c: &Clinic) -> String {
    c.member(t, Role::Doctor).await.user_id
}

/// The `view` rows of patient `id` with `detail`, by `who`.
async fn shown(t: &TestApp, c: &Clinic, id: &str, detail: &str, who: &str) -> usize {
    t.audit_of(c.id, ("patient", id), Some(Action::View))
        .await
        .iter()
        .filter(|r| r.detail.as_deref() == Some(detail) && r.actor_name == who)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_seen_in_a_list_is_in_accessed_by_and_in_the_access_report() {
    let t = TestApp::new().await;
    t.set_utc(2026, 3, 2, 4, 0);
    let mut c = t.clinic("Seen Clinic", "seen").await;
    let base = c.base.clone();
    let patient = c.patient("Lata Mangesh", "98450 11111").await;
    let other = c
        .receptionist
        .register(&base, &[("full_name", "Other Person")])
        .await;
    let id = id_of(&patient).to_owned();
    let other_id = id_of(&other).to_owned();

    // The register, a search, and the day's appointments each show the patient.
    let list = c.billing.get(&format!("{base}/patients")).await;
    assert!(list.body.contains("Lata Mangesh"));
    let found = c
        .receptionist
        .get(&format!("{base}/patients/search?q=lata"))
        .await;
    assert!(found.body.contains("Lata Mangesh") && !found.body.contains("Other Person"));
    let doc = doctor_id(&t, &c).await;
    let today = t.clock.now().format("%Y-%m-%d").to_string();
    let r = c
        .receptionist
        .submit_page(
            &format!("{base}/appointments"),
            &[
                ("patient_id", id.as_str()),
                ("doctor", &doc),
                ("date", &today),
                ("time", "16:00"),
                ("minutes", "15"),
                ("reason", "review"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let home = c.doctor.get(&format!("{base}/")).await;
    home.assert_contains("Lata Mangesh");

    assert_eq!(shown(&t, &c, &id, "patient list", "Meera Iyer").await, 1);
    assert_eq!(shown(&t, &c, &id, "search results", "Ravi Kumar").await, 1);
    assert_eq!(
        shown(&t, &c, &id, "today's appointments", "Dr. Bina Shah").await,
        1
    );
    // A search that did not show the other patient noted nothing about them.
    assert_eq!(
        shown(&t, &c, &other_id, "search results", "Ravi Kumar").await,
        0
    );
    assert_eq!(
        shown(&t, &c, &other_id, "patient list", "Meera Iyer").await,
        1
    );

    // The owner's "accessed by" box names the lists; the report has every line with
    // the address, and prints.
    t.app.audit.flush().await;
    let page = c.owner.get(&patient).await.body;
    let boxed = page.split("id=\"accessed-by-title\"").nth(1).unwrap();
    assert!(boxed.contains("view (patient list)"), "{boxed}");
    // (The apostrophe of "today's" is escaped in HTML.)
    assert!(boxed.contains("s appointments)"), "{boxed}");
    let report_path = format!("{patient}/access");
    assert!(boxed.contains(&format!("href=\"{report_path}\"")));
    let report = c.owner.get(&report_path).await;
    assert_eq!(report.status, StatusCode::OK);
    let table = report.body.split("id=\"access-report\"").nth(1).unwrap();
    for cell in [
        "Ravi Kumar",
        "view (search results)",
        "Meera Iyer",
        "view (patient list)",
        "create",
        "create appointment",
        "203.0.113.7",
        "Patient No. 1: Lata Mangesh",
    ] {
        assert!(
            table.contains(cell) || report.body.contains(cell),
            "the report shows {cell}: {}",
            report.body
        );
    }
    assert!(!table.contains("Other Person"));
    assert!(report.body.contains("Generated 2026-03-02"));
    // Only roles that see the audit log get it.
    for role in [Role::Doctor, Role::Receptionist, Role::Billing] {
        let r = c.browser(role).get(&report_path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?}");
        assert!(!r.body.contains("search results"));
    }
    // Making the report is itself in the log.
    let owner = owner_name(&t, &c).await;
    assert_eq!(shown(&t, &c, &id, "access report", &owner).await, 1);
}

async fn owner_name(t: &TestApp, c: &Clinic) -> String {
    c.member(t, Role::Owner).await.name
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_ins_and_sign_outs_are_in_the_clinics_log() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Door Clinic", "door").await;
    let home = format!("{}/", c.base);
    let r = c.doctor.submit(&home, "/logout", &[]).await;
    assert!(r.status.is_redirection(), "{}", r.status);
    let rows = t.audit(c.id, Filter::default()).await;
    let doctor: Vec<_> = rows
        .iter()
        .filter(|r| r.actor_name == "Dr. Bina Shah")
        .map(|r| r.action.as_str())
        .collect();
    // Newest first: the sign-out, then the sign-in.
    assert_eq!(doctor, ["logout", "login"], "{rows:?}");
    let login = rows
        .iter()
        .find(|r| r.actor_name == "Dr. Bina Shah" && r.action == "login")
        .unwrap();
    assert_eq!(login.actor_role.as_deref(), Some("doctor"));
    assert_eq!(login.ip.as_deref(), Some("203.0.113.7"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_audit_row_holds_a_patients_name_phone_or_clinical_text() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Quiet Clinic", "quiet").await;
    let base = c.base.clone();
    const NAME: &str = "Zenobia Quillfeather";
    const PHONE: &str = "98450 76543";
    const CLINICAL: &str = "Xanthelasma noted";
    let patient = c
        .receptionist
        .register(
            &base,
            &[
                ("full_name", NAME),
                ("phone", PHONE),
                ("address", "7 Quillfeather Lane"),
                ("date_of_birth", "1977-07-07"),
            ],
        )
        .await;
    // A correction of the details, a visit and its correction, a booking that registers
    // a new patient, a payment.
    let r = c
        .receptionist
        .correct(
            &patient,
            &[
                ("full_name", NAME),
                ("sex", "female"),
                ("phone", "98450 76544"),
                ("address", "7 Quillfeather Lane"),
                ("date_of_birth", "1977-07-07"),
                ("reason", "Zenobia gave a new number"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let visit = c
        .doctor
        .record_visit(
            &patient,
            &[
                ("presenting_complaints", CLINICAL),
                ("diagnosis_0", "Hyperlipidaemia"),
                ("item_0_drug", "Atorvastatin"),
                ("fee", "300"),
            ],
        )
        .await;
    let r = c
        .doctor
        .correct(
            &visit,
            &[
                ("action", "save"),
                ("presenting_complaints", CLINICAL),
                ("diagnosis_0", "Familial hypercholesterolaemia"),
                ("item_0_drug", "Atorvastatin"),
                ("item_0_dose", "20 mg"),
                ("fee", "300"),
                ("reason", "lipid panel result"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let doc = doctor_id(&t, &c).await;
    let r = c
        .receptionist
        .submit_page(
            &format!("{base}/appointments"),
            &[
                ("full_name", "Quentin Marblewood"),
                ("sex", "male"),
                ("phone", "+91 98450 55555"),
                ("doctor", &doc),
                ("date", "2026-12-24"),
                ("time", "10:00"),
                ("minutes", "15"),
                ("reason", "Marblewood knee pain"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Everything is read back too (views, prints, lists).
    for path in [
        patient.clone(),
        visit.clone(),
        format!("{visit}/history"),
        format!("{visit}/prescription"),
        format!("{patient}/history"),
        format!("{base}/patients?q=zenobia"),
    ] {
        assert_eq!(c.owner.get(&path).await.status, StatusCode::OK, "{path}");
    }

    let rows = t.audit(c.id, Filter::default()).await;
    assert!(rows.len() > 10, "the workflow was audited: {}", rows.len());
    // The canaries are in the records (so the check below can fail) …
    assert_eq!(
        t.count(
            c.id,
            "SELECT COUNT(*) FROM patients WHERE full_name IN ('Zenobia Quillfeather', 'Quentin Marblewood')"
        )
        .await,
        2
    );
    // … and in no audit row, in any column.
    for r in &rows {
        let text = format!("{r:?}");
        for canary in [
            "Zenobia",
            "Quillfeather",
            "Quentin",
            "Marblewood",
            "76543",
            "76544",
            "55555",
            "1977-07-07",
            "Xanthelasma",
            "hypercholesterolaemia",
            "Hyperlipidaemia",
            "Atorvastatin",
            "lipid panel",
            "knee pain",
        ] {
            assert!(!text.contains(canary), "{canary} in an audit row: {text}");
        }
    }
}
