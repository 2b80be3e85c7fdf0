//! Reading the log back: filters and keyset pages agree with a plain filter over all rows.

use chrono::TimeDelta;
use ward_clinic::audit::{self, Action, AuditRow, Entry, Filter};
use ward_clinic::audit_viewer::{self, Search};

use crate::support::{append, doctor, in_new_clinic, start};

/// Every row, newest first, as the viewer orders them.
fn all(conn: &ward_tenancy::Db) -> Vec<AuditRow> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = audit::search(conn, &Filter::default(), before, 500).unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        out.extend(page);
    }
    out
}

/// Pages of `size` through `filter`, concatenated.
fn paged(conn: &ward_tenancy::Db, filter: &Filter, size: u32) -> Vec<i64> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = audit::search(conn, filter, before, size).unwrap();
        assert!(page.len() <= size as usize);
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        out.extend(page.iter().map(|r| r.seq));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_and_pages_return_exactly_the_matching_rows_newest_first() {
    in_new_clinic("Acme", |conn| {
        append(&conn, 0..300);
        // Views written late (batched): earlier times, later sequence numbers; and ties.
        audit::in_transaction(&conn, |tx| {
            for i in 0..20 {
                let at = start() + TimeDelta::seconds(if i < 10 { 30 } else { 100 });
                let e = Entry::new(at, doctor(), Action::View).entity("patient", "patient-3");
                audit::record(&tx, &e)?;
            }
            Ok::<_, audit::AuditError>(())
        })
        .unwrap();

        let rows = all(&conn);
        assert_eq!(rows.len(), 320);
        assert!(
            rows.windows(2)
                .all(|w| (w[0].at, w[0].seq) > (w[1].at, w[1].seq)),
            "newest first by time, then sequence number"
        );

        let filters = [
            Filter::default(),
            Filter {
                actor_id: Some("0192f5c4-0000-7000-8000-000000000001".into()),
                ..Filter::default()
            },
            Filter {
                entity: Some(("patient".into(), "patient-3".into())),
                ..Filter::default()
            },
            Filter {
                action: Some(Action::Print),
                ..Filter::default()
            },
            Filter {
                action: Some(Action::OperatorAccess),
                ..Filter::default()
            },
            Filter {
                from: Some(start() + TimeDelta::seconds(30)),
                until: Some(start() + TimeDelta::seconds(200)),
                ..Filter::default()
            },
            Filter {
                entity: Some(("patient".into(), "patient-3".into())),
                action: Some(Action::View),
                from: Some(start() + TimeDelta::seconds(30)),
                ..Filter::default()
            },
            Filter {
                actor_id: Some("0192f5c4-0000-7000-8000-000000000001".into()),
                action: Some(Action::Update),
                until: Some(start() + TimeDelta::seconds(300)),
                ..Filter::default()
            },
            Filter {
                actor_id: Some("nobody".into()),
                ..Filter::default()
            },
        ];
        for filter in &filters {
            let expected: Vec<i64> = rows
                .iter()
                .filter(|r| {
                    filter
                        .actor_id
                        .as_ref()
                        .is_none_or(|a| r.actor_id.as_ref() == Some(a))
                        && filter.entity.as_ref().is_none_or(|(k, id)| {
                            r.entity_type.as_ref() == Some(k) && r.entity_id.as_ref() == Some(id)
                        })
                        && filter.action.is_none_or(|a| r.action == a.as_str())
                        && filter.from.is_none_or(|f| r.at >= f)
                        && filter.until.is_none_or(|u| r.at < u)
                })
                .map(|r| r.seq)
                .collect();
            for size in [1, 7, 50] {
                assert_eq!(
                    paged(&conn, filter, size),
                    expected,
                    "{filter:?}, pages of {size}"
                );
            }
        }
        // A patient's "accessed by" includes the late views.
        let accessed = audit::search(
            &conn,
            &Filter {
                entity: Some(("patient".into(), "patient-3".into())),
                ..Filter::default()
            },
            None,
            500,
        )
        .unwrap();
        assert!(accessed.iter().filter(|r| r.seq > 300).count() == 20);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_viewer_searches_by_local_days_and_patient_number() {
    in_new_clinic("Acme", |conn| {
        append(&conn, 0..20);
        let day = start().date_naive();
        let yesterday = Entry::new(start() - TimeDelta::days(1), doctor(), Action::View)
            .entity("patient", "1");
        audit::in_transaction(&conn, |tx| audit::record(&tx, &yesterday)).unwrap();
        conn.execute_batch(
            "INSERT INTO patients (number, full_name, sex, created_at, updated_at) VALUES (7, 'Seven', 'female', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');",
        )
        .unwrap();

        // A refused form searches nothing; an unknown number finds no patient.
        let (_, none) = audit_viewer::search(&conn, None, 100).unwrap();
        assert_eq!(none, Some(Vec::new()));
        let unknown = Search {
            patient_number: Some(99),
            ..Search::default()
        };
        assert_eq!(audit_viewer::search(&conn, Some(unknown), 100).unwrap().1, None);

        // Patient number 7 is row 1: only the entry about it, from the day before.
        let seven = Search {
            patient_number: Some(7),
            ..Search::default()
        };
        let rows = audit_viewer::search(&conn, Some(seven), 100).unwrap().1.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].at, start() - TimeDelta::days(1));

        // The day's rows are the twenty of that day (the clinic's timezone is UTC).
        let today = Search {
            from_day: Some(day),
            to_day: Some(day),
            ..Search::default()
        };
        let rows = audit_viewer::search(&conn, Some(today), 100).unwrap().1.unwrap();
        assert_eq!(rows.len(), 20);
        let before = Search {
            to_day: day.pred_opt(),
            ..Search::default()
        };
        let rows = audit_viewer::search(&conn, Some(before), 100).unwrap().1.unwrap();
        assert_eq!(rows.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patients_access_report_is_the_newest_rows_of_that_patient_in_order() {
    in_new_clinic("Acme", |conn| {
        // 120 views of patient 7, written in batches whose times run backwards against
        // their sequence numbers (late batches), between views of other records.
        audit::in_transaction(&conn, |tx| {
            for i in 0..120i64 {
                let at = start() + TimeDelta::seconds((i % 3) * 1_000 + (119 - i));
                let seen = Entry::new(at, doctor(), Action::View).entity("patient", "7");
                audit::record(&tx, &seen)?;
                let other = Entry::new(at, doctor(), Action::View).entity("patient", "70");
                audit::record(&tx, &other)?;
            }
            Ok::<_, audit::AuditError>(())
        })
        .unwrap();
        let mut expected: Vec<_> = all(&conn)
            .iter()
            .filter(|r| {
                r.entity_type.as_deref() == Some("patient") && r.entity_id.as_deref() == Some("7")
            })
            .map(|r| r.at)
            .collect();
        assert_eq!(expected.len(), 120);
        expected.truncate(20);
        let patient = ward_clinic::ids::PatientId::new(7);
        let report = audit::accessed_by_patient(&conn, patient, 20).unwrap();
        let got: Vec<_> = report.iter().map(|a| a.at).collect();
        assert_eq!(got, expected, "the newest twenty, newest first");
        assert_eq!(
            audit::accessed_by_patient(&conn, patient, 500)
                .unwrap()
                .len(),
            120
        );
    })
    .await;
}
