//! Tamper evidence: random edits made with raw SQL on copies of a real clinic file, by
//! someone who holds the key and drops the triggers first, are all found.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ward_clinic::audit::{self, CHAINED_COLUMNS, ChainReport, Head, ProblemKind};
use ward_core::chain::{self, Field};
use ward_core::{format_time, parse_time};
use ward_tenancy::Db;
use ward_tenancy::sql::Value;

use crate::support::{TestPlatform, append, open_copy};

const ROWS: i64 = 200;
const TAMPERINGS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tampering {
    ChangeField,
    DeleteRow,
    SwapRows,
    TruncateTail,
    RewriteConsistently,
}

const KINDS: [Tampering; 5] = [
    Tampering::ChangeField,
    Tampering::DeleteRow,
    Tampering::SwapRows,
    Tampering::TruncateTail,
    Tampering::RewriteConsistently,
];

/// Every stored column but `seq`: the chained ones after it, then `prev_hash` and `hash`.
const CONTENT: [&str; CHAINED_COLUMNS.len() + 1] = {
    let mut out = [""; CHAINED_COLUMNS.len() + 1];
    let mut i = 1;
    while i < CHAINED_COLUMNS.len() {
        out[i - 1] = CHAINED_COLUMNS[i];
        i += 1;
    }
    out[i - 1] = "prev_hash";
    out[i] = "hash";
    out
};

#[tokio::test(flavor = "multi_thread")]
async fn every_random_tampering_is_detected_and_located() {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Acme").await;
    let head = t
        .with(&clinic, |conn| {
            append(&conn, 0..ROWS);
            audit::head(&conn).unwrap().unwrap()
        })
        .await;
    t.platform
        .control
        .anchor(clinic.id, head.seq, &head.hash)
        .await
        .unwrap();
    let anchored = t
        .platform
        .control
        .anchor_of(clinic.id)
        .await
        .unwrap()
        .unwrap();
    let anchor = Head {
        seq: anchored.seq,
        hash: anchored.hash,
    };
    assert_eq!(anchor, head);
    let key = t.key_of(&clinic).await;
    let base = t.platform.tenants.path_of(clinic.id);
    // Closing checkpoints the WAL, so the file alone is the whole clinic.
    assert_eq!(
        t.platform.tenants.shutdown(Duration::from_secs(10)).await,
        0
    );

    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("copy.db");

    let untouched = open_copy(&base, &copy, &key).await;
    let report = audit::verify_chain(
        &ward_tenancy::Db::new(untouched.conn.clone()),
        Some(anchor.clone()),
    )
    .unwrap();
    assert!(
        report.is_clean(),
        "an untouched clinic verifies clean: {report:?}"
    );
    assert_eq!(report.rows, ROWS as u64);
    let triggers = trigger_sql(&Db::new(untouched.conn.clone()));
    assert_eq!(triggers.len(), 3);
    drop(untouched);
    remove(&copy);

    let mut rng = StdRng::seed_from_u64(0x5eed_a0d1);
    let mut done: BTreeMap<Tampering, usize> = BTreeMap::new();
    for i in 0..TAMPERINGS {
        let kind = KINDS[rng.gen_range(0..KINDS.len())];
        let opened = open_copy(&base, &copy, &key).await;
        let conn = &Db::new(opened.conn.clone());
        conn.execute("BEGIN", ()).unwrap();
        for name in [
            "audit_log_no_update",
            "audit_log_no_delete",
            "audit_log_append_only",
        ] {
            conn.execute(&format!("DROP TRIGGER {name}"), ()).unwrap();
        }
        let (what, expected) = tamper(conn, kind, &mut rng);
        // Put the triggers back: detection must come from the chain and the anchor.
        for sql in &triggers {
            conn.execute(sql, ()).unwrap();
        }
        conn.execute("COMMIT", ()).unwrap();
        let report = audit::verify_chain(conn, Some(anchor.clone())).unwrap();
        assert!(!report.is_clean(), "#{i} {what}: not detected");
        match expected {
            Expected::FirstBad(seq) => assert_eq!(
                report.first_bad_seq(),
                Some(seq),
                "#{i} {what}: wrong first bad seq in {report:#?}"
            ),
            Expected::OnlyAnchor => assert_only_anchor_problems(&report, &what),
        }
        *done.entry(kind).or_default() += 1;
        drop(opened);
        remove(&copy);
    }
    eprintln!("tamperings detected, by kind: {done:?}");
    assert_eq!(done.len(), KINDS.len(), "every kind was tried: {done:?}");
    assert!(done.values().all(|&n| n >= 150), "{done:?}");
}

