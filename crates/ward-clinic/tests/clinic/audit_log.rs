//! Writing the audit log: the one writer, its transaction, its triggers.

use ward_clinic::audit::{self, Action, AuditError, Entry};

use crate::support::{TestPlatform, append, entry, in_new_clinic, start};

#[tokio::test(flavor = "multi_thread")]
async fn a_row_holds_exactly_what_happened() {
    let row = in_new_clinic("Acme", |conn| {
        let recorded = audit::in_transaction(&conn, |tx| {
            audit::record(&tx, &entry(1))
        })
        .unwrap();
        assert_eq!(recorded.seq, 1);
        let mut rows = conn
            .query(
                "SELECT seq, at, actor_kind, actor_id, actor_name, actor_role, ip, action, entity_type, entity_id, reason, diff, detail, prev_hash, hash FROM audit_log",
                (),
            )
            .unwrap();
        let row = rows.next().unwrap().unwrap();
        let text = |i| row.get::<Option<String>>(i).unwrap();
        let out = (
            row.get::<i64>(0).unwrap(),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map(text),
            row.get::<Vec<u8>>(13).unwrap(),
            row.get::<Vec<u8>>(14).unwrap(),
        );
        assert_eq!(out.3, recorded.hash.to_vec());
        out
    })
    .await;
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(row.0, 1);
    assert_eq!(
        row.1,
        [
            s("2026-03-01T09:00:01.500Z"),
            s("user"),
            s("0192f5c4-0000-7000-8000-000000000001"),
            s("Dr Ada Lovelace"),
            s("doctor"),
            s("2001:db8::1"),
            s("update"),
            s("patient"),
            s("patient-1"),
            None,
            s(r#"{"phone":["555-0001","555-0002"]}"#),
            None,
        ]
    );
    assert_eq!(row.2, vec![0u8; 32], "the first row follows 32 zero bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_is_written_only_inside_a_transaction() {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Acme").await;
    let outside = t
        .with(&clinic, |conn| audit::record(&conn, &entry(0)))
        .await;
    assert!(
        matches!(outside, Err(AuditError::NotInTransaction)),
        "{outside:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_application_cannot_change_or_remove_audit_rows() {
    in_new_clinic("Acme", |conn| {
        append(&conn, 0..5);
        for sql in [
            "UPDATE audit_log SET actor_name = 'someone else' WHERE seq = 2",
            "UPDATE audit_log SET hash = zeroblob(32)",
            "DELETE FROM audit_log WHERE seq = 5",
            "DELETE FROM audit_log",
            // REPLACE deletes without firing DELETE triggers; the append-only trigger stops it.
            "INSERT OR REPLACE INTO audit_log (seq, at, actor_kind, actor_name, action, prev_hash, hash) \
             VALUES (3, '2026-01-01T00:00:00.000Z', 'system', 'x', 'view', zeroblob(32), zeroblob(32))",
            // Nor can a row be slipped in ahead of the head, or after a gap.
            "INSERT INTO audit_log (seq, at, actor_kind, actor_name, action, prev_hash, hash) \
             VALUES (9, '2026-01-01T00:00:00.000Z', 'system', 'x', 'view', zeroblob(32), zeroblob(32))",
            "INSERT INTO audit_log (seq, at, actor_kind, actor_name, action, prev_hash, hash) \
             VALUES (0, '2026-01-01T00:00:00.000Z', 'system', 'x', 'view', zeroblob(32), zeroblob(32))",
        ] {
            let err = conn.execute(sql, ()).expect_err(sql).to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
        let report = audit::verify_chain(&conn, None).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.rows, 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_audit_insert_rolls_the_change_back() {
    in_new_clinic("Acme", |conn| {
        conn.execute_batch("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL);")
            .unwrap();
        append(&conn, 0..3);

        let change = |conn: ward_tenancy::Db, entry: Entry| {
            audit::in_transaction(&conn, |tx| {
                tx.execute("INSERT INTO things (name) VALUES ('x')", ())?;
                tx.execute("UPDATE things SET name = 'y'", ())?;
                audit::record(&tx, &entry)?;
                Ok::<_, AuditError>(())
            })
        };

        // The database refuses the audit row (forced here by a trigger; in life: disk
        // full, I/O error, a constraint).
        conn.execute_batch(
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'forced failure'); END;",
        )
        .unwrap();
        let refused = change(conn.clone(), entry(10));
        assert!(matches!(refused, Err(AuditError::Db(_))), "{refused:?}");
        conn.execute_batch("DROP TRIGGER fail_audit;").unwrap();

        // The writer refuses the entry itself (the operator must give a reason).
        let mut no_reason = entry(4);
        no_reason.reason = Some("  ".into());
        let refused = change(conn.clone(), no_reason);
        assert!(matches!(refused, Err(AuditError::Invalid(_))), "{refused:?}");

        let count = |sql: &'static str| {
            let conn = conn.clone();
            {
                let mut rows = conn.query(sql, ()).unwrap();
                rows.next().unwrap().unwrap().get::<i64>(0).unwrap()
            }
        };
        assert_eq!(count("SELECT count(*) FROM things"), 0, "the change rolled back");
        assert_eq!(count("SELECT count(*) FROM audit_log"), 3);
        assert!(conn.is_autocommit(), "no transaction left open");

        // And a change whose audit row is written commits both.
        change(conn.clone(), entry(10)).unwrap();
        assert_eq!(count("SELECT count(*) FROM things"), 1);
        assert_eq!(count("SELECT count(*) FROM audit_log"), 4);
        assert!(audit::verify_chain(&conn, None).unwrap().is_clean());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_access_always_carries_a_reason() {
    in_new_clinic("Acme", |conn| {
        let blank = audit::in_transaction(&conn, |tx| {
            audit::record_operator_access(&tx, start(), "ops", " ", Action::Export, None)
        });
        assert!(matches!(blank, Err(AuditError::Invalid(_))), "{blank:?}");

        let recorded = audit::in_transaction(&conn, |tx| {
            audit::record_operator_access(
                &tx,
                start(),
                "ops",
                " owner requested an export by phone ",
                Action::Export,
                Some("exports/acme.json"),
            )
        })
        .unwrap();
        let mut rows = conn
            .query("SELECT actor_kind, actor_name, actor_id, action, reason, detail FROM audit_log WHERE seq = ?1", [recorded.seq])
            .unwrap();
        let row = rows.next().unwrap().unwrap();
        let cols: Vec<Option<String>> = (0..6).map(|i| row.get(i).unwrap()).collect();
        assert_eq!(
            cols,
            [
                Some("operator".into()),
                Some("ops".into()),
                None,
                Some("export".into()),
                Some("owner requested an export by phone".into()),
                Some("exports/acme.json".into()),
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sequence_numbers_count_up_and_the_head_follows() {
    in_new_clinic("Acme", |conn| {
        assert_eq!(audit::head(&conn).unwrap(), None);
        let mut last = None;
        for n in 0..20 {
            let r = audit::in_transaction(&conn, |tx| audit::record(&tx, &entry(n))).unwrap();
            assert_eq!(r.seq, n + 1);
            last = Some(r);
        }
        let head = audit::head(&conn).unwrap().unwrap();
        let last = last.unwrap();
        assert_eq!(
            (head.seq, head.hash.clone()),
            (last.seq, last.hash.to_vec())
        );
        let report = audit::verify_chain(&conn, Some(head.clone())).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.head, Some(head));
    })
    .await;
}
