//! Correcting a saved visit, its fee, and the balance the fee gives the patient page.

use axum::http::StatusCode;
use ward_clinic::audit::{Action, Diff};
use ward_core::Role;
use ward_testkit::assert_contains_all;

use crate::support::staffed::{Clinic, ROLES, Staffed as _};
use crate::support::{TestApp, id_of, with_action};

/// A patient and a visit recorded by the doctor; returns (patient path, visit path).
async fn patient_with_visit(c: &mut Clinic, name: &str, fee: &str) -> (String, String) {
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(
            &base,
            &[("full_name", name), ("date_of_birth", "1990-05-04")],
        )
        .await;
    let visit = c
        .doctor
        .record_visit(
            &patient,
            &[
                ("presenting_complaints", "Fever for two days"),
                ("examination_notes", "Throat red"),
                ("diagnosis_0", "Viral fever"),
                ("item_0_drug", "Paracetamol"),
                ("item_0_dose", "500 mg"),
                ("item_1_drug", "Cetirizine"),
                ("advice", "Fluids"),
                ("fee", fee),
            ],
        )
        .await;
    (patient, visit)
}

async fn update_rows(t: &TestApp, c: &Clinic, visit: &str) -> Vec<ward_clinic::audit::AuditRow> {
    let id = id_of(visit).to_owned();
    t.audit_of(c.id, ("visit", id), Some(Action::Update)).await
}

