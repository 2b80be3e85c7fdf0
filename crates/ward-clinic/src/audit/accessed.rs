//! "Accessed by": who viewed or changed one record, and when, for the owner.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ward_tenancy::Db;

use super::search::{COLUMNS, row_of};
use super::{AuditError, Filter, MAX_PAGE, search};
use crate::audit::AuditRow;
use crate::ids::PatientId;

/// One access to a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// When.
    pub at: DateTime<Utc>,
    /// `user`, `operator` or `system`.
    pub actor_kind: String,
    /// The user's id, for users.
    pub actor_id: Option<String>,
    /// The actor's name at the time.
    pub actor_name: String,
    /// Their role at the time (users).
    pub actor_role: Option<String>,
    /// What they did: `view`, `update`, `print`, … (stored form).
    pub action: String,
    /// From where.
    pub ip: Option<String>,
    /// Which kind of record (`patient`, `visit`, `appointment`, `payment`).
    pub entity_type: Option<String>,
    /// Which record.
    pub entity_id: Option<String>,
    /// What else the row says (which list showed the patient, which version, …).
    pub detail: Option<String>,
}

impl From<AuditRow> for Access {
    fn from(r: AuditRow) -> Self {
        Self {
            at: r.at,
            actor_kind: r.actor_kind,
            actor_id: r.actor_id,
            actor_name: r.actor_name,
            actor_role: r.actor_role,
            action: r.action,
            ip: r.ip,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            detail: r.detail,
        }
    }
}

/// The newest `limit` accesses (at most [`MAX_PAGE`]) to the record `entity_type`
/// `entity_id`, newest first. Reads only those rows through the `audit_log_by_entity`
/// index, however long the log. Views still queued by the read auditor (under about
/// 100 ms old) appear once written.
pub fn accessed_by(
    conn: &Db,
    entity_type: &str,
    entity_id: &str,
    limit: u32,
) -> Result<Vec<Access>, AuditError> {
    let filter = Filter {
        entity: Some((entity_type.to_owned(), entity_id.to_owned())),
        ..Filter::default()
    };
    Ok(search(conn, &filter, None, limit.min(MAX_PAGE))?
        .into_iter()
        .map(Access::from)
        .collect())
}

/// The most rows [`accessed_by_patient`] returns: years of a busy patient's accesses.
pub const MAX_PATIENT_REPORT: u32 = 5_000;

/// The newest `limit` accesses (at most [`MAX_PATIENT_REPORT`]) to anything about patient
/// `patient_id`, newest first: the patient record itself (including every list that
/// showed them), their visits, appointments, payments and the payments' refunds and
/// voids. Each part is read through the `audit_log_by_entity` index, newest first and
/// at most `limit` rows of it, so the owner's patient page reads a few dozen rows however
/// often the patient has been seen.
pub fn accessed_by_patient(
    conn: &Db,
    patient_id: PatientId,
    limit: u32,
) -> Result<Vec<Access>, AuditError> {
    let limit = limit.min(MAX_PATIENT_REPORT);
    let mut rows = Vec::new();
    for part in PATIENT_REPORT_SQL.iter() {
        rows.extend(conn.rows(
            part,
            ward_tenancy::sql::params![patient_id, i64::from(limit)],
            row_of,
        )?);
    }
    // Newest first across the parts, as each part is on its own.
    rows.sort_unstable_by_key(|r| std::cmp::Reverse((r.at, r.seq)));
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(rows.into_iter().map(Access::from).collect())
}

/// The queries of [`accessed_by_patient`] (`?1` the patient, `?2` the limit): one for the
/// patient record and one per kind of related record (refunds and voids together),
/// each joined to the index by the record's id (no list of ids built first), newest first and cut to the limit; the caller merges them. Separate statements
/// rather than one `UNION ALL` of them: the compound statement cost more to prepare than
/// its parts together (and is prepared again on every newly opened clinic), and was
/// larger to keep in each connection's statement cache. `CROSS JOIN` keeps the patient's
/// records the outer loop: left to itself the planner may walk the index over every
/// audit row of that kind in the clinic instead.
static PATIENT_REPORT_SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    // Each kind of record: the kind its audit rows name (a column of the source when
    // that says it), the table its ids come from, the id, and the patient filter.
    let parts = [
        ("'visit'", "visits r", "r.id", "r.patient_id = ?1"),
        (
            "'appointment'",
            "appointments r",
            "r.id",
            "r.patient_id = ?1",
        ),
        ("'payment'", "payments r", "r.id", "r.patient_id = ?1"),
        // Refunds and voids in one statement: a correction's audit rows name its kind.
        (
            "r.kind",
            "payments p JOIN payment_corrections r ON r.payment_id = p.id",
            "r.id",
            "p.patient_id = ?1",
        ),
    ];
    // The reason and the diff are not shown (and a diff can be long): not read.
    let own_columns = COLUMNS.replace("reason, diff", "NULL, NULL");
    let columns =
        ward_tenancy::sql::qualified("a", COLUMNS).replace("a.reason, a.diff", "NULL, NULL");
    let own = format!(
        "SELECT {own_columns} FROM audit_log INDEXED BY audit_log_by_entity \
         WHERE entity_type = 'patient' AND entity_id = CAST(?1 AS TEXT) \
         ORDER BY at DESC, seq DESC LIMIT ?2"
    );
    std::iter::once(own)
        .chain(parts.iter().map(|(kind, source, id, filter)| {
            format!(
                "SELECT {columns} FROM {source} \
                 CROSS JOIN audit_log a INDEXED BY audit_log_by_entity \
                 ON a.entity_type = {kind} AND a.entity_id = CAST({id} AS TEXT) \
                 WHERE {filter} ORDER BY a.at DESC, a.seq DESC LIMIT ?2"
            )
        }))
        .collect()
});
