//! The role matrix of the front-desk routes: every route × every role → allowed or 403,
//! and a forbidden write changes nothing.

use axum::http::StatusCode;
use ward_core::Role;

use crate::support::desk::{Desk, FrontDesk as _, book, id_in, pay};

const ROLES: [Role; 4] = [Role::Owner, Role::Doctor, Role::Receptionist, Role::Billing];
const ALL: [bool; 4] = [true, true, true, true];

/// A write: path, form, whether this role may make it.
type Attempt = (String, Vec<(&'static str, String)>, bool);

/// Everything a write could have changed.
async fn snapshot(d: &Desk) -> (String, i64, i64, i64) {
    let c = &d.clinic;
    (
        d.owner
            .text(c, "SELECT group_concat(id || ' ' || status || ' ' || starts_at || ' ' || doctor_id, ';') FROM appointments")
            .await,
        d.owner.scalar(c, "SELECT count(*) FROM payments").await,
        d.owner.scalar(c, "SELECT count(*) FROM patients").await,
        d.owner.scalar(c, "SELECT count(*) FROM audit_log WHERE action NOT IN ('view', 'print')").await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_front_desk_route_allows_exactly_the_roles_of_the_matrix() {
    let mut d = Desk::new().await;
    let c = d.clinic.base.clone();
    let clinic = d.clinic.clone();
    let p = d.owner.add_patient(&clinic, "Asha Patel", "1").await;
    let doc = d.doctor_id.clone();
    let r = book(&mut d.owner, &clinic, p, &doc, "2026-03-02", "09:00", "15").await;
    let appt = id_in(r.location());
    let r = pay(&mut d.owner, &clinic, p, "cash", &[("Fee", "100")]).await;
    let payment = id_in(r.location());

    let gets: Vec<(String, [bool; 4])> = vec![
        (format!("{c}/"), ALL),
        (format!("{c}/appointments"), ALL),
        (
            format!("{c}/appointments?date=2026-03-02&doctor={doc}&q=asha"),
            ALL,
        ),
        (format!("{c}/appointments/{appt}"), ALL),
        (format!("{c}/payments"), ALL),
        (format!("{c}/payments?from=2026-03-01&to=2026-03-31"), ALL),
        (format!("{c}/payments/new"), [true, false, true, true]),
        (
            format!("{c}/payments/new?patient={p}&q=asha"),
            [true, false, true, true],
        ),
        (format!("{c}/payments/report"), [true, false, false, true]),
        (
            format!("{c}/payments/{payment}/receipt"),
            [true, false, true, true],
        ),
        (
            format!("{c}/payments/{payment}/refund"),
            [true, false, false, true],
        ),
        (
            format!("{c}/payments/{payment}/void"),
            [true, false, false, true],
        ),
    ];
    for (path, allowed) in &gets {
        for (i, role) in ROLES.iter().enumerate() {
            let r = d.browser(*role).get(path).await;
            let expected = if allowed[i] {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(r.status, expected, "GET {path} as {role}");
            if !allowed[i] {
                assert!(!r.body.contains("Asha Patel"), "GET {path} as {role} leaks");
            }
        }
    }

    // Writes: each role tries each; a fresh appointment per attempt so statuses start
    // from "booked".
    for (i, role) in ROLES.iter().enumerate() {
        let manage = [true, true, true, false][i];
        let record = [true, false, true, true][i];
        let hour = format!("{:02}:00", 10 + i);
        let r = book(&mut d.owner, &clinic, p, &doc, "2026-03-03", &hour, "15").await;
        let target = id_in(r.location());

        let before = snapshot(&d).await;
        let hour2 = format!("{:02}:30", 10 + i);
        let attempts: Vec<Attempt> = vec![
            (
                format!("{c}/appointments"),
                vec![
                    ("patient_id", p.to_string()),
                    ("doctor", doc.clone()),
                    ("date", "2026-03-04".into()),
                    ("time", hour.clone()),
                    ("minutes", "15".into()),
                ],
                manage,
            ),
            (
                format!("{c}/appointments"),
                vec![
                    ("full_name", format!("New Person {i}")),
                    ("sex", "other".into()),
                    ("doctor", doc.clone()),
                    ("date", "2026-03-06".into()),
                    ("time", hour.clone()),
                    ("minutes", "15".into()),
                ],
                manage,
            ),
            (
                format!("{c}/appointments/{target}/reschedule"),
                vec![
                    ("doctor", doc.clone()),
                    ("date", "2026-03-03".into()),
                    ("time", hour2),
                    ("minutes", "15".into()),
                ],
                manage,
            ),
            (
                format!("{c}/appointments/{target}/status"),
                vec![("status", "arrived".into())],
                manage,
            ),
            (
                format!("{c}/payments"),
                vec![
                    ("patient_id", p.to_string()),
                    ("method", "cash".into()),
                    ("item_description", "Fee".into()),
                    ("item_amount", "5".into()),
                ],
                record,
            ),
        ];
        for (path, form, allowed) in attempts {
            let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = d.browser(*role).send_form(&path, &fields).await;
            if allowed {
                assert_eq!(
                    r.status,
                    StatusCode::SEE_OTHER,
                    "POST {path} as {role}: {}",
                    r.body
                );
            } else {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "POST {path} as {role}");
            }
        }
        let after = snapshot(&d).await;
        if !manage && !record {
            assert_eq!(before, after, "{role} changed something");
        }
        if !manage {
            assert_eq!(before.0, after.0, "{role} changed the appointment book");
            assert_eq!(before.2, after.2, "{role} registered a patient");
        }
        if !record {
            assert_eq!(before.1, after.1, "{role} recorded a payment");
        }
        if manage && record {
            assert_eq!(after.3, before.3 + 6, "one audit row per write ({role})");
        }
    }
}
