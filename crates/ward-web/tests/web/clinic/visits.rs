//! Visits, prescriptions and favourites over HTTP; the role matrix and cross-clinic
//! isolation of every patient and visit route.

use axum::http::StatusCode;
use ward_clinic::audit::{Action, Actor};
use ward_clinic::settings::{self, ClinicSettings};
use ward_core::{ClinicId, Role};

use crate::support::staffed::{Clinic, ROLES, Staffed as _};
use crate::support::{TestApp, id_of, with_action};

async fn set_letterhead(t: &TestApp, clinic: ClinicId) {
    let tenant = t.app.tenants.get(clinic).await.unwrap();
    let at = t.app.clock.now();
    tenant
        .with(|conn| {
            let s = ClinicSettings {
                address: "4 Lake View, Pune".into(),
                phone: "020 4000 1000".into(),
                timezone: settings::parse_timezone("Asia/Kolkata").unwrap(),
                letterhead: "MBBS, MD (General Medicine) · Mon–Sat 9–1".into(),
                ..ClinicSettings::default()
            };
            let owner = Actor::User {
                id: "owner".into(),
                name: "Owner".into(),
                role: Role::Owner,
            };
            settings::save(&conn, &s, owner, None, at).unwrap();
        })
        .await;
}

/// A patient (registered by the receptionist) and a visit (by the doctor) with a canary
/// in the clinical notes; returns (patient path, visit path).
/// How many patients, visits, favourites and non-view audit rows clinic `c` holds.
async fn write_counts(t: &TestApp, c: &Clinic) -> [i64; 4] {
    [
        t.count(c.id, "SELECT COUNT(*) FROM patients").await,
        t.count(c.id, "SELECT COUNT(*) FROM visits").await,
        t.count(c.id, "SELECT COUNT(*) FROM favourites").await,
        t.count(
            c.id,
            "SELECT COUNT(*) FROM audit_log WHERE action <> 'view'",
        )
        .await,
    ]
}

