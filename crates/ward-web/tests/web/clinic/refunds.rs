//! Refunds and voids: their own receipt numbers, the rules, the balance and the
//! collection report, who may make them, and the audit log.

use axum::http::StatusCode;
use ward_clinic::PatientId;

use crate::support::desk::{Clinic, Desk, FrontDesk as _, id_in, pay};
use crate::support::{self, TestApp};

async fn refund(
    who: &mut TestApp,
    c: &Clinic,
    payment: i64,
    amount: &str,
    method: &str,
    reason: &str,
) -> support::Response {
    who.send_form(
        &format!("{}/payments/{payment}/refund", c.base),
        &[("amount", amount), ("method", method), ("reason", reason)],
    )
    .await
}

async fn void(who: &mut TestApp, c: &Clinic, payment: i64, reason: &str) -> support::Response {
    who.send_form(
        &format!("{}/payments/{payment}/void", c.base),
        &[("reason", reason)],
    )
    .await
}

fn section<'a>(body: &'a str, marker: &str) -> &'a str {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {body}"));
    let rest = &body[start..];
    &rest[..rest.find("</table>").unwrap()]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refund_changes_the_balance_and_the_report() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    d.owner.set_timezone(c, "Asia/Kolkata").await;
    let p = d.owner.add_patient(c, "Asha Patel", "98450 11111").await;
    let r = pay(
        &mut d.receptionist,
        c,
        p,
        "cash",
        &[("Consultation", "800"), ("Dressing", "200")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let first = id_in(r.location());
    let r = pay(&mut d.billing, c, p, "card", &[("Lab", "300")]).await;
    let second = id_in(r.location());

    // A partial refund, by the billing desk, given back in cash.
    let form = d
        .billing
        .get(&format!("{}/payments/{first}/refund", c.base))
        .await;
    assert_eq!(form.status, StatusCode::OK);
    form.assert_contains("id=\"remaining\">₹1,000.00<");
    let r = refund(
        &mut d.billing,
        c,
        first,
        "250.50",
        "cash",
        "Dressing not needed after all",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().contains("/corrections/"), "{}", r.location());
    let refund_id = id_in(r.location());
    let receipt = d.billing.get(r.location()).await;
    assert_eq!(receipt.status, StatusCode::OK);
    assert!(
        receipt
            .body
            .contains("Refund No. <span id=\"receipt-number\">3<"),
        "its own number, after the payments' 1 and 2: {}",
        receipt.body
    );
    assert!(receipt.body.contains("id=\"payment-receipt-number\">1<"));
    assert!(receipt.body.contains("id=\"receipt-total\">₹250.50<"));
    assert!(receipt.body.contains("Dressing not needed after all"));
    assert!(receipt.body.contains("Asha Patel"));
    assert!(receipt.body.contains("12 Canal Road"), "letterhead");

    // The payment's receipt shows the refund and what remains.
    let page = d
        .billing
        .get(&format!("{}/payments/{first}/receipt", c.base))
        .await;
    let fixes = section(&page.body, "id=\"corrections\"");
    assert!(fixes.contains("No. 3"), "{fixes}");
    assert!(fixes.contains("Refund"));
    assert!(fixes.contains("₹250.50"));
    assert!(
        fixes.contains("id=\"receipt-remaining\">₹749.50<"),
        "{fixes}"
    );
    assert!(page.body.contains(&format!("/payments/{first}/refund")));
    assert!(
        !page.body.contains(&format!("/payments/{first}/void")),
        "a payment refunded in part cannot be voided"
    );

    // The patient's balance counts it.
    let page = d.owner.get(&format!("{}/patients/{p}", c.base)).await;
    page.assert_contains("Charged ₹0.00 · Paid ₹1,049.50 · In credit ₹1,049.50");
    let tenant = d.owner.app.tenants.get(c.id).await.unwrap();
    let account = tenant
        .with(move |conn| ward_clinic::payments::account(&conn, PatientId::new(p)).unwrap())
        .await;
    assert_eq!(account.paid_minor, 104_950);
    assert_eq!(account.refunded_minor, 25_050);

    // The day's report: gross, refunds, voids and net, per method.
    let path = format!("{}/payments/report?from=2026-03-01&to=2026-03-01", c.base);
    let page = d.billing.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("id=\"collection-total\">₹1,049.50<");
    assert!(page.body.contains("id=\"collection-gross\">₹1,300.00<"));
    assert!(page.body.contains("id=\"collection-refunds\">₹250.50<"));
    assert!(page.body.contains("id=\"collection-voids\">₹0.00<"));
    let methods = section(&page.body, "id=\"by-method\"");
    assert!(
        methods.contains(
            "<td>Cash</td><td class=\"num\">1</td><td class=\"num\">₹1,000.00</td><td class=\"num\">₹250.50</td><td class=\"num\">₹0.00</td><td class=\"num\">₹749.50</td>"
        ),
        "{methods}"
    );
    assert!(methods.contains(
        "<td>Card</td><td class=\"num\">1</td><td class=\"num\">₹300.00</td><td class=\"num\">₹0.00</td><td class=\"num\">₹0.00</td><td class=\"num\">₹300.00</td>"
    ));

    // A void of the card payment, also its own receipt.
    let r = void(&mut d.owner, c, second, "Entered twice by mistake").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let void_id = id_in(r.location());
    let receipt = d.owner.get(r.location()).await;
    receipt.assert_contains("Void No. <span id=\"receipt-number\">4<");
    assert!(receipt.body.contains("id=\"receipt-total\">₹300.00<"));
    let page = d.billing.get(&path).await;
    page.assert_contains("id=\"collection-total\">₹749.50<");
    assert!(page.body.contains("id=\"collection-voids\">₹300.00<"));
    let methods = section(&page.body, "id=\"by-method\"");
    assert!(methods.contains(
        "<td>Card</td><td class=\"num\">1</td><td class=\"num\">₹300.00</td><td class=\"num\">₹0.00</td><td class=\"num\">₹300.00</td><td class=\"num\">₹0.00</td>"
    ), "{methods}");
    let page = d.owner.get(&format!("{}/patients/{p}", c.base)).await;
    page.assert_contains("Charged ₹0.00 · Paid ₹749.50 · In credit ₹749.50");
    // The sequence goes on after them, and a number cannot be taken twice across the two
    // tables, even by a direct write.
    let r = pay(&mut d.billing, c, p, "cash", &[("Lab", "1")]).await;
    let next = d.billing.get(r.location()).await;
    next.assert_contains("id=\"receipt-number\">5<");
    let tenant = d.owner.app.tenants.get(c.id).await.unwrap();
    let clash = tenant
        .with(move |conn| {
            conn.execute(
                "INSERT INTO payments (receipt_number, patient_id, amount_minor, currency, method, recorded_by_id, recorded_by_name, received_at) \
                 VALUES (3, ?1, 100, 'INR', 'cash', 'x', 'x', '2026-03-01T10:00:00.000Z')",
                [p],
            )
            .map(drop)
        })
        .await;
    assert!(
        clash
            .unwrap_err()
            .to_string()
            .contains("receipt number already used"),
        "refund 3's number"
    );
    // The list marks them, and lists the corrections.
    let page = d
        .receptionist
        .get(&format!(
            "{}/payments?from=2026-03-01&to=2026-03-01",
            c.base
        ))
        .await;
    page.assert_contains("Refunded ₹250.50");
    assert!(page.body.contains("Voided"));
    let list = section(&page.body, "<table id=\"corrections\"");
    assert!(list.contains("No. 3") && list.contains("No. 4"), "{list}");

    // Audited: ids and money as people read it, never the reason's text nor the name.
    for (kind, id, expected) in [
        (
            "refund",
            refund_id,
            format!("refund receipt 3 of payment {first} (receipt 1), ₹250.50 by cash"),
        ),
        (
            "void",
            void_id,
            format!("void receipt 4 of payment {second} (receipt 2), ₹300.00 by card"),
        ),
    ] {
        let detail = d
            .owner
            .text(c, &format!("SELECT detail FROM audit_log WHERE action = 'create' AND entity_type = '{kind}' AND entity_id = '{id}'"))
            .await;
        assert!(detail.contains(&expected), "{detail}");
        assert!(
            detail.contains(&format!("reason kept on {kind} {id}")),
            "{detail}"
        );
    }
    let leaked = d
        .owner
        .scalar(
            c,
            "SELECT count(*) FROM audit_log WHERE coalesce(detail, '') || coalesce(reason, '') || coalesce(diff, '') LIKE '%mistake%' \
             OR coalesce(detail, '') || coalesce(reason, '') || coalesce(diff, '') LIKE '%Dressing not needed%' \
             OR coalesce(detail, '') LIKE '%Asha%'",
        )
        .await;
    assert_eq!(leaked, 0, "no reason text or patient name in the audit log");
    // The audit page shows them.
    let page = d
        .owner
        .get(&format!("{}/audit?action=create", c.base))
        .await;
    page.assert_contains("₹250.50 by cash");
}

/// Corrections and their audit rows.
async fn count(d: &Desk) -> i64 {
    let c = &d.clinic;
    d.owner
        .scalar(c, "SELECT count(*) FROM payment_corrections")
        .await
        + d.owner
            .scalar(
                c,
                "SELECT count(*) FROM audit_log WHERE action = 'create' AND entity_type IN ('refund', 'void')",
            )
            .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_refunds_and_voids_are_refused_on_the_form_and_write_nothing() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    let p = d.owner.add_patient(c, "Asha Patel", "1").await;
    let r = pay(&mut d.billing, c, p, "cash", &[("Fee", "100")]).await;
    let paid = id_in(r.location());
    let r = pay(&mut d.billing, c, p, "card", &[("Fee", "40")]).await;
    let other = id_in(r.location());

    for (amount, method, reason, field) in [
        ("100.01", "cash", "Too much", "amount-error"),
        ("0", "cash", "Nothing", "amount-error"),
        ("-5", "cash", "Negative", "amount-error"),
        ("abc", "cash", "Not a number", "amount-error"),
        ("", "cash", "Empty", "amount-error"),
        ("10", "cash", "   ", "reason-error"),
        ("10", "cash", "", "reason-error"),
        ("10", "bitcoin", "Odd method", "method-error"),
    ] {
        let r = refund(&mut d.billing, c, paid, amount, method, reason).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{amount} {method} {reason:?}: {}",
            r.body
        );
        assert!(
            r.body.contains(&format!("id=\"{field}\"")),
            "{amount} {reason:?}: {}",
            r.body
        );
        assert!(
            r.body.contains(&format!("value=\"{amount}\"")),
            "input kept"
        );
    }
    let r = refund(&mut d.billing, c, paid, "1", "cash", &"x".repeat(501)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = void(&mut d.billing, c, paid, "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"reason-error\""));
    assert_eq!(count(&d).await, 0, "nothing written");

    // Refund in two parts up to the whole; a third is refused, as is a void.
    let r = refund(&mut d.billing, c, paid, "60", "cash", "Part one").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = refund(&mut d.billing, c, paid, "40.01", "cash", "Too much").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_contains("At most ₹40.00 remains");
    let r = void(&mut d.billing, c, paid, "Cannot").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    r.assert_contains("refund the remaining ₹40.00 instead");
    let r = refund(&mut d.billing, c, paid, "40", "card", "Part two").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = refund(&mut d.billing, c, paid, "0.01", "cash", "More").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    r.assert_contains("refunded in full");
    let written = count(&d).await;
    assert_eq!(written, 4, "two refunds, two audit rows");

    // Void once; twice, or a refund after it, is refused.
    let r = void(&mut d.billing, c, other, "Mistake").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = void(&mut d.billing, c, other, "Again").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    r.assert_contains("was voided");
    let r = refund(&mut d.billing, c, other, "1", "cash", "After void").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        !r.body.contains("name=\"reason\""),
        "no form to fill in again"
    );
    let page = d
        .billing
        .get(&format!("{}/payments/{other}/refund", c.base))
        .await;
    page.assert_contains("id=\"blocked\"");
    assert!(!page.body.contains("name=\"reason\""));
    assert_eq!(count(&d).await, written + 2);

    // No such payment: 404; the payments themselves never changed.
    let r = refund(&mut d.billing, c, 99_999, "1", "cash", "Nobody").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = d.billing.get(&format!("{}/payments/x/void", c.base)).await;
    assert!(r.status.is_client_error());
    assert_eq!(
        d.owner
            .scalar(c, "SELECT sum(amount_minor) FROM payments")
            .await,
        14_000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_owners_and_billing_staff_refund_or_void() {
    let mut d = Desk::new().await;
    let c = &d.clinic.clone();
    let p = d.owner.add_patient(c, "Asha Patel", "1").await;
    let r = pay(&mut d.receptionist, c, p, "cash", &[("Fee", "100")]).await;
    let paid = id_in(r.location());
    let receipt = d.receptionist.get(r.location()).await;
    assert!(
        !receipt.body.contains("/refund\""),
        "no refund link for the desk"
    );
    for who in [ward_core::Role::Receptionist, ward_core::Role::Doctor] {
        let b = d.browser(who);
        let r = b.get(&format!("{}/payments/{paid}/refund", c.base)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who:?}");
        let r = refund(b, c, paid, "1", "cash", "No").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who:?}");
        let r = void(b, c, paid, "No").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who:?}");
    }
    assert_eq!(
        d.owner
            .scalar(c, "SELECT count(*) FROM payment_corrections")
            .await,
        0
    );
    let receipt = d
        .owner
        .get(&format!("{}/payments/{paid}/receipt", c.base))
        .await;
    assert!(receipt.body.contains(&format!("/payments/{paid}/refund")));
    assert!(receipt.body.contains(&format!("/payments/{paid}/void")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_page_shows_amounts_through_the_money_formatter() {
    let mut d = Desk::new().await;
    let c = &d.clinic;
    let tenant = d.owner.app.tenants.get(c.id).await.unwrap();
    let at = ward_core::Clock::now(&d.owner.clock);
    tenant
        .with(move |conn| {
            use ward_clinic::audit::{self, Action, Actor, Diff, Entry};
            audit::in_transaction(&conn, |tx| {
                let e = Entry::new(
                    at,
                    Actor::System {
                        name: "test".into(),
                    },
                    Action::Update,
                )
                .entity("visit", 1)
                .diff(
                    Diff::new()
                        .field("fee_minor", 50_000, 65_050)
                        .field("advice", "rest", "fluids"),
                );
                audit::record(&tx, &e)?;
                let e = Entry::new(
                    at,
                    Actor::System {
                        name: "test".into(),
                    },
                    Action::Update,
                )
                .entity("visit", 2)
                .diff(Diff::new().field("fee_minor", serde_json::Value::Null, 120));
                audit::record(&tx, &e)
            })
            .unwrap();
        })
        .await;
    let page = d
        .owner
        .get(&format!("{}/audit?action=update", c.base))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("<strong>fee_minor</strong>: <del>₹500.00</del> → <ins>₹650.50</ins>");
    assert!(
        page.body
            .contains("<strong>fee_minor</strong>: <del>—</del> → <ins>₹1.20</ins>")
    );
    assert!(page.body.contains("<del>rest</del> → <ins>fluids</ins>"));
}