enum Expected {
    /// The report names this sequence number first.
    FirstBad(i64),
    /// The chain is internally consistent; only the anchor shows the rewrite.
    OnlyAnchor,
}

fn assert_only_anchor_problems(report: &ChainReport, what: &str) {
    assert!(
        report.problems.iter().all(|p| matches!(
            p.kind,
            ProblemKind::AnchorMismatch | ProblemKind::ShorterThanAnchor
        )),
        "{what}: the rewrite was meant to be consistent, so only the anchor should catch it: {report:#?}"
    );
}

fn tamper(conn: &Db, kind: Tampering, rng: &mut StdRng) -> (String, Expected) {
    match kind {
        Tampering::ChangeField => {
            let seq = rng.gen_range(1..=ROWS);
            let column = if rng.gen_bool(0.05) {
                "seq"
            } else {
                CONTENT[rng.gen_range(0..CONTENT.len())]
            };
            change_field(conn, seq, column, rng);
            (
                format!("change {column} of row {seq}"),
                Expected::FirstBad(seq),
            )
        }
        Tampering::DeleteRow => {
            let seq = rng.gen_range(1..=ROWS);
            conn.execute("DELETE FROM audit_log WHERE seq = ?1", [seq])
                .unwrap();
            (format!("delete row {seq}"), Expected::FirstBad(seq))
        }
        Tampering::SwapRows => {
            let a = rng.gen_range(1..ROWS);
            let b = rng.gen_range(a + 1..=ROWS);
            let (ra, rb) = (read_row(conn, a), read_row(conn, b));
            write_content(conn, a, &rb);
            write_content(conn, b, &ra);
            (format!("swap rows {a} and {b}"), Expected::FirstBad(a))
        }
        Tampering::TruncateTail => {
            let keep = rng.gen_range(0..ROWS);
            conn.execute("DELETE FROM audit_log WHERE seq > ?1", [keep])
                .unwrap();
            (
                format!("truncate after row {keep}"),
                Expected::FirstBad(keep + 1),
            )
        }
        Tampering::RewriteConsistently => {
            let seq = rng.gen_range(1..=ROWS);
            let what = if rng.gen_bool(0.5) {
                let column = CONTENT[rng.gen_range(0..CONTENT.len() - 2)];
                change_field(conn, seq, column, rng);
                format!("change {column} of row {seq}")
            } else {
                conn.execute("DELETE FROM audit_log WHERE seq = ?1", [seq])
                    .unwrap();
                // One row at a time, upwards, so no two rows ever share a number.
                for s in seq + 1..=ROWS {
                    conn.execute("UPDATE audit_log SET seq = ?1 - 1 WHERE seq = ?1", [s])
                        .unwrap();
                }
                if rng.gen_bool(0.5) {
                    // Pad back to the anchored length with an innocent-looking row.
                    conn.execute(
                        "INSERT INTO audit_log (seq, at, actor_kind, actor_name, action, prev_hash, hash) \
                         VALUES (?1, '2026-03-01T12:00:00.000Z', 'system', 'ward', 'view', zeroblob(32), zeroblob(32))",
                        [ROWS],
                    )
                    .unwrap();
                    format!("delete row {seq}, renumber and pad")
                } else {
                    format!("delete row {seq} and renumber")
                }
            };
            rehash_from(conn, 1);
            (
                format!("{what}, then recompute every hash"),
                Expected::OnlyAnchor,
            )
        }
    }
}

