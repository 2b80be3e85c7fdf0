//! A member of clinic B never reaches clinic A's appointments, payments or receipts:
//! every such address is a 404 and no response carries A's canaries.

use axum::http::StatusCode;
use ward_core::Role;

use crate::support::TestApp;
use crate::support::desk::{
    Clinic, Desk, FrontDesk as _, SignUp as _, book, id_in, pay, post_payment,
};

const CANARIES: [&str; 3] = ["CANARY-PATIENT-A", "CANARY-ITEM-A", "CANARY-REASON-A"];

#[tokio::test(flavor = "multi_thread")]
async fn a_member_of_another_clinic_gets_404s_and_never_a_canary() {
    let mut d = Desk::new().await;
    let a = d.clinic.clone();
    let doc = d.doctor_id.clone();
    let mut patients = Vec::new();
    for i in 0..5 {
        let p = d
            .owner
            .add_patient(&a, &format!("CANARY-PATIENT-A {i}"), "5550001")
            .await;
        patients.push(p);
        let r = d
            .receptionist
            .send_form(
                &format!("{}/appointments", a.base),
                &[
                    ("patient_id", &p.to_string()),
                    ("doctor", &doc),
                    ("date", "2026-03-01"),
                    ("time", &format!("1{i}:00")),
                    ("minutes", "15"),
                    ("reason", "CANARY-REASON-A"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let r = pay(&mut d.billing, &a, p, "cash", &[("CANARY-ITEM-A", "10")]).await;
        id_in(r.location());
    }
    let r = book(
        &mut d.owner,
        &a,
        patients[0],
        &doc,
        "2026-03-02",
        "09:00",
        "15",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    // Clinic B: its own owner and a billing clerk; B has one patient of its own and no
    // appointments or payments, so A's row ids do not exist there.
    let mut b_owner = d.owner.fresh_browser();
    let b = b_owner.clinic("Bay Clinic", "owner@bay.test").await;
    b_owner.add_patient(&b, "Bay Person", "1").await;
    let mut b_billing = b_owner
        .staff(&b, Role::Billing, "bill@bay.test", "Bay Billing")
        .await;
    let before = front_desk_rows(&d.owner, &a).await;

    let mut requests = 0;
    for who in [&mut b_owner, &mut b_billing] {
        for path in [
            format!("{}/", a.base),
            format!("{}/appointments", a.base),
            format!("{}/appointments?date=2026-03-01", a.base),
            format!("{}/payments", a.base),
            format!("{}/payments/report", a.base),
            format!("{}/payments/new", a.base),
        ] {
            let r = who.get(&path).await;
            requests += 1;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
            assert_no_canary(&r.body, &path);
        }
        for id in 1..=150 {
            for path in [
                format!("{}/appointments/{id}", a.base),
                format!("{}/payments/{id}/receipt", a.base),
                format!("{}/appointments/{id}", b.base),
                format!("{}/payments/{id}/receipt", b.base),
            ] {
                let r = who.get(&path).await;
                requests += 1;
                let forbidden_anyway = r.status == StatusCode::FORBIDDEN && path.contains(&b.base);
                assert!(
                    r.status == StatusCode::NOT_FOUND || forbidden_anyway,
                    "{path}: {}",
                    r.status
                );
                assert_no_canary(&r.body, &path);
            }
            // Using A's patient ids inside B shows nothing of A.
            for path in [
                format!("{}/payments/new?patient={id}", b.base),
                format!("{}/appointments?patient={id}&q=CANARY", b.base),
            ] {
                let r = who.get(&path).await;
                requests += 1;
                assert_no_canary(&r.body, &path);
            }
            for (path, form) in [
                (
                    format!("{}/appointments/{id}/status", a.base),
                    vec![("status", "cancelled")],
                ),
                (
                    format!("{}/appointments/{id}/status", b.base),
                    vec![("status", "cancelled")],
                ),
                (
                    format!("{}/appointments/{id}/reschedule", b.base),
                    vec![
                        ("doctor", doc.as_str()),
                        ("date", "2026-03-01"),
                        ("time", "10:00"),
                        ("minutes", "15"),
                    ],
                ),
            ] {
                let r = who.send_form(&path, &form).await;
                requests += 1;
                assert!(
                    matches!(r.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                    "{path}: {}",
                    r.status
                );
                assert_no_canary(&r.body, &path);
            }
        }
    }
    // A payment in B naming A's patient ids is refused there (no such patient).
    let r = post_payment(
        &mut b_owner,
        &b,
        patients[4],
        &[
            ("method", "cash"),
            ("item_description", "Fee"),
            ("item_amount", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_no_canary(&r.body, "payment");
    assert!(requests > 2500, "{requests}");
    let after = front_desk_rows(&d.owner, &a).await;
    assert_eq!(before, after);
}

/// What the clinic's front desk has written: appointments and their statuses,
/// payments and audit rows.
async fn front_desk_rows(owner: &TestApp, clinic: &Clinic) -> (i64, String, i64, i64) {
    (
        owner
            .scalar(clinic, "SELECT count(*) FROM appointments")
            .await,
        owner
            .text(clinic, "SELECT group_concat(status) FROM appointments")
            .await,
        owner.scalar(clinic, "SELECT count(*) FROM payments").await,
        owner.scalar(clinic, "SELECT count(*) FROM audit_log").await,
    )
}

fn assert_no_canary(body: &str, path: &str) {
    for c in CANARIES {
        assert!(!body.contains(c), "{path} shows {c}");
    }
}
