//! Issue 4's completeness check: a scripted working session leaves exactly the expected
//! audit rows, with who, what, which record and from where.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use ward_clinic::audit::Filter;

use crate::support::staffed::Staffed as _;
use crate::support::{TestApp, id_of};

#[tokio::test(flavor = "multi_thread")]
async fn a_working_session_leaves_exactly_the_expected_audit_rows() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Acme Clinic", "acme").await;
    let before = t
        .audit(c.id, Filter::default())
        .await
        .first()
        .map_or(0, |r| r.seq);

    // The doctor registers, opens, edits a patient, records a visit and prints it.
    let patient = c
        .doctor
        .register(
            &c.base,
            &[
                ("full_name", "Asha Verma"),
                ("date_of_birth", "1990-04-01"),
                ("phone", "98450 22222"),
                ("address", "1 Main Road"),
            ],
        )
        .await;
    let patient_id = id_of(&patient).to_owned();
    assert_eq!(c.doctor.get(&patient).await.status, StatusCode::OK);
    let r = c
        .doctor
        .correct(
            &patient,
            &[
                ("full_name", "Asha Verma"),
                ("date_of_birth", "1990-04-01"),
                ("sex", "female"),
                ("phone", "98450 33333"),
                ("address", "1 Main Road"),
                ("reason", "new phone number"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let visit = c
        .doctor
        .record_visit(
            &patient,
            &[
                ("presenting_complaints", "Cough"),
                ("diagnosis_0", "Viral URTI"),
                ("item_0_drug", "Paracetamol"),
            ],
        )
        .await;
    let visit_id = id_of(&visit).to_owned();
    assert_eq!(
        c.doctor.get(&format!("{visit}/prescription")).await.status,
        StatusCode::OK
    );

    // The owner asks for an export.
    let export = format!("{}/export", c.base);
    let r = c.owner.submit_page(&export, &[]).await;
    assert!(
        r.status.is_success() || r.status.is_redirection(),
        "{}: {}",
        r.status,
        r.body
    );

    let rows: Vec<_> = t
        .audit(c.id, Filter::default())
        .await
        .into_iter()
        .filter(|r| r.seq > before)
        .collect();
    let mut got: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    for r in &rows {
        let key = (
            r.actor_name.clone(),
            r.action.clone(),
            r.entity_type.clone().unwrap_or_default(),
            r.entity_id.clone().unwrap_or_default(),
        );
        *got.entry(key).or_default() += 1;
        assert_eq!(r.actor_kind, "user");
        assert_eq!(
            r.ip.as_deref(),
            Some("203.0.113.7"),
            "every row says from where: {r:?}"
        );
        assert!(r.actor_role.is_some(), "and in which role: {r:?}");
    }
    let doctor = "Dr. Bina Shah".to_owned();
    let key = |who: &String, action: &str, entity: &str, id: &str| {
        (
            who.clone(),
            action.to_owned(),
            entity.to_owned(),
            id.to_owned(),
        )
    };
    let mut want: BTreeMap<_, usize> = BTreeMap::new();
    want.insert(key(&doctor, "create", "patient", &patient_id), 1);
    // The patient page, and the edit form (it shows the record too).
    want.insert(key(&doctor, "view", "patient", &patient_id), 2);
    want.insert(key(&doctor, "update", "patient", &patient_id), 1);
    want.insert(key(&doctor, "create", "visit", &visit_id), 1);
    want.insert(key(&doctor, "print", "visit", &visit_id), 1);
    let exports: Vec<_> = got
        .keys()
        .filter(|(_, action, _, _)| action == "export")
        .cloned()
        .collect();
    assert_eq!(exports.len(), 1, "one export request: {got:#?}");
    let export_row = rows.iter().find(|r| r.action == "export").unwrap();
    assert_eq!(
        export_row.actor_role.as_deref(),
        Some("owner"),
        "the owner asked for it"
    );
    got.remove(&exports[0]);
    assert_eq!(got, want, "exactly these rows");

    // The update names what changed and the versions, not the values.
    let update = rows.iter().find(|r| r.action == "update").unwrap();
    let diff = update.diff.as_deref().unwrap();
    assert_eq!(diff, r#"{"phone":["version 1","version 2"]}"#);

    // Sign-ins are in the platform's auth log.
    let events = t.app.control.recent_auth_events(50).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "login"
        && e.outcome == "ok"
        && e.email.as_deref() == Some("doctor@acme.test")));
}