async fn patient_with_visit(c: &mut Clinic, name: &str, canary: &str) -> (String, String) {
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(
            &base,
            &[
                ("full_name", name),
                ("date_of_birth", "1990-05-04"),
                ("phone", "98450 12345"),
            ],
        )
        .await;
    let visit = c
        .doctor
        .record_visit(
            &patient,
            &[
                ("presenting_complaints", canary),
                ("examination_notes", "Chest clear"),
                ("diagnosis_0", "Viral fever"),
                ("item_0_drug", "Paracetamol"),
                ("item_0_dose", "500 mg"),
            ],
        )
        .await;
    (patient, visit)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_doctor_records_a_visit_and_prints_the_prescription() {
    let t = TestApp::new().await;
    // 20:30 UTC is already the next day in the clinic's zone.
    t.set_utc(2026, 3, 1, 20, 30);
    let mut c = t.clinic("Lakeview Clinic", "lake").await;
    set_letterhead(&t, c.id).await;
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(
            &base,
            &[
                ("full_name", "Kiran Desai"),
                ("age_years", "34"),
                ("sex", "male"),
            ],
        )
        .await;
    let page = c.doctor.get(&patient).await;
    let new = format!("{patient}/visits/new");
    assert!(
        page.body.contains(&format!("href=\"{new}\"")),
        "start a visit from the patient page"
    );

    let form = c.doctor.get(&new).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body.contains("name=\"item_2_drug\"") && !form.body.contains("name=\"item_3_drug\"")
    );
    assert!(form.body.contains("name=\"diagnosis_1\""));
    let action = format!("{patient}/visits");
    let csrf = form.csrf();

    // Without JavaScript: "add another row" redraws with one more row, input kept.
    let typed = [
        ("_csrf", csrf.as_str()),
        ("presenting_complaints", "Fever for three days"),
        ("item_0_drug", "Paracetamol"),
        ("item_0_dose", "500 mg"),
        ("item_1_drug", "Cetirizine"),
        ("item_2_drug", "Amoxicillin"),
    ];
    let r = c
        .doctor
        .post(&action, &with_action(&typed, "add_item"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("name=\"item_3_drug\""), "a fourth row");
    assert!(r.body.contains("Fever for three days") && r.body.contains("value=\"Amoxicillin\""));
    // Removing a row.
    let r = c
        .doctor
        .post(&action, &with_action(&typed, "remove_item_1"))
        .await;
    assert!(!r.body.contains("Cetirizine") && r.body.contains("value=\"Amoxicillin\""));
    // A row without a drug is refused next to its field; nothing saved.
    let r = c
        .doctor
        .post_with_csrf(
            &action,
            &csrf,
            &[
                ("action", "save"),
                ("item_1_dose", "10 mg"),
                ("follow_up_on", "2026-02-30"),
            ],
        )
        .await;
    r.assert_refused(&[
        "Enter the drug, or clear the row.",
        "id=\"follow_up_on-error\"",
        "value=\"10 mg\"",
    ]);
    assert_eq!(t.count(c.id, "SELECT COUNT(*) FROM visits").await, 0);

    // Save a favourite, then apply it in one click.
    let r = c
        .doctor
        .post_with_csrf(
            &action,
            &csrf,
            &[
                ("action", "save_favourite"),
                ("favourite_name", "Fever pack"),
                ("item_0_drug", "Paracetamol"),
                ("item_0_dose", "650 mg"),
                ("item_0_frequency", "1-1-1"),
                ("item_1_drug", "ORS"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Saved the items as the favourite"));
    let form = c.doctor.get(&new).await;
    assert!(form.body.contains("Add “Fever pack”"));
    let fav_id = form
        .body
        .split("apply_favourite_")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = c
        .doctor
        .post_with_csrf(
            &action,
            &csrf,
            &[
                ("action", &format!("apply_favourite_{fav_id}")),
                ("advice", "Rest"),
            ],
        )
        .await;
    assert!(
        r.body.contains("value=\"650 mg\"")
            && r.body.contains("value=\"ORS\"")
            && r.body.contains("Rest")
    );
    // Another doctor's favourites are not theirs to apply.
    let owner_csrf = c.owner.get(&new).await.csrf();
    let r = c
        .owner
        .post_with_csrf(
            &action,
            &owner_csrf,
            &[("action", &format!("apply_favourite_{fav_id}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = c
        .doctor
        .post_with_csrf(
            &action,
            &csrf,
            &[
                ("action", "save"),
                ("presenting_complaints", "Fever for three days"),
                ("examination_notes", "Throat congested"),
                ("diagnosis_0", "Viral fever"),
                ("diagnosis_1", "Pharyngitis"),
                ("item_0_drug", "Paracetamol"),
                ("item_0_dose", "650 mg"),
                ("item_0_frequency", "1-1-1"),
                ("item_0_duration", "3 days"),
                ("item_0_instructions", "after food"),
                ("item_1_drug", "Azithromycin"),
                ("item_1_dose", "500 mg"),
                ("item_1_frequency", "once a day"),
                ("item_1_duration", "5 days"),
                ("advice", "Plenty of fluids"),
                ("follow_up_on", "2026-03-09"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let visit = r.location().to_owned();
    let visit_id = id_of(&visit).to_owned();
    let v = c.doctor.get(&visit).await;
    assert!(v.body.contains("Throat congested") && v.body.contains("Pharyngitis"));
    assert!(v.body.contains("Dr. Bina Shah"));
    let p = c.doctor.get(&patient).await;
    assert!(p.body.contains("Viral fever; Pharyngitis"), "visit history");

    let rx = c.doctor.get(&format!("{visit}/prescription")).await;
    rx.assert_shows(&[
        "Lakeview Clinic",
        "MBBS, MD (General Medicine) · Mon–Sat 9–1",
        "4 Lake View, Pune",
        "020 4000 1000",
        "Kiran Desai",
        "34 y · Male",
        "02 Mar 2026",
        "Dr. Bina Shah",
        "Paracetamol",
        "650 mg",
        "1-1-1",
        "3 days",
        "after food",
        "Azithromycin",
        "Plenty of fluids",
        "09 Mar 2026",
    ]);
    assert!(
        !rx.body.contains("Throat congested"),
        "examination notes stay off the paper"
    );
    let a5 = c
        .doctor
        .get(&format!("{visit}/prescription?paper=a5"))
        .await;
    assert!(a5.body.contains("paper-a5"));
    let css = c.doctor.get("/static/ward.css").await.body;
    assert!(css.contains("size: A5") && css.contains("size: A4") && css.contains("@media print"));

    let rows = t.audit_of(c.id, ("visit", &visit_id), None).await;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == Action::Print.as_str())
            .count(),
        2,
        "{actions:?}"
    );
    assert!(actions.contains(&Action::Create.as_str()) && actions.contains(&Action::View.as_str()));
    let print = rows
        .iter()
        .find(|r| r.action == Action::Print.as_str())
        .unwrap();
    assert_eq!(print.actor_name, "Dr. Bina Shah");
    assert_eq!(print.actor_role.as_deref(), Some("doctor"));
    assert!(print.detail.as_deref().unwrap().contains("prescription"));
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Need {
    View,
    Edit,
    Clinical,
}

fn allowed(role: Role, need: Need) -> bool {
    match need {
        Need::View => true,
        Need::Edit => role != Role::Billing,
        Need::Clinical => matches!(role, Role::Owner | Role::Doctor),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_each_role_as_the_matrix_says() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Matrix Clinic", "matrix").await;
    let canary = "CANARY-clinical-7f3a";
    let (patient, visit) = patient_with_visit(&mut c, "Matrix Patient", canary).await;
    let base = c.base.clone();
    let gets = [
        (format!("{base}/patients"), Need::View),
        (format!("{base}/patients?q=matrix"), Need::View),
        (format!("{base}/patients/search?q=matrix"), Need::View),
        (patient.clone(), Need::View),
        (format!("{base}/patients/new"), Need::Edit),
        (format!("{patient}/edit"), Need::Edit),
        (format!("{patient}/visits/new"), Need::Clinical),
        (visit.clone(), Need::Clinical),
        (format!("{visit}/edit"), Need::Clinical),
        (format!("{visit}/prescription"), Need::Clinical),
        (format!("{visit}/history"), Need::Clinical),
        (format!("{visit}?version=1"), Need::Clinical),
        (format!("{patient}/history"), Need::View),
    ];
    for role in ROLES {
        let b = c.browser(role);
        for (path, need) in &gets {
            let r = b.get(path).await;
            let expect = if allowed(role, *need) {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(r.status, expect, "{role:?} GET {path}");
            if !allowed(role, Need::Clinical) {
                assert!(
                    !r.body.contains(canary),
                    "{role:?} saw clinical notes at {path}"
                );
            }
        }
        let page = b.get(&patient).await.body;
        assert_eq!(
            page.contains("Viral fever"),
            allowed(role, Need::Clinical),
            "{role:?}"
        );
        assert_eq!(
            page.contains("/edit\""),
            allowed(role, Need::Edit),
            "{role:?}"
        );
    }

    // Writes: allowed ones take effect, forbidden ones change nothing.
    let csrf_page = format!("{base}/patients");
    for role in ROLES {
        let [patients_before, visits_before, favs_before, audit_before] =
            write_counts(&t, &c).await;
        let b = c.browser(role);
        let name = format!("New by {role:?}");
        let renamed = format!("Matrix Patient {role:?}");
        let edit_ok = allowed(role, Need::Edit);
        let clinical = allowed(role, Need::Clinical);
        // Each write, whether the role may make it, and what it answers when it may.
        let writes = [
            (
                format!("{base}/patients/new"),
                vec![("full_name", name.as_str()), ("sex", "other")],
                edit_ok,
                StatusCode::SEE_OTHER,
            ),
            (
                format!("{patient}/edit"),
                vec![
                    ("full_name", renamed.as_str()),
                    ("sex", "female"),
                    ("date_of_birth", "1990-05-04"),
                    ("reason", "spelling"),
                ],
                edit_ok,
                StatusCode::SEE_OTHER,
            ),
            (
                format!("{patient}/visits"),
                vec![("action", "save"), ("presenting_complaints", "Cough")],
                clinical,
                StatusCode::SEE_OTHER,
            ),
            (
                format!("{patient}/visits"),
                vec![
                    ("action", "save_favourite"),
                    ("favourite_name", "Mine"),
                    ("item_0_drug", "ORS"),
                ],
                clinical,
                StatusCode::OK,
            ),
        ];
        for (path, form, may, answer) in writes {
            let r = b.submit(&csrf_page, &path, &form).await;
            let expect = if may { answer } else { StatusCode::FORBIDDEN };
            assert_eq!(r.status, expect, "{role:?}");
        }

        let [patients_after, visits_after, favs_after, audit_after] = write_counts(&t, &c).await;
        assert_eq!(
            patients_after - patients_before,
            i64::from(edit_ok),
            "{role:?}"
        );
        assert_eq!(
            visits_after - visits_before,
            i64::from(clinical),
            "{role:?}"
        );
        assert_eq!(favs_after - favs_before, i64::from(clinical), "{role:?}");
        assert_eq!(
            audit_after - audit_before,
            2 * i64::from(edit_ok) + 2 * i64::from(clinical),
            "{role:?}"
        );
    }
    let name = c.owner.get(&patient).await.body;
    assert!(
        name.contains("Matrix Patient Receptionist"),
        "the last allowed edit stands"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_of_another_clinic_gets_404_for_every_patient_and_visit_url() {
    let t = TestApp::new().await;
    let mut a = t.clinic("Alpha Clinic", "alpha").await;
    let mut b = t.clinic("Beta Clinic", "beta").await;
    let canary_name = "Zyxwv Canarian";
    let canary_note = "CANARY-alpha-notes-93c1";
    // Clinic A has several patients and visits; clinic B one of each, so A's higher ids
    // exist only in A.
    let mut a_paths = Vec::new();
    for i in 0..4 {
        let (p, v) = patient_with_visit(&mut a, &format!("{canary_name} {i}"), canary_note).await;
        a_paths.push(p);
        a_paths.push(v);
    }
    let (b_patient, b_visit) = patient_with_visit(&mut b, "Beta Person", "beta notes").await;
    assert!(b_patient.ends_with("/patients/1") && b_visit.ends_with("/visits/1"));

    let a_base = a.base.clone();
    let b_base = b.base.clone();
    // Not found, or forbidden under B's own slug (B's roles hold there).
    let refused = |status: StatusCode, path: &str| {
        status == StatusCode::NOT_FOUND
            || (status == StatusCode::FORBIDDEN && path.starts_with(&b_base))
    };
    let mut requests = 0;
    for role in ROLES {
        let browser = b.browser(role);
        // Every clinic-A URL, as it is, under A's slug.
        let mut urls: Vec<String> = a_paths.clone();
        for p in &a_paths {
            urls.extend(["edit", "visits/new", "prescription"].map(|tail| format!("{p}/{tail}")));
        }
        urls.extend(
            [
                "patients",
                "patients?q=zyxwv",
                "patients/search?q=zyxwv",
                "patients/new",
            ]
            .map(|tail| format!("{a_base}/{tail}")),
        );
        // A's ids under B's own slug: B has no such records.
        for id in 2..=400 {
            urls.push(format!("{b_base}/patients/{id}"));
            urls.push(format!("{b_base}/patients/{id}/edit"));
            urls.push(format!("{b_base}/patients/{id}/visits/new"));
            urls.push(format!("{b_base}/visits/{id}"));
            urls.push(format!("{b_base}/visits/{id}/prescription"));
            urls.push(format!("{b_base}/visits/{id}/edit"));
            urls.push(format!("{a_base}/visits/{id}/edit"));
            urls.push(format!("{a_base}/patients/{id}"));
            urls.push(format!("{a_base}/visits/{id}/prescription"));
        }
        for url in &urls {
            let r = browser.get(url).await;
            requests += 1;
            assert!(refused(r.status, url), "{role:?} GET {url}: {}", r.status);
            assert!(
                !r.body.contains("Zyxwv") && !r.body.contains(canary_note),
                "{url}"
            );
        }
        // Writes to A's records from B are refused and change nothing.
        let csrf_page = format!("{b_base}/patients");
        for (path, form) in [
            (
                format!("{a_base}/patients/new"),
                vec![("full_name", "Intruder"), ("sex", "male")],
            ),
            (
                format!("{}/edit", a_paths[0]),
                vec![("full_name", "Intruder"), ("sex", "male")],
            ),
            (
                format!("{}/visits", a_paths[0]),
                vec![("action", "save"), ("presenting_complaints", "x")],
            ),
            (
                format!("{}/edit", a_paths[1]),
                vec![("action", "save"), ("presenting_complaints", "x")],
            ),
            (
                format!("{b_base}/visits/3/edit"),
                vec![("action", "save"), ("presenting_complaints", "x")],
            ),
            (
                format!("{b_base}/patients/3/edit"),
                vec![("full_name", "Intruder"), ("sex", "male")],
            ),
            (
                format!("{b_base}/patients/3/visits"),
                vec![("action", "save"), ("presenting_complaints", "x")],
            ),
        ] {
            let r = browser.submit(&csrf_page, &path, &form).await;
            requests += 1;
            assert!(
                refused(r.status, &path),
                "{role:?} POST {path}: {}",
                r.status
            );
        }
    }
    assert!(requests >= 10_000, "{requests}");
    assert_eq!(
        t.count(
            a.id,
            "SELECT COUNT(*) FROM patients WHERE full_name = 'Intruder'"
        )
        .await,
        0
    );
    assert_eq!(t.count(a.id, "SELECT COUNT(*) FROM visits").await, 4);
    assert_eq!(
        t.count(
            a.id,
            "SELECT COUNT(*) FROM visits WHERE presenting_complaints <> 'CANARY-alpha-notes-93c1'"
        )
        .await,
        0,
        "no visit of A was edited from B"
    );
    assert_eq!(t.count(b.id, "SELECT COUNT(*) FROM patients").await, 1);
    assert_eq!(t.count(b.id, "SELECT COUNT(*) FROM visits").await, 1);
    // And the search of B never returns A's patients.
    let r = b.owner.get(&format!("{b_base}/patients?q=zyxwv")).await;
    assert!(!r.body.contains("Zyxwv"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_visit_input_is_refused_field_by_field_and_never_a_500() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Rough Clinic", "rough").await;
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(&base, &[("full_name", "Edge Case")])
        .await;
    let action = format!("{patient}/visits");
    let csrf = c.doctor.get(&format!("{patient}/visits/new")).await.csrf();
    let long = "y".repeat(20_000);
    let many_rows: Vec<(String, String)> = (0..500)
        .map(|i| (format!("item_{i}_drug"), format!("Drug {i}")))
        .collect();
    let mut bulk: Vec<(&str, &str)> = vec![("_csrf", &csrf), ("action", "add_item")];
    bulk.extend(many_rows.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let r = c.doctor.post(&action, &bulk).await;
    assert_eq!(r.status, StatusCode::OK, "rows beyond the cap are ignored");
    assert!(!r.body.contains("item_30_drug"));
    for form in [
        vec![("action", "save"), ("presenting_complaints", long.as_str())],
        vec![("action", "save"), ("item_0_drug", long.as_str())],
        vec![("action", "save"), ("diagnosis_0", long.as_str())],
        vec![("action", "save"), ("diagnosis_0", "a\u{0}b")],
        vec![("action", "save"), ("follow_up_on", "tomorrow")],
        vec![("action", "save"), ("follow_up_on", "99999-01-01")],
        vec![("action", "save")],
        vec![
            ("action", "save_favourite"),
            ("favourite_name", ""),
            ("item_0_drug", "X"),
        ],
        vec![("action", "save_favourite"), ("favourite_name", "Empty")],
        vec![
            ("action", "save_favourite"),
            ("favourite_name", long.as_str()),
            ("item_0_drug", "X"),
        ],
    ] {
        let mut fields = vec![("_csrf", csrf.as_str())];
        fields.extend(form.iter().copied());
        let r = c.doctor.post(&action, &fields).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            &form[..1.min(form.len())]
        );
        assert!(r.body.contains("field-error"));
    }
    for odd in [
        "apply_favourite_999",
        "apply_favourite_x",
        "remove_item_99999999999999999999",
        "launch",
    ] {
        let r = c
            .doctor
            .post_with_csrf(&action, &csrf, &[("action", odd)])
            .await;
        assert!(
            r.status.is_client_error() || r.status == StatusCode::OK,
            "{odd}: {}",
            r.status
        );
    }
    assert_eq!(t.count(c.id, "SELECT COUNT(*) FROM visits").await, 0);
    assert_eq!(t.count(c.id, "SELECT COUNT(*) FROM favourites").await, 0);
}
