//! Migration 0007 on a clinic created before visits had a fee.

use ward_clinic::audit::{Action, Entry};
use ward_clinic::ids::{PatientId, VisitId};
use ward_clinic::{payments, settings, visits};
use ward_tenancy::migrations::TENANT;

use crate::support::{doctor, migrated_from, start};

#[tokio::test(flavor = "multi_thread")]
async fn the_fee_migration_keeps_an_existing_clinics_visits_and_balance() {
    // A clinic on the schema before fees, with a patient, a visit and a payment, opened by
    // this build: migrated on first use, the old rows intact and fee-less.
    migrated_from(
        "visit_fee",
        "INSERT INTO patients (number, full_name, sex, created_at, updated_at) VALUES (1, 'Old Patient', 'female', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
                 INSERT INTO visits (patient_id, doctor_id, doctor_name, visited_at, presenting_complaints, created_at, updated_at) VALUES (1, 'd', 'Dr Old', '2026-01-01T00:00:00.000Z', 'Cough', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
                 INSERT INTO diagnoses (visit_id, position, text) VALUES (1, 1, 'Asthma'), (1, 0, 'Bronchitis');
                 INSERT INTO prescription_items (visit_id, position, drug, dose) VALUES (1, 1, 'Honey \"raw\"', ''), (1, 0, 'Salbutamol', '2 puffs');
                 INSERT INTO payments (receipt_number, patient_id, amount_minor, currency, method, reference, recorded_by_id, recorded_by_name, received_at) VALUES (1, 1, 20000, 'INR', 'cash', '', 'd', 'Dr Old', '2026-01-01T00:00:00.000Z');",
        |conn| {
            assert_eq!(
                ward_tenancy::migrate::version(&conn).unwrap() as usize,
                TENANT.len()
            );
            let v = visits::get(&conn, VisitId::new(1)).unwrap();
            assert_eq!(v.presenting_complaints, "Cough");
            assert_eq!(v.fee_minor, None);
            let account = payments::account(&conn, PatientId::new(1)).unwrap();
            assert_eq!((account.charged_minor, account.paid_minor), (0, 20_000));
            assert_eq!(account.balance_minor(), -20_000);

            // The old visit takes a fee through an edit, and the balance follows.
            let s = settings::load(&conn).unwrap();
            let mut form = visits::VisitForm::from_visit(&v, &s.currency);
            form.fee = "350".into();
            let valid = form
                .validate(s.local(start()).date_naive(), &s.currency)
                .unwrap();
            let amend = |reason: &str| {
                visits::update(
                    &conn,
                    VisitId::new(1),
                    &valid,
                    reason,
                    Entry::new(start(), doctor(), Action::Update),
                )
            };
            // A correction needs a reason; refused without one, nothing written.
            let refused = amend(" ");
            assert!(
                matches!(
                    refused,
                    Err(ward_clinic::ClinicError::Invalid {
                        field: "reason",
                        ..
                    })
                ),
                "{refused:?}"
            );
            assert_eq!(visits::get(&conn, VisitId::new(1)).unwrap().fee_minor, None);
            let version = amend("fee was not entered").unwrap();
            assert_eq!(version, 2);
            assert_eq!(
                visits::get(&conn, VisitId::new(1)).unwrap().fee_minor,
                Some(35_000)
            );
            // The visit saved before versions were kept became version 1 as it was.
            let versions = visits::versions(&conn, VisitId::new(1)).unwrap();
            assert_eq!(versions.len(), 2);
            assert_eq!(versions[0].content.fee_minor, None);
            assert_eq!(versions[0].content.diagnoses, v.diagnoses);
            assert_eq!(versions[0].content.items, v.items);
            assert_eq!(versions[0].content.diagnoses, ["Bronchitis", "Asthma"]);
            assert_eq!(versions[0].content.items[0].dose, "2 puffs");
            assert_eq!(versions[0].content.items[1].drug, "Honey \"raw\"");
            assert_eq!(versions[0].reason, None);
            assert_eq!(versions[1].reason.as_deref(), Some("fee was not entered"));
            assert_eq!(versions[1].content.fee_minor, Some(35_000));
            assert_eq!(
                payments::account(&conn, PatientId::new(1))
                    .unwrap()
                    .balance_minor(),
                15_000
            );
            // A negative fee cannot be stored even by a direct write.
            assert!(
                conn.execute("UPDATE visits SET fee_minor = -1 WHERE id = 1", ())
                    .is_err()
            );
        })
        .await;
}
