//! The clinic's audit log: append-only, hash-chained, written in the same transaction as
//! the change it records.
//!
//! - [`record`] is the only writer. Domain code calls it inside the transaction of the
//!   change, most simply through [`in_transaction`], so a change without its audit row
//!   cannot exist: if the audit insert fails, the change rolls back with it.
//! - Views are many and must not slow pages down: [`ReadAuditor::note_view`] queues them
//!   and a background task writes them within about 100 ms, in one transaction per clinic.
//! - [`search`] reads it back for the owner's viewer and a record's "accessed by".
//! - [`verify_chain`] recomputes the chain; [`Anchorer`] copies every open clinic's head to
//!   the control plane so a truncated or rewritten log is caught even when it is
//!   internally consistent.
//!
//! The row format and the canonical encoding are documented in `docs/audit.md`.

mod accessed;
mod anchor;
mod entry;
mod reads;
mod search;
mod verify;

use chrono::{DateTime, Utc};
use ward_core::chain::{self, Field, GENESIS};
use ward_tenancy::Db;

pub use accessed::{Access, MAX_PATIENT_REPORT, accessed_by, accessed_by_patient};
pub use anchor::{AnchorRun, AnchorSink, Anchorer, BoxError};
pub use entry::{Action, Actor, Diff, Entry, support_actor_id};
pub use reads::{FlushOutcome, ReadAuditConfig, ReadAuditStats, ReadAuditor};
pub use search::{AuditRow, Filter, MAX_PAGE, search};
pub use verify::{integrity_check, verify_chain};
pub use ward_core::chain::{ChainReport, Head, Problem, ProblemKind};

/// The chained columns, in the order they are encoded for hashing. `prev_hash` and `hash`
/// follow them in the table.
pub const CHAINED_COLUMNS: [&str; 13] = [
    "seq",
    "at",
    "actor_kind",
    "actor_id",
    "actor_name",
    "actor_role",
    "ip",
    "action",
    "entity_type",
    "entity_id",
    "reason",
    "diff",
    "detail",
];

/// Why an audit row could not be written or the log not read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// [`record`] was called outside a transaction: the row and the change it records
    /// could then be committed separately.
    #[error("the audit log is written only inside the transaction of the change it records")]
    NotInTransaction,
    /// The entry is missing something the log requires.
    #[error("{0}")]
    Invalid(&'static str),
    /// The database refused or failed.
    #[error(transparent)]
    Db(#[from] ward_tenancy::sql::Error),
}

/// What [`record`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The row's sequence number.
    pub seq: i64,
    /// The row's hash (the new head of the chain).
    pub hash: [u8; 32],
}

/// Appends `entry` to the clinic's audit log.
///
/// **Must be called inside the transaction of the change it records** (use
/// [`in_transaction`]); outside one it refuses with [`AuditError::NotInTransaction`]. It
/// reads the chain's head (last `seq` and `hash`), computes
/// `hash = SHA-256(prev_hash || canonical encoding of the row)` and inserts the row with
/// `seq = head + 1` (1 and 32 zero bytes for the first row). Within a write transaction
/// (`BEGIN IMMEDIATE`) no other writer can append between the read and the insert, so
/// the chain cannot fork; were one to try, the `seq` primary key would refuse it.
pub fn record(conn: &Db, entry: &Entry) -> Result<Recorded, AuditError> {
    if conn.is_autocommit() {
        return Err(AuditError::NotInTransaction);
    }
    entry.validate()?;
    // The head as stored, whatever its length: a damaged chain stays writable (the clinic
    // keeps working) and `ward verify` reports the damage.
    let (last_seq, prev_hash) = match raw_head(conn)? {
        Some((seq, hash)) => (seq, hash),
        None => (0, GENESIS.to_vec()),
    };
    let seq = last_seq + 1;
    let c = entry.columns();
    let fields = [
        Field::Int(seq),
        Field::Text(&c.at),
        Field::Text(c.actor_kind),
        c.actor_id.as_deref().into(),
        Field::Text(&c.actor_name),
        c.actor_role.into(),
        c.ip.as_deref().into(),
        Field::Text(c.action),
        c.entity_type.as_deref().into(),
        c.entity_id.as_deref().into(),
        c.reason.as_deref().into(),
        c.diff.as_deref().into(),
        c.detail.as_deref().into(),
    ];
    let hash = chain::link(&prev_hash, &fields);
    conn.exec(
        "INSERT INTO audit_log (seq, at, actor_kind, actor_id, actor_name, actor_role, ip, action, entity_type, entity_id, reason, diff, detail, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        ward_tenancy::sql::params![
            seq,
            c.at,
            c.actor_kind,
            c.actor_id,
            c.actor_name,
            c.actor_role,
            c.ip,
            c.action,
            c.entity_type,
            c.entity_id,
            c.reason,
            c.diff,
            c.detail,
            prev_hash,
            hash.to_vec()
        ],
    )?;
    Ok(Recorded { seq, hash })
}

