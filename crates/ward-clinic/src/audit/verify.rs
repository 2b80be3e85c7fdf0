//! Recomputing a clinic's audit chain end to end.

use ward_core::chain::{ChainReport, Field, Head, ProblemKind, Verifier};
use ward_tenancy::Db;
use ward_tenancy::sql::Value;

use super::{AuditError, CHAINED_COLUMNS};

/// The triggers that make `audit_log` append-only; a log without them may have been
/// edited, so their absence is itself reported.
const TRIGGERS: [&str; 3] = [
    "audit_log_append_only",
    "audit_log_no_update",
    "audit_log_no_delete",
];

/// Recomputes the clinic's audit chain from its first row to its last and compares the
/// head with `anchor` (the control plane's copy, if there is one).
///
/// Finds: rows missing (sequence gaps), rows out of place, rows changed after they were
/// written (hash mismatch), rows removed, reordered or replaced (`prev_hash` not the
/// previous row's hash), a log shorter than its anchor (truncated), a row at the
/// anchored sequence number that is not the anchored one (rewritten, even consistently),
/// and missing append-only triggers. One statement reads the whole log, so the report
/// is of one consistent snapshot even while the clinic is in use.
pub fn verify_chain(conn: &Db, anchor: Option<Head>) -> Result<ChainReport, AuditError> {
    let mut verifier = Verifier::new(1, anchor);
    check_triggers(conn, &mut verifier)?;
    let sql = format!(
        "SELECT {}, prev_hash, hash FROM audit_log ORDER BY seq",
        CHAINED_COLUMNS.join(", ")
    );
    let mut rows = conn.query(&sql, ())?;
    let n = CHAINED_COLUMNS.len();
    let mut values: Vec<Value> = Vec::with_capacity(n + 2);
    while let Some(row) = rows.next()? {
        values.clear();
        for i in 0..n + 2 {
            // Column indexes are tiny; the cast cannot truncate.
            values.push(row.get_value(i as i32)?);
        }
        let seq = match values[0] {
            Value::Integer(seq) => seq,
            _ => {
                verifier.unreadable(None, "its sequence number is not an integer");
                continue;
            }
        };
        let (Value::Blob(prev_hash), Value::Blob(hash)) = (&values[n], &values[n + 1]) else {
            verifier.unreadable(Some(seq), "its prev_hash or hash is not a hash");
            continue;
        };
        let fields: Vec<Field<'_>> = values[..n].iter().map(Field::from).collect();
        verifier.row(seq, prev_hash, hash, &fields);
    }
    Ok(verifier.finish())
}

fn check_triggers(conn: &Db, verifier: &mut Verifier) -> Result<(), AuditError> {
    for name in TRIGGERS {
        let mut rows = conn
            .query(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log' AND name = ?1",
                [name],
            )?;
        let protects = match rows.next()? {
            Some(row) => row
                .get::<Option<String>>(0)?
                .is_some_and(|sql| sql.to_ascii_uppercase().contains("RAISE(ABORT")),
            None => false,
        };
        if !protects {
            verifier.problem(
                None,
                ProblemKind::Unprotected,
                format!("the append-only trigger {name} is missing or altered"),
            );
        }
    }
    Ok(())
}

/// Every page's authentication code and SQLite's structural check
/// ([`ward_tenancy::check::file_problems`]): an empty list when the file is sound,
/// otherwise what was found wrong (at most 100 lines).
pub fn integrity_check(conn: &Db) -> Result<Vec<String>, ward_tenancy::sql::Error> {
    Ok(ward_tenancy::check::file_problems(conn))
}