/// The billing clerk records a cash payment of `amount` for a consultation.
async fn pay_cash(c: &mut Clinic, patient_id: &str, amount: &str) -> crate::support::Response {
    let base = c.base.clone();
    c.billing
        .submit(
            &format!("{base}/payments/new"),
            &format!("{base}/payments"),
            &[
                ("patient_id", patient_id),
                ("method", "cash"),
                ("item_description", "Consultation"),
                ("item_amount", amount),
            ],
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_doctor_corrects_a_visit_and_the_page_prescription_and_log_follow() {
    let t = TestApp::new().await;
    t.set_utc(2026, 3, 1, 9, 0);
    let mut c = t.clinic("Mend Clinic", "mend").await;
    let (_, visit) = patient_with_visit(&mut c, "Asha Rao", "").await;
    let edit = format!("{visit}/edit");

    let page = c.doctor.get(&visit).await;
    assert!(
        page.body.contains(&format!("href=\"{edit}\"")) && page.body.contains("Correct the visit"),
        "the visit page links to its edit form"
    );
    assert!(page.body.contains("None recorded"), "no fee yet");

    // The form is the visit form, filled in.
    let form = c.doctor.get(&edit).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Correct the visit"));
    assert!(
        form.body.contains("name=\"reason\""),
        "a correction asks why"
    );
    assert!(form.body.contains(&format!("action=\"{edit}\"")));
    form.assert_shows(&[
        ">Fever for two days</textarea>",
        ">Throat red</textarea>",
        ">Fluids</textarea>",
        "value=\"Viral fever\"",
        "value=\"Paracetamol\"",
        "value=\"500 mg\"",
        "value=\"Cetirizine\"",
    ]);
    assert!(
        form.body.contains("name=\"item_2_drug\""),
        "a blank row to add to"
    );
    assert!(form.body.contains("<label for=\"fee\">Fee"));

    // Rows are added and removed without JavaScript, input kept, nothing saved.
    let csrf = form.csrf();
    let typed = [
        ("_csrf", csrf.as_str()),
        ("presenting_complaints", "Fever for three days"),
        ("item_0_drug", "Paracetamol"),
        ("item_1_drug", "Cetirizine"),
        ("item_2_drug", "Amoxicillin"),
    ];
    let r = c.doctor.post(&edit, &with_action(&typed, "add_item")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("name=\"item_3_drug\"") && r.body.contains("Fever for three days"));
    let r = c
        .doctor
        .post(&edit, &with_action(&typed, "remove_item_1"))
        .await;
    assert!(!r.body.contains("Cetirizine") && r.body.contains("value=\"Amoxicillin\""));
    assert!(update_rows(&t, &c, &visit).await.is_empty());

    let corrected = [
        ("_csrf", csrf.as_str()),
        ("action", "save"),
        ("presenting_complaints", "Fever for three days"),
        ("examination_notes", "Throat red"),
        ("diagnosis_0", "Streptococcal pharyngitis"),
        ("item_0_drug", "Amoxicillin"),
        ("item_0_dose", "250 mg"),
        ("advice", "Fluids"),
        ("follow_up_on", "2026-03-09"),
        ("fee", "1,250.5"),
    ];
    // Without a reason the correction is refused next to the field, input kept.
    let r = c.doctor.post(&edit, &corrected).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("id=\"reason-error\"") && r.body.contains("Say why"));
    assert!(r.body.contains("value=\"Streptococcal pharyngitis\""));
    assert!(update_rows(&t, &c, &visit).await.is_empty());
    assert!(
        c.doctor
            .get(&visit)
            .await
            .body
            .contains("Fever for two days")
    );
    let mut fields = corrected.to_vec();
    fields.push(("reason", "throat swab came back positive"));
    t.set_utc(2026, 3, 1, 11, 30);
    let r = c.doctor.post(&edit, &fields).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), visit);

    let page = c.doctor.get(&visit).await;
    page.assert_shows(&[
        "Fever for three days",
        "Streptococcal pharyngitis",
        "Amoxicillin",
        "250 mg",
        "2026-03-09",
        "₹1,250.50",
        "Dr. Bina Shah",
    ]);
    for gone in [
        "Viral fever",
        "Paracetamol",
        "Cetirizine",
        "Fever for two days",
    ] {
        assert!(!page.body.contains(gone), "{gone} was replaced");
    }
    assert!(
        page.body.contains("id=\"amended\"")
            && page.body.contains("Version 2 of 2")
            && page.body.contains("throat swab came back positive"),
        "the page says it was amended, when, by whom and why: {}",
        page.body
    );
    let rx = c.doctor.get(&format!("{visit}/prescription")).await;
    assert!(rx.body.contains("Amoxicillin") && rx.body.contains("250 mg"));
    assert!(!rx.body.contains("Paracetamol") && !rx.body.contains("Cetirizine"));
    rx.assert_contains("Amended record: Version 2 of 2");

    // The history keeps what was first written and shows what changed.
    let history = c.doctor.get(&format!("{visit}/history")).await;
    history.assert_shows(&[
        "<span>Fever for </span><del>two</del><ins>three</ins><span> days</span>",
        "<del>Viral fever</del><ins>Streptococcal pharyngitis</ins>",
        "<del>Paracetamol</del><ins>Amoxicillin</ins><span> · </span><del>500</del><ins>250</ins><span> mg</span><del>\nCetirizine</del>",
        "throat swab came back positive",
        "Corrected 2026-03-01 11:30 by Dr. Bina Shah",
    ]);
    history.assert_contains("<ins>₹1,250.50</ins>");
    let original = history.body.split("id=\"original\"").nth(1).unwrap();
    assert_contains_all(
        original,
        &[
            "Fever for two days",
            "Viral fever",
            "Paracetamol",
            "Cetirizine",
        ],
    );
    // Version 1 reads in full, and prints as it was printed then.
    let v1 = c.doctor.get(&format!("{visit}?version=1")).await;
    assert!(v1.body.contains("id=\"superseded\"") && v1.body.contains("Fever for two days"));
    assert!(
        !v1.body.contains(&format!("href=\"{edit}\"")),
        "an old version is not edited"
    );
    let rx1 = c
        .doctor
        .get(&format!("{visit}/prescription?version=1"))
        .await;
    assert!(rx1.body.contains("Paracetamol") && rx1.body.contains("Cetirizine"));
    assert!(!rx1.body.contains("Amoxicillin"));
    assert!(rx1.body.contains("Superseded version: Version 1 of 2"));
    for bad in ["?version=3", "?version=0", "?version=x"] {
        let r = c.doctor.get(&format!("{visit}{bad}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
    }
    // Front desk sees none of it: the history is clinical.
    for role in [Role::Receptionist, Role::Billing] {
        let r = c.browser(role).get(&format!("{visit}/history")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?}");
        assert!(
            !r.body.contains("Fever") && !r.body.contains("swab"),
            "{role:?}"
        );
    }
    // The prints name the version they showed.
    let prints = t
        .audit_of(c.id, ("visit", id_of(&visit)), Some(Action::Print))
        .await;
    let details: Vec<_> = prints.iter().filter_map(|r| r.detail.clone()).collect();
    assert!(
        details.contains(&"prescription, version 2".to_owned()),
        "{details:?}"
    );
    assert!(
        details.contains(&"prescription, version 1".to_owned()),
        "{details:?}"
    );
    assert_eq!(
        t.count(c.id, "SELECT COUNT(*) FROM prescription_items")
            .await,
        1
    );
    assert_eq!(t.count(c.id, "SELECT COUNT(*) FROM diagnoses").await, 1);

    // One update row, outlining what changed without the words.
    let rows = update_rows(&t, &c, &visit).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.actor_name, "Dr. Bina Shah");
    let json = row.diff.as_deref().unwrap();
    let diff = Diff::parse(json).unwrap();
    let fields: Vec<&str> = diff.fields().map(|(f, _, _)| f).collect();
    assert_eq!(
        fields,
        [
            "diagnoses",
            "fee_minor",
            "follow_up_on",
            "prescription_items",
            "presenting_complaints",
            "version"
        ]
    );
    let (_, old_fee, new_fee) = diff.fields().find(|(f, _, _)| *f == "fee_minor").unwrap();
    assert!(old_fee.is_null() && new_fee == 125_050);
    let (_, old_items, new_items) = diff
        .fields()
        .find(|(f, _, _)| *f == "prescription_items")
        .unwrap();
    assert_eq!(
        (old_items.as_str(), new_items.as_str()),
        (Some("2 items"), Some("1 items"))
    );
    for word in ["Amoxicillin", "Paracetamol", "pharyngitis", "Fever"] {
        assert!(
            !json.contains(word),
            "the log holds no clinical words: {json}"
        );
    }

    // Saving the same thing again changes nothing and logs nothing.
    let again = c.doctor.get(&edit).await;
    assert!(
        again.body.contains("value=\"1250.50\""),
        "the fee reads back"
    );
    let (fee, same) = corrected.split_last().unwrap();
    assert_eq!(fee.0, "fee");
    let mut same = same.to_vec();
    same.push(("fee", "1250.50"));
    let r = c.doctor.post(&edit, &same).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(update_rows(&t, &c, &visit).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_clinical_writers_may_edit_a_visit_and_refusals_change_nothing() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Guard Clinic", "guard").await;
    let (_, visit) = patient_with_visit(&mut c, "Guarded Patient", "300").await;
    let edit = format!("{visit}/edit");
    let csrf_page = format!("{}/patients", c.base);
    for role in ROLES {
        let clinical = matches!(role, Role::Owner | Role::Doctor);
        let b = c.browser(role);
        let r = b.get(&edit).await;
        if clinical {
            assert_eq!(r.status, StatusCode::OK, "{role:?}");
            // The owner edits first (fee 1), then the doctor sees the owner's version.
            let fee = if role == Role::Owner {
                "300.00"
            } else {
                "1.00"
            };
            assert!(
                r.body
                    .contains(&format!("id=\"fee\" name=\"fee\" value=\"{fee}\"")),
                "{role:?}"
            );
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?}");
            assert!(
                !r.body.contains("Fever for two days") && !r.body.contains("Paracetamol"),
                "{role:?} saw the visit"
            );
        }
        let r = b
            .submit(
                &csrf_page,
                &edit,
                &[
                    ("action", "save"),
                    ("presenting_complaints", &format!("Changed by {role:?}")),
                    ("fee", "1"),
                    ("reason", "correction"),
                ],
            )
            .await;
        if clinical {
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{role:?}: {}", r.body);
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?}");
            assert!(!r.body.contains("Fever"), "{role:?}");
        }
    }
    // The doctor's edit stands; the receptionist's and billing's never landed.
    let page = c.owner.get(&visit).await;
    page.assert_contains("Changed by Doctor");
    assert!(
        !page.body.contains("Changed by Receptionist") && !page.body.contains("Changed by Billing")
    );
    assert_eq!(
        update_rows(&t, &c, &visit).await.len(),
        2,
        "owner and doctor"
    );
    assert_eq!(
        t.count(c.id, "SELECT fee_minor FROM visits").await,
        100,
        "the last allowed fee"
    );
    // Roles that may not edit see no link to do so.
    for role in [Role::Owner, Role::Doctor] {
        let body = c.browser(role).get(&visit).await.body;
        assert!(body.contains(&format!("href=\"{edit}\"")), "{role:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_edits_are_refused_next_to_the_field_and_unknown_visits_are_not_found() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Strict Clinic", "strict").await;
    let (_, visit) = patient_with_visit(&mut c, "Strict Patient", "500").await;
    let edit = format!("{visit}/edit");
    let csrf = c.doctor.get(&edit).await.csrf();
    let long = "z".repeat(20_000);
    let cases: [(&str, &str, &str, &str); 7] = [
        (
            "fee",
            "12.345",
            "fee-error",
            "Enter the fee in INR as a number",
        ),
        (
            "fee",
            "abc",
            "fee-error",
            "Enter the fee in INR as a number",
        ),
        ("fee", "-5", "fee-error", "A fee cannot be negative."),
        (
            "fee",
            "99999999999999",
            "fee-error",
            "That fee is too large.",
        ),
        (
            "presenting_complaints",
            &long,
            "presenting_complaints-error",
            "field-error",
        ),
        (
            "follow_up_on",
            "2020-01-01",
            "follow_up_on-error",
            "The follow-up date has passed.",
        ),
        ("item_0_drug", &long, "field-error", "field-error"),
    ];
    for (field, value, error_id, message) in cases {
        let r = c
            .doctor
            .post_with_csrf(
                &edit,
                &csrf,
                &[
                    ("action", "save"),
                    ("presenting_complaints", "Changed"),
                    ("diagnosis_0", "Viral fever"),
                    (field, value),
                ],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}={value:.20}"
        );
        assert!(
            r.body.contains(error_id),
            "{field}: error next to the field"
        );
        assert!(r.body.contains(message), "{field}: {message}");
        if field == "fee" {
            assert!(
                r.body
                    .contains(&format!("id=\"fee\" name=\"fee\" value=\"{value}\"")),
                "the typed fee is kept"
            );
            assert!(
                r.body
                    .contains("aria-invalid=\"true\" aria-describedby=\"fee-error\"")
            );
        }
    }
    let page = c.doctor.get(&visit).await;
    assert!(page.body.contains("Fever for two days") && page.body.contains("₹500.00"));
    assert!(
        update_rows(&t, &c, &visit).await.is_empty(),
        "nothing changed"
    );

    // A visit that does not exist, or is not a number, is a not-found page, never a 500.
    let base = c.base.clone();
    for path in [
        format!("{base}/visits/999/edit"),
        format!("{base}/visits/0/edit"),
        format!("{base}/visits/abc/edit"),
        format!("{base}/visits/99999999999999999999/edit"),
    ] {
        let r = c.doctor.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "GET {path}");
        assert!(r.body.contains("<html") && !r.body.contains("Strict Patient"));
        let r = c
            .doctor
            .post_with_csrf(&path, &csrf, &[("action", "save"), ("fee", "1")])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "POST {path}");
    }
    assert_eq!(t.count(c.id, "SELECT COUNT(*) FROM visits").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn fees_and_payments_give_the_balance_on_the_patient_page() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Ledger Clinic", "ledger").await;
    let (patient, _) = patient_with_visit(&mut c, "Ledger Patient", "500").await;
    let patient_id = id_of(&patient).to_owned();
    let r = c
        .doctor
        .save_visit(
            &patient,
            &[("presenting_complaints", "Review"), ("fee", "250.50")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = c.billing.get(&patient).await;
    page.assert_contains("Charged ₹750.50 · Paid ₹0.00 · Balance due ₹750.50");

    let r = pay_cash(&mut c, &patient_id, "300").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    for role in [Role::Owner, Role::Doctor, Role::Billing, Role::Receptionist] {
        let page = c.browser(role).get(&patient).await;
        assert!(
            page.body
                .contains("Charged ₹750.50 · Paid ₹300.00 · Balance due ₹450.50"),
            "{role:?}"
        );
    }

    let r = pay_cash(&mut c, &patient_id, "500").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = c.owner.get(&patient).await;
    page.assert_contains("Charged ₹750.50 · Paid ₹800.00 · In credit ₹49.50");
    assert!(!page.body.contains("Balance due"));
}