/// Records an access by the operator (`ward export`, `ward restore`, support work) inside
/// the caller's transaction. `reason` must say why, in words; `action` says what
/// ([`Action::Export`], [`Action::Restore`], [`Action::OperatorAccess`]); `detail` says to
/// what (a backup's name, an export file).
pub fn record_operator_access(
    conn: &Db,
    at: DateTime<Utc>,
    operator: &str,
    reason: &str,
    action: Action,
    detail: Option<&str>,
) -> Result<Recorded, AuditError> {
    let mut entry = Entry::new(
        at,
        Actor::Operator {
            name: operator.to_owned(),
        },
        action,
    )
    .reason(reason.trim());
    entry.detail = detail.map(str::to_owned);
    record(conn, &entry)
}

/// Runs `f` in one write transaction (`BEGIN IMMEDIATE`) on `conn` and commits if it
/// succeeds; any error rolls everything back, the change and its audit row together.
///
/// ```ignore
/// audit::in_transaction(&conn, |tx| {
///     tx.execute("UPDATE patients SET phone = ?2 WHERE id = ?1", (id, phone))?;
///     audit::record(&tx, &entry)?;
///     Ok::<_, ClinicError>(())
/// })
///
/// ```
pub fn in_transaction<T, E, F>(conn: &Db, f: F) -> Result<T, E>
where
    F: FnOnce(Db) -> Result<T, E>,
    E: From<ward_tenancy::sql::Error>,
{
    conn.execute("BEGIN IMMEDIATE", ())?;
    finish(conn, f(conn.clone()))
}

/// [`in_transaction`] for a change whose middle awaits another service (the control
/// plane), so that the clinic's audit row and the other change commit or fail together.
/// The clinic stays locked for the whole await; prefer [`in_transaction`].
pub async fn in_transaction_async<T, E, F, Fut>(conn: &Db, f: F) -> Result<T, E>
where
    F: FnOnce(Db) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: From<ward_tenancy::sql::Error>,
{
    conn.execute("BEGIN IMMEDIATE", ())?;
    let outcome = f(conn.clone()).await;
    finish(conn, outcome)
}

/// Commits the transaction `outcome` came from if it succeeded, rolls it back otherwise.
fn finish<T, E>(conn: &Db, outcome: Result<T, E>) -> Result<T, E>
where
    E: From<ward_tenancy::sql::Error>,
{
    match outcome {
        Ok(value) => match conn.execute("COMMIT", ()) {
            Ok(_) => Ok(value),
            Err(e) => {
                // A failed COMMIT (busy, disk full) leaves the transaction open.
                rollback(conn);
                Err(e.into())
            }
        },
        Err(e) => {
            rollback(conn);
            Err(e)
        }
    }
}

fn rollback(conn: &Db) {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute("ROLLBACK", ())
    {
        // The cause the caller gets matters more; the connection is unusable only if
        // this also failed, which the log must show.
        tracing::error!(error = %e, "rollback failed");
    }
}

/// The chain's head: the last row's sequence number and hash, `None` for an empty log.
pub fn head(conn: &Db) -> Result<Option<Head>, AuditError> {
    Ok(raw_head(conn)?.map(|(seq, hash)| Head { seq, hash }))
}

fn raw_head(conn: &Db) -> Result<Option<(i64, Vec<u8>)>, AuditError> {
    conn.row(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        (),
        |row| Ok((row.get::<i64>(0)?, row.get::<Vec<u8>>(1)?)),
    )
}