fn change_field(conn: &Db, seq: i64, column: &str, rng: &mut StdRng) {
    if column == "seq" {
        conn.execute(
            "UPDATE audit_log SET seq = ?2 WHERE seq = ?1",
            [seq, ROWS + 1_000 + seq],
        )
        .unwrap();
        return;
    }
    let mut rows = conn
        .query(
            &format!("SELECT {column} FROM audit_log WHERE seq = ?1"),
            [seq],
        )
        .unwrap();
    let current = rows.next().unwrap().unwrap().get_value(0).unwrap();
    drop(rows);
    let new = match (column, current) {
        ("at", Value::Text(at)) => {
            let t = parse_time(&at).unwrap() + TimeDelta::milliseconds(rng.gen_range(1..5_000));
            Value::Text(format_time(t))
        }
        ("actor_kind", Value::Text(kind)) => {
            let other = ["user", "operator", "system"]
                .into_iter()
                .filter(|k| *k != kind)
                .nth(rng.gen_range(0..2))
                .unwrap();
            Value::Text(other.into())
        }
        (_, Value::Blob(mut bytes)) => {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] ^= 1 << rng.gen_range(0..8);
            Value::Blob(bytes)
        }
        ("actor_name" | "action", Value::Text(s)) => Value::Text(mutate(&s, rng)),
        (_, Value::Text(s)) => {
            if rng.gen_bool(0.3) {
                Value::Null
            } else {
                Value::Text(mutate(&s, rng))
            }
        }
        (_, Value::Null) => Value::Text("inserted later".into()),
        (column, other) => panic!("unexpected {column} value {other:?}"),
    };
    conn.execute(
        &format!("UPDATE audit_log SET {column} = ?2 WHERE seq = ?1"),
        ward_tenancy::sql::params![seq, new],
    )
    .unwrap();
}

/// A different string: one character replaced, or one appended.
fn mutate(s: &str, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() || rng.gen_bool(0.3) {
        chars.push('x');
    } else {
        let i = rng.gen_range(0..chars.len());
        chars[i] = if chars[i] == 'Z' { 'Y' } else { 'Z' };
    }
    chars.into_iter().collect()
}

fn read_row(conn: &Db, seq: i64) -> Vec<Value> {
    let mut rows = conn
        .query(
            &format!(
                "SELECT {} FROM audit_log WHERE seq = ?1",
                CONTENT.join(", ")
            ),
            [seq],
        )
        .unwrap();
    let row = rows.next().unwrap().unwrap();
    (0..CONTENT.len() as i32)
        .map(|i| row.get_value(i).unwrap())
        .collect()
}

fn write_content(conn: &Db, seq: i64, values: &[Value]) {
    let sets: Vec<String> = CONTENT
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 2))
        .collect();
    let mut params = vec![Value::Integer(seq)];
    params.extend(values.iter().cloned());
    conn.execute(
        &format!("UPDATE audit_log SET {} WHERE seq = ?1", sets.join(", ")),
        params,
    )
    .unwrap();
}

/// Recomputes `prev_hash` and `hash` of every row from `from` on, as a forger with the
/// key and the documented encoding would.
fn rehash_from(conn: &Db, from: i64) {
    let mut prev = chain::GENESIS.to_vec();
    let sql = format!(
        "SELECT {} FROM audit_log ORDER BY seq",
        CHAINED_COLUMNS.join(", ")
    );
    let mut rows = conn.query(&sql, ()).unwrap();
    let mut all = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let values: Vec<Value> = (0..CHAINED_COLUMNS.len() as i32)
            .map(|i| row.get_value(i).unwrap())
            .collect();
        all.push(values);
    }
    drop(rows);
    for values in all {
        let Value::Integer(seq) = values[0] else {
            panic!("seq")
        };
        let fields: Vec<Field<'_>> = values
            .iter()
            .map(|v| match v {
                Value::Null => Field::Null,
                Value::Integer(i) => Field::Int(*i),
                Value::Real(r) => Field::Real(*r),
                Value::Text(s) => Field::Text(s),
                Value::Blob(b) => Field::Blob(b),
            })
            .collect();
        let hash = chain::link(&prev, &fields).to_vec();
        if seq >= from {
            conn.execute(
                "UPDATE audit_log SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
                ward_tenancy::sql::params![seq, prev.clone(), hash.clone()],
            )
            .unwrap();
        }
        prev = hash;
    }
}

fn trigger_sql(conn: &Db) -> Vec<String> {
    ward_testkit::texts(
        conn,
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log' ORDER BY name",
    )
}

fn remove(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}
