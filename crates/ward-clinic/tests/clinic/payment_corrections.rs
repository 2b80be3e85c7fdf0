//! Migration 0008 on a clinic that already took payments, and the correction rules
//! against the database.

use ward_clinic::ClinicError;
use ward_clinic::audit::{Action, Entry};
use ward_clinic::ids::{PatientId, PaymentId};
use ward_clinic::payments::{
    self, CorrectionHeader, CorrectionKind, Method, NewCorrection, PaymentHeader, Recorder,
};

use crate::support::{doctor, in_new_clinic, migrated_from, start};

fn refund(payment_id: PaymentId, kind: CorrectionKind, amount_minor: i64) -> NewCorrection {
    NewCorrection {
        payment_id,
        kind,
        amount_minor,
        method: None,
        reason: "overcharged".into(),
        recorded_by_id: "u1".into(),
        recorded_by_name: "Bala Billing".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrections_come_to_an_existing_clinic_and_its_receipt_numbers_go_on() {
    migrated_from(
        "payment_corrections",
        "INSERT INTO patients (number, full_name, sex, created_at, updated_at) VALUES (1, 'Old Patient', 'female', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
                 INSERT INTO payments (receipt_number, patient_id, amount_minor, currency, method, reference, recorded_by_id, recorded_by_name, received_at) VALUES (1, 1, 20000, 'INR', 'card', '', 'd', 'Dr Old', '2026-01-01T00:00:00.000Z');
                 INSERT INTO payments (receipt_number, patient_id, amount_minor, currency, method, reference, recorded_by_id, recorded_by_name, received_at) VALUES (2, 1, 5000, 'INR', 'cash', '', 'd', 'Dr Old', '2026-01-01T00:00:00.000Z');",
        |conn| {
            let entry = || Entry::new(start(), doctor(), Action::Create);
            let p = payments::get(&conn, PaymentId::new(1)).unwrap();
            assert_eq!((p.refunded_minor, p.voided, p.remaining_minor()), (0, false, 20_000));

            let id = payments::correct(&conn, &refund(PaymentId::new(1), CorrectionKind::Refund, 7_500), start(), entry())
                .unwrap();
            let c = payments::get_correction(&conn, id).unwrap();
            assert_eq!(c.receipt_number, 3, "after the existing receipts");
            assert_eq!(c.method, payments::Method::Card, "the payment's method by default");
            assert_eq!(c.payment_receipt_number, 1);
            assert_eq!(payments::get(&conn, PaymentId::new(1)).unwrap().remaining_minor(), 12_500);

            // Over-refund, a void after a refund, a void twice: refused, nothing written.
            let over = payments::correct(&conn, &refund(PaymentId::new(1), CorrectionKind::Refund, 12_501), start(), entry());
            assert!(matches!(over, Err(ClinicError::Invalid { field: "amount", .. })), "{over:?}");
            let void = payments::correct(&conn, &refund(PaymentId::new(1), CorrectionKind::Void, 0), start(), entry());
            assert!(matches!(void, Err(ClinicError::Conflict(_))), "{void:?}");
            payments::correct(&conn, &refund(PaymentId::new(2), CorrectionKind::Void, 0), start(), entry()).unwrap();
            let twice = payments::correct(&conn, &refund(PaymentId::new(2), CorrectionKind::Void, 0), start(), entry());
            assert!(matches!(twice, Err(ClinicError::Conflict(_))), "{twice:?}");
            let mut none = refund(PaymentId::new(1), CorrectionKind::Refund, 1);
            none.reason = " \n ".into();
            assert!(matches!(
                payments::correct(&conn, &none, start(), entry()),
                Err(ClinicError::Invalid { field: "reason", .. })
            ));
            let count = conn
                .row("SELECT count(*) FROM payment_corrections", (), |r| r.get::<i64>(0))
                .unwrap()
                .unwrap();
            assert_eq!(count, 2);
            // The patient's access report names both corrections, each by its own kind.
            let void_id: i64 = conn
                .row("SELECT id FROM payment_corrections WHERE kind = 'void'", (), |r| r.get(0))
                .unwrap()
                .unwrap();
            let mut named: Vec<_> = ward_clinic::audit::accessed_by_patient(&conn, PatientId::new(1), 50)
                .unwrap()
                .into_iter()
                .map(|a| (a.entity_type.unwrap_or_default(), a.entity_id.unwrap_or_default()))
                .collect();
            named.sort();
            assert_eq!(
                named,
                [("refund".to_owned(), id.to_string()), ("void".to_owned(), void_id.to_string())]
            );

            // The balance and the report subtract both.
            let account = payments::account(&conn, PatientId::new(1)).unwrap();
            assert_eq!((account.paid_minor, account.refunded_minor), (12_500, 12_500));
            let list = payments::between(&conn, start() - chrono::TimeDelta::days(365), start() + chrono::TimeDelta::days(1)).unwrap();
            let fixes = payments::corrections_between(&conn, start(), start() + chrono::TimeDelta::days(1)).unwrap();
            let report = payments::collection(&list, &fixes, chrono_tz::Tz::UTC);
            assert_eq!(
                (report.total.amount_minor, report.total.refunds_minor, report.total.voids_minor, report.total.net_minor()),
                (25_000, 7_500, 5_000, 12_500)
            );
            // A void's row cannot be doubled even by a direct write.
            assert!(
                conn.execute(
                    "INSERT INTO payment_corrections (payment_id, kind, receipt_number, amount_minor, currency, method, reason, recorded_by_id, recorded_by_name, recorded_at) \
                     VALUES (2, 'void', 99, 5000, 'INR', 'cash', 'again', 'u', 'u', '2026-03-01T09:00:00.000Z')",
                    (),
                )
                .is_err()
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_payments_and_corrections_are_read_in_the_clinics_currency() {
    in_new_clinic("Typed Clinic", |conn| {
        conn.execute_batch(
            "INSERT INTO patients (number, full_name, sex, created_at, updated_at) VALUES (1, 'Typed Patient', 'female', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');",
        )
        .unwrap();
        let entry = || Entry::new(start(), doctor(), Action::Create);
        let by = Recorder {
            id: "u1".into(),
            name: "Bala Billing".into(),
        };
        let items = |rows: &[(&str, &str)]| -> Vec<(String, String)> {
            rows.iter().map(|(d, a)| ((*d).to_owned(), (*a).to_owned())).collect()
        };

        // The items are judged even when the rest of the form was refused; nothing is written then.
        let bad = payments::record_typed(&conn, &items(&[("Consultation", "abc")]), None, start(), entry());
        assert!(matches!(bad, Err(ClinicError::Invalid { field: "items", .. })), "{bad:?}");
        let empty = payments::record_typed(&conn, &items(&[("", "")]), None, start(), entry());
        assert!(matches!(empty, Err(ClinicError::Invalid { field: "items", .. })), "{empty:?}");
        let unsent = payments::record_typed(&conn, &items(&[("Consultation", "250")]), None, start(), entry());
        assert_eq!(unsent.unwrap(), None);
        let header = PaymentHeader {
            patient_id: PatientId::new(1),
            visit_id: None,
            method: Method::Cash,
            reference: String::new(),
            by: by.clone(),
        };
        let typed = items(&[("", ""), ("Consultation", "250.50")]);
        let id = payments::record_typed(&conn, &typed, Some(header), start(), entry())
            .unwrap()
            .unwrap();
        let p = payments::get(&conn, id).unwrap();
        assert_eq!((p.amount_minor, p.items.len(), p.receipt_number), (25_050, 1, 1));

        // A missing payment is not found before anything else; a negative refund is refused.
        let h = || {
            Some(CorrectionHeader {
                method: None,
                reason: "overcharged".into(),
                by: by.clone(),
            })
        };
        let missing = payments::correct_typed(&conn, PaymentId::new(99), CorrectionKind::Refund, "x", None, start(), entry());
        assert!(matches!(missing, Err(ClinicError::NotFound)), "{missing:?}");
        let negative = payments::correct_typed(&conn, id, CorrectionKind::Refund, "-1", h(), start(), entry());
        assert!(matches!(negative, Err(ClinicError::Invalid { field: "amount", .. })), "{negative:?}");
        let unsent = payments::correct_typed(&conn, id, CorrectionKind::Refund, "50", None, start(), entry());
        assert_eq!(unsent.unwrap(), None);
        payments::correct_typed(&conn, id, CorrectionKind::Refund, "50", h(), start(), entry())
            .unwrap()
            .unwrap();
        let (s, p) = payments::get_with_settings(&conn, id).unwrap();
        assert_eq!(p.remaining_minor(), 20_050);
        assert_eq!(payments::correction_blocked(&p, CorrectionKind::Refund, &s), None);
        let void = payments::correction_blocked(&p, CorrectionKind::Void, &s).unwrap();
        assert!(void.contains("refund the remaining"), "{void}");
        let (_, printed, fixes) = payments::print_receipt(&conn, id, entry()).unwrap();
        assert_eq!((printed.id, fixes.len()), (id, 1));

        // The list's range: an unreadable day is today, with a notice; more than a year
        // is cut to the year before the last day.
        let today = payments::range(&conn, start(), Some("nonsense"), None).unwrap();
        let day = start().date_naive();
        assert_eq!((today.from, today.to), (day, day));
        assert!(today.notice.is_some());
        assert_eq!((today.payments.len(), today.corrections.len()), (1, 1));
        let long = payments::range(&conn, start(), Some("2026-03-01"), Some("2020-01-01")).unwrap();
        assert_eq!((long.from, long.to), (day - chrono::TimeDelta::days(366), day));
        assert_eq!(long.notice.as_deref(), Some("At most a year is shown at once."));
    })
    .await;
}
