//! The appointment book: booking, double booking, statuses, rescheduling, time zones,
//! and the dashboard.

use axum::http::StatusCode;

use crate::support::desk::{Desk, FrontDesk as _, book, id_in};
use crate::support::{self, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn a_doctors_slot_cannot_be_booked_twice_but_a_cancelled_one_frees_it() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    let p1 = d.owner.add_patient(c, "Asha Patel", "98450 11111").await;
    let p2 = d.owner.add_patient(c, "Ben Okafor", "98450 22222").await;
    let doc = d.doctor_id.clone();
    let owner_id = d.owner_id.clone();

    let r = book(
        &mut d.receptionist,
        c,
        p1,
        &doc,
        "2026-03-02",
        "09:00",
        "30",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let first = id_in(r.location());

    let r = book(
        &mut d.receptionist,
        c,
        p2,
        &doc,
        "2026-03-02",
        "09:15",
        "15",
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    r.assert_contains("Dr. Vik Menon already has an appointment at that time");
    // The form comes back with what was typed.
    assert!(r.body.contains("value=\"09:15\""));
    assert_eq!(
        d.owner.scalar(c, "SELECT count(*) FROM appointments").await,
        1
    );

    // Back to back is fine; another doctor at the same time is fine.
    let r = book(
        &mut d.receptionist,
        c,
        p2,
        &doc,
        "2026-03-02",
        "09:30",
        "15",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = book(
        &mut d.receptionist,
        c,
        p2,
        &owner_id,
        "2026-03-02",
        "09:15",
        "15",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // Cancelling frees the slot.
    let path = format!("{}/appointments/{first}/status", c.base);
    let day = d
        .receptionist
        .get(&format!("{}/appointments?date=2026-03-02", c.base))
        .await;
    assert!(
        day.body
            .contains("name=\"back_to_day\" value=\"2026-03-02\"")
    );
    assert!(day.body.contains(">No-show</button>"));
    let day = d
        .billing
        .get(&format!("{}/appointments?date=2026-03-02", c.base))
        .await;
    assert!(day.body.contains("Asha Patel"));
    assert!(
        !day.body.contains(">No-show</button>"),
        "billing only views"
    );
    let r = d
        .receptionist
        .send_form(
            &path,
            &[("status", "cancelled"), ("back_to_day", "2026-03-02")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.location(),
        format!("{}/appointments?date=2026-03-02", c.base)
    );
    let r = book(
        &mut d.receptionist,
        c,
        p2,
        &doc,
        "2026-03-02",
        "09:10",
        "15",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        d.owner.scalar(c, "SELECT count(*) FROM appointments").await,
        4
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_move_only_forward_through_the_day_and_each_change_is_audited() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    let p = d.owner.add_patient(c, "Asha Patel", "98450 11111").await;
    let doc = d.doctor_id.clone();
    let r = book(&mut d.receptionist, c, p, &doc, "2026-03-02", "10:00", "15").await;
    let id = id_in(r.location());
    let path = format!("{}/appointments/{id}/status", c.base);

    let r = d.receptionist.send_form(&path, &[("status", "done")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_contains("An appointment that is booked cannot become done");

    for step in ["arrived", "in_consultation", "done"] {
        let r = d
            .doctor
            .send_form(&path, &[("status", step), ("back_to_day", "//evil.test/")])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{step}: {}", r.body);
        assert_eq!(r.location(), format!("{}/appointments/{id}", c.base));
    }
    let status = d
        .owner
        .text(
            c,
            &format!("SELECT status FROM appointments WHERE id = {id}"),
        )
        .await;
    assert_eq!(status, "done");
    let r = d.doctor.send_form(&path, &[("status", "arrived")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("It can no longer change"));
    let r = d.doctor.send_form(&path, &[("status", "<script>")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let diffs = d
        .owner
        .text(
            c,
            &format!("SELECT group_concat(diff, '|') FROM (SELECT diff FROM audit_log WHERE entity_type = 'appointment' AND entity_id = '{id}' AND action = 'update' ORDER BY seq)"),
        )
        .await;
    assert_eq!(
        diffs,
        r#"{"status":["booked","arrived"]}|{"status":["arrived","in_consultation"]}|{"status":["in_consultation","done"]}"#
    );
    let page = d.owner.get(&format!("{}/appointments/{id}", c.base)).await;
    assert!(page.body.contains("Done"));
    assert!(
        !page.body.contains("Reschedule"),
        "only booked appointments move"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rescheduling_checks_the_new_slot_and_records_the_old_and_new_times() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    d.owner.set_timezone(c, "Asia/Kolkata").await;
    let p = d.owner.add_patient(c, "Asha Patel", "98450 11111").await;
    let doc = d.doctor_id.clone();
    let r = book(&mut d.receptionist, c, p, &doc, "2026-03-02", "10:00", "15").await;
    let a = id_in(r.location());
    let r = book(&mut d.receptionist, c, p, &doc, "2026-03-02", "11:00", "15").await;
    let b = id_in(r.location());

    let path = format!("{}/appointments/{b}/reschedule", c.base);
    let r = reschedule(&mut d.receptionist, &path, &doc, "10:05", "15").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("already has an appointment"));
    let r = reschedule(&mut d.receptionist, &path, &doc, "25:99", "15").await;
    r.assert_refused(&["Enter a time as HH:MM", "value=\"25:99\""]);

    let r = reschedule(&mut d.receptionist, &path, &doc, "10:15", "20").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // 10:15 in Kolkata is 04:45 UTC.
    let starts = d
        .owner
        .text(
            c,
            &format!("SELECT starts_at FROM appointments WHERE id = {b}"),
        )
        .await;
    assert_eq!(starts, "2026-03-02T04:45:00.000Z");
    let diff = d
        .owner
        .text(c, &format!("SELECT diff FROM audit_log WHERE entity_type = 'appointment' AND entity_id = '{b}' AND action = 'update'"))
        .await;
    assert!(
        diff.contains(r#""starts_at":["2026-03-02T05:30:00.000Z","2026-03-02T04:45:00.000Z"]"#),
        "{diff}"
    );
    let _ = a;

    // Missing and foreign ids are 404s, hostile ones too.
    for bad in ["999", "0", "-1", "abc", "1%27%20OR%201=1"] {
        let r = d
            .receptionist
            .get(&format!("{}/appointments/{bad}", c.base))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
        let r = d
            .receptionist
            .send_form(
                &format!("{}/appointments/{bad}/reschedule", c.base),
                &[
                    ("doctor", &doc),
                    ("date", "2026-03-02"),
                    ("time", "12:00"),
                    ("minutes", "15"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_patient_can_be_registered_while_booking_and_bad_input_is_shown_by_its_field() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    d.owner.add_patient(c, "Existing Person", "1234").await;
    let doc = d.doctor_id.clone();
    let path = format!("{}/appointments", c.base);
    let r = d
        .receptionist
        .send_form(
            &path,
            &[
                ("full_name", "Chen Li"),
                ("sex", "male"),
                ("phone", "+91 98450-33333"),
                ("doctor", &doc),
                ("date", "2026-03-03"),
                ("time", "09:00"),
                ("minutes", "15"),
                ("reason", "fever"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        d.owner
            .scalar(c, "SELECT number FROM patients WHERE full_name = 'Chen Li'")
            .await,
        2
    );
    assert_eq!(
        d.owner
            .text(
                c,
                "SELECT phone_digits FROM patients WHERE full_name = 'Chen Li'"
            )
            .await,
        "919845033333"
    );
    // Registered like any patient: found by a word of the name and by the end of the
    // phone number, with the record's first version kept.
    for q in ["li", "chen", "45033333"] {
        let found = d
            .receptionist
            .get(&format!("{}/patients/search?q={q}", c.base))
            .await;
        assert!(found.body.contains("Chen Li"), "search {q}: {}", found.body);
    }
    assert_eq!(
        d.owner
            .scalar(
                c,
                "SELECT COUNT(*) FROM patient_versions v JOIN patients p ON p.id = v.patient_id WHERE p.full_name = 'Chen Li' AND v.version = 1 AND v.content LIKE '%98450-33333%'"
            )
            .await,
        1
    );

    // A clash rolls back the new patient too.
    let r = d
        .receptionist
        .send_form(
            &path,
            &[
                ("full_name", "Dana Roe"),
                ("sex", "female"),
                ("phone", ""),
                ("doctor", &doc),
                ("date", "2026-03-03"),
                ("time", "09:05"),
                ("minutes", "15"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(d.owner.scalar(c, "SELECT count(*) FROM patients").await, 2);

    let r = d
        .receptionist
        .send_form(
            &path,
            &[
                ("full_name", "Eve <b>Bold</b>"),
                ("sex", "robot"),
                ("phone", "call me"),
                ("doctor", "nobody"),
                ("date", "2026-13-45"),
                ("time", "09:00"),
                ("minutes", "9999"),
            ],
        )
        .await;
    r.assert_refused(&[
        "Choose a doctor.",
        "Choose female, male, other or unknown.",
        "Enter a date as YYYY-MM-DD.",
    ]);
    assert!(
        r.body.contains("value=\"Eve &#60;b&#62;Bold&#60;/b&#62;\"")
            || r.body.contains("value=\"Eve &lt;b&gt;Bold&lt;/b&gt;\""),
        "input kept, escaped"
    );
    assert_eq!(d.owner.scalar(c, "SELECT count(*) FROM patients").await, 2);

    // Search finds patients by name, number and phone digits.
    let page = d.receptionist.get(&format!("{path}?q=chen")).await;
    assert!(page.body.contains("Chen Li"));
    let page = d.receptionist.get(&format!("{path}?q=45033")).await;
    assert!(page.body.contains("Chen Li"));
    let page = d.receptionist.get(&format!("{path}?q=1")).await;
    assert!(page.body.contains("Existing Person"));
    let page = d
        .receptionist
        .get(&format!("{path}?q=%25&date=nonsense&doctor=x"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("That date could not be read"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_todays_appointments_in_the_clinics_timezone() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    // The clock is 2026-03-01 09:00 UTC, 14:30 in Kolkata.
    d.owner.set_timezone(c, "Asia/Kolkata").await;
    let early = d.owner.add_patient(c, "Early Bird", "1").await;
    let late = d.owner.add_patient(c, "Night Owl", "2").await;
    let tomorrow = d.owner.add_patient(c, "Tomorrow Person", "3").await;
    let doc = d.doctor_id.clone();
    // 04:00 Kolkata = 22:30 UTC the day before; 23:00 Kolkata = 17:30 UTC; 03:00 on the
    // 2nd Kolkata = 21:30 UTC on the 1st.
    let indexed = "SELECT count(*) FROM sqlite_master WHERE name = 'patients_by_updated'";
    assert_eq!(d.owner.scalar(c, indexed).await, 1);
    let mut booked = Vec::new();
    for (p, date, time) in [
        (early, "2026-03-01", "04:00"),
        (late, "2026-03-01", "23:00"),
        (tomorrow, "2026-03-02", "03:00"),
    ] {
        let r = book(&mut d.receptionist, c, p, &doc, date, time, "15").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        booked.push(id_in(r.location()));
    }
    let page = d.billing.get(&format!("{}/", c.base)).await;
    let recent = page.body.split("Recent patients").nth(1).unwrap();
    let pos = |name: &str| recent.find(&format!("{name}</a>")).unwrap();
    assert!(
        pos("Tomorrow Person") < pos("Early Bird"),
        "newest registration first"
    );
    // A patient who is seen moves to the top.
    d.owner.clock.advance(chrono::TimeDelta::minutes(5));
    let r = d
        .receptionist
        .send_form(
            &format!("{}/appointments/{}/status", c.base, booked[0]),
            &[("status", "arrived")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = d.billing.get(&format!("{}/", c.base)).await;
    let recent = page.body.split("Recent patients").nth(1).unwrap();
    let pos = |name: &str| recent.find(&format!("{name}</a>")).unwrap();
    assert!(pos("Early Bird") < pos("Tomorrow Person"), "{recent}");
    assert_eq!(page.status, StatusCode::OK);
    let today = page.body.split("id=\"today\"").nth(1).unwrap();
    let today = today.split("Recent patients").next().unwrap();
    assert!(today.contains("Early Bird"));
    assert!(today.contains(">04:00<"));
    assert!(today.contains("Night Owl"));
    assert!(today.contains(">23:00<"));
    assert!(!today.contains("Tomorrow Person"), "not today in Kolkata");
    assert!(today.contains("Dr. Vik Menon"));
    assert!(today.contains("Arrived"));
    assert!(
        page.body
            .contains(&format!("action=\"{}/patients\"", c.base))
    );
    // Recent patients list the newest registrations.
    assert!(page.body.contains("Tomorrow Person</a>"));

    let day = d
        .doctor
        .get(&format!(
            "{}/appointments?date=2026-03-02&doctor={doc}",
            c.base
        ))
        .await;
    assert!(day.body.contains("Tomorrow Person"));
    assert!(!day.body.contains("Night Owl"));
}

/// Reschedules through the form at `path` as `who`, to 2 March 2026.
async fn reschedule(
    who: &mut TestApp,
    path: &str,
    doctor: &str,
    time: &str,
    minutes: &str,
) -> support::Response {
    who.send_form(
        path,
        &[
            ("doctor", doctor),
            ("date", "2026-03-02"),
            ("time", time),
            ("minutes", minutes),
        ],
    )
    .await
}
