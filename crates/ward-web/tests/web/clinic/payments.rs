//! Payments: minor units, receipts and their numbers, the collection report.

use axum::http::StatusCode;
use ward_clinic::PatientId;

use crate::support::TestApp;
use crate::support::desk::{Desk, FrontDesk as _, SignUp as _, book, id_in, pay, post_payment};

/// A front desk whose clinic keeps Kolkata time, with the patient Asha Patel (phone
/// `phone`); her id.
async fn desk_in_kolkata(phone: &str) -> (Desk, i64) {
    let d = Desk::new().await;
    d.owner.set_timezone(&d.clinic, "Asia/Kolkata").await;
    let p = d.owner.add_patient(&d.clinic, "Asha Patel", phone).await;
    (d, p)
}

/// The amount of the payment `id`, in minor units, as stored.
async fn amount_minor(d: &Desk, id: i64) -> i64 {
    d.owner
        .scalar(
            &d.clinic,
            &format!("SELECT amount_minor FROM payments WHERE id = {id}"),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn amounts_are_exact_minor_units_and_the_receipt_is_itemized_and_audited_when_printed() {
    let (mut d, p) = desk_in_kolkata("98450 11111").await;
    let c = &d.clinic;
    let r = pay(
        &mut d.billing,
        c,
        p,
        "mobile",
        &[("Dressing", "0.10"), ("Gauze", "0.20"), ("", "")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let id = id_in(r.location());
    assert_eq!(amount_minor(&d, id).await, 30);
    assert_eq!(
        d.owner
            .scalar(
                c,
                &format!("SELECT sum(amount_minor) FROM payment_items WHERE payment_id = {id}")
            )
            .await,
        30
    );

    let before = d
        .owner
        .scalar(c, "SELECT count(*) FROM audit_log WHERE action = 'print'")
        .await;
    let receipt = d.billing.get(r.location()).await;
    assert_eq!(receipt.status, StatusCode::OK);
    receipt.assert_contains("id=\"receipt-total\">₹0.30<");
    assert!(receipt.body.contains("Dressing"));
    assert!(receipt.body.contains("₹0.10"));
    assert!(receipt.body.contains("Mobile / UPI"));
    assert!(receipt.body.contains("12 Canal Road"), "letterhead");
    assert!(receipt.body.contains("General practice"));
    assert!(receipt.body.contains("Bala Billing"));
    // Recorded at 09:00 UTC = 14:30 in Kolkata.
    assert!(receipt.body.contains("1 March 2026, 14:30"));
    let after = d
        .owner
        .scalar(c, "SELECT count(*) FROM audit_log WHERE action = 'print'")
        .await;
    assert_eq!(after, before + 1);
    assert_eq!(
        d.owner.scalar(c, &format!("SELECT count(*) FROM audit_log WHERE action = 'create' AND entity_type = 'payment' AND entity_id = '{id}'")).await,
        1
    );
    let detail = d
        .owner
        .text(c, &format!("SELECT detail FROM audit_log WHERE action = 'create' AND entity_type = 'payment' AND entity_id = '{id}'"))
        .await;
    assert!(
        detail.contains("₹0.30 by mobile"),
        "money as people read it: {detail}"
    );

    let r = pay(
        &mut d.billing,
        c,
        p,
        "cash",
        &[("Consultation", "1,250.5"), ("Tablets", "99.99")],
    )
    .await;
    let id = id_in(r.location());
    assert_eq!(amount_minor(&d, id).await, 135_049);

    // Bad amounts, methods and patients are shown next to their fields, input kept.
    let count = d.owner.scalar(c, "SELECT count(*) FROM payments").await;
    for (patient, method, amount) in [
        (p.to_string(), "cash", "abc"),
        (p.to_string(), "cash", "1.234"),
        (p.to_string(), "cash", "-5"),
        (p.to_string(), "bitcoin", "5"),
        ("99999".into(), "cash", "5"),
        ("x".into(), "cash", "5"),
        (p.to_string(), "cash", "99999999999999999999"),
    ] {
        let r = d
            .billing
            .send_form(
                &format!("{}/payments", c.base),
                &[
                    ("patient_id", &patient),
                    ("method", method),
                    ("item_description", "Fee"),
                    ("item_amount", amount),
                ],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{patient} {method} {amount}"
        );
        assert!(r.body.contains("class=\"field-error\""));
        assert!(r.body.contains(&format!("value=\"{amount}\"")) || amount.contains('<'));
    }
    let r = post_payment(&mut d.billing, c, p, &[("method", "cash")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Add at least one item"));
    let r = post_payment(
        &mut d.billing,
        c,
        p,
        &[
            ("visit_id", "5"),
            ("method", "cash"),
            ("item_description", "Fee"),
            ("item_amount", "5"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("There is no such visit."));
    assert_eq!(
        d.owner.scalar(c, "SELECT count(*) FROM payments").await,
        count
    );

    // The patient page's functions.
    let tenant = d.owner.app.tenants.get(c.id).await.unwrap();
    let (list, account) = tenant
        .with(|conn| {
            (
                ward_clinic::payments::for_patient(&conn, PatientId::new(p)).unwrap(),
                ward_clinic::payments::account(&conn, PatientId::new(p)).unwrap(),
            )
        })
        .await;
    assert_eq!(list.len(), 2);
    assert_eq!(account.paid_minor, 135_079);
    assert_eq!(account.charged_minor, 0, "no visit fees yet");
    assert_eq!(account.balance_minor(), -135_079);
}

#[tokio::test(flavor = "multi_thread")]
async fn receipt_numbers_are_sequential_in_each_clinic_and_independent_between_clinics() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    let p = d.owner.add_patient(c, "Asha Patel", "1").await;
    let mut other = d.owner.fresh_browser();
    let oc = other.clinic("Other Clinic", "owner@other.test").await;
    let q = other.add_patient(&oc, "Omar Other", "2").await;

    let mut numbers = Vec::new();
    for i in 0..3 {
        let who = if i % 2 == 0 {
            &mut d.receptionist
        } else {
            &mut d.owner
        };
        let r = pay(who, c, p, "cash", &[("Fee", "10")]).await;
        let page = d.owner.get(r.location()).await;
        numbers.push(receipt_number(&page.body));
        if i == 0 {
            let r = pay(&mut other, &oc, q, "card", &[("Fee", "20")]).await;
            let page = other.get(r.location()).await;
            assert_eq!(receipt_number(&page.body), 1);
        }
    }
    assert_eq!(numbers, [1, 2, 3]);
    let r = pay(&mut other, &oc, q, "card", &[("Fee", "20")]).await;
    assert_eq!(receipt_number(&other.get(r.location()).await.body), 2);
}

fn receipt_number(body: &str) -> i64 {
    let start = body.find("id=\"receipt-number\">").unwrap() + "id=\"receipt-number\">".len();
    body[start..].split('<').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_collection_report_totals_by_method_and_by_staff_member() {
    let (mut d, p) = desk_in_kolkata("1").await;
    let c = &d.clinic;
    pay(
        &mut d.owner,
        c,
        p,
        "cash",
        &[("Consultation", "500"), ("Dressing", "0.10")],
    )
    .await;
    pay(
        &mut d.receptionist,
        c,
        p,
        "cash",
        &[("Consultation", "0.20")],
    )
    .await;
    pay(&mut d.billing, c, p, "card", &[("Lab", "1200")]).await;
    // The next day in Kolkata (19:00 UTC = 00:30 on the 2nd).
    d.owner.clock.advance(chrono::TimeDelta::hours(10));
    pay(&mut d.billing, c, p, "bank_transfer", &[("Lab", "7")]).await;

    let path = format!("{}/payments/report?from=2026-03-01&to=2026-03-01", c.base);
    let page = d.billing.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("id=\"collection-total\">₹1,700.30<");
    let methods = section(&page.body, "id=\"by-method\"");
    assert!(
        methods.contains("<td>Cash</td><td class=\"num\">2</td><td class=\"num\">₹500.30</td>"),
        "{methods}"
    );
    assert!(
        methods.contains("<td>Card</td><td class=\"num\">1</td><td class=\"num\">₹1,200.00</td>")
    );
    assert!(!methods.contains("Bank transfer"));
    let staff = section(&page.body, "id=\"by-staff\"");
    assert!(
        staff
            .contains("<td>Dr. Ana Rao</td><td class=\"num\">1</td><td class=\"num\">₹500.10</td>"),
        "{staff}"
    );
    assert!(
        staff.contains("<td>Rita Desk</td><td class=\"num\">1</td><td class=\"num\">₹0.20</td>")
    );
    assert!(
        staff.contains(
            "<td>Bala Billing</td><td class=\"num\">1</td><td class=\"num\">₹1,200.00</td>"
        )
    );

    let page = d
        .owner
        .get(&format!(
            "{}/payments?from=2026-03-01&to=2026-03-02",
            c.base
        ))
        .await;
    assert!(page.body.contains("id=\"collection-total\">₹1,707.30<"));
    assert!(page.body.contains("Bank transfer"));
    assert!(page.body.contains("Mon 2 Mar 2026"));
    // Receptionists and doctors see the list but not the report.
    let page = d
        .receptionist
        .get(&format!(
            "{}/payments?from=2026-03-01&to=2026-03-02",
            c.base
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Asha Patel"));
    assert!(!page.body.contains("collection-total"));
    // Hostile ranges are not errors.
    let page = d
        .owner
        .get(&format!("{}/payments?from=garbage&to=1900-01-01", c.base))
        .await;
    assert_eq!(page.status, StatusCode::OK);
}

fn section<'a>(body: &'a str, marker: &str) -> &'a str {
    let start = body.find(marker).unwrap();
    let rest = &body[start..];
    &rest[..rest.find("</table>").unwrap()]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_patient_page_shows_appointments_payments_and_who_accessed_it() {
    let mut owner = TestApp::new().await;
    let c = owner.clinic("Sunrise", "owner@example.com").await;
    let p = owner.add_patient(&c, "Lakshmi Menon", "98450 11111").await;
    let doctor_id = owner.user_id("owner@example.com").await;
    let r = book(&mut owner, &c, p, &doctor_id, "2026-03-05", "10:30", "15").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut billing = owner
        .staff(
            &c,
            ward_core::Role::Billing,
            "bill@example.com",
            "Bea Billing",
        )
        .await;
    let r = post_payment(
        &mut billing,
        &c,
        p,
        &[
            ("method", "cash"),
            ("item_description", "Consultation"),
            ("item_amount", "450"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let billing_view = billing.get(&format!("{}/patients/{p}", c.base)).await;
    owner.app.audit.flush().await;

    let page = owner.get(&format!("{}/patients/{p}", c.base)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("2026-03-05 10:30"),
        "the appointment is listed"
    );
    page.assert_contains("Charged ₹0.00 · Paid ₹450.00 · In credit ₹450.00");
    assert!(page.body.contains("No. 1"));
    assert!(
        page.body.contains("Accessed by") && page.body.contains("Bea Billing"),
        "owners see who touched the record"
    );

    let page = billing_view;
    assert!(
        page.body
            .contains("Charged ₹0.00 · Paid ₹450.00 · In credit ₹450.00")
    );
    assert!(
        !page.body.contains("Accessed by"),
        "only owners see the access list"
    );
    assert!(
        !page.body.contains("Book an appointment"),
        "billing cannot book"
    );
}
