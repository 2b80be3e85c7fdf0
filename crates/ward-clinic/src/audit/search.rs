//! Reading the log back: the owner's viewer and a patient's "accessed by", newest first,
//! filtered and paginated without ever sorting or scanning more than a page needs.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ward_core::{format_time, parse_time};
use ward_tenancy::Db;
use ward_tenancy::sql::Value;

use super::{Action, AuditError};

/// What to show. Every filter is optional; together they narrow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this user's actions.
    pub actor_id: Option<String>,
    /// Only this record: (`patient`, id), …
    pub entity: Option<(String, String)>,
    /// Only this action.
    pub action: Option<Action>,
    /// From this time on (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Before this time (exclusive).
    pub until: Option<DateTime<Utc>>,
}

/// One row as the viewer shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// Sequence number; also the cursor for the next (older) page.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// `user`, `operator` or `system`.
    pub actor_kind: String,
    /// The user's id.
    pub actor_id: Option<String>,
    /// The actor's name at the time.
    pub actor_name: String,
    /// The user's role at the time.
    pub actor_role: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// What was done (stored form; see [`Action`]).
    pub action: String,
    /// Kind of record.
    pub entity_type: Option<String>,
    /// Which record.
    pub entity_id: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Changed fields as stored JSON (parse with [`super::Diff::parse`]).
    pub diff: Option<String>,
    /// Anything else recorded.
    pub detail: Option<String>,
}

/// Most rows one call returns.
pub const MAX_PAGE: u32 = 500;

/// Rows matching `filter`, newest first (by time, then sequence number), at most
/// `limit`; with `before`, only rows older than the row with that sequence number (the
/// last one of the previous page). Keyset pagination: page 1,000 costs what page 1 does.
pub fn search(
    conn: &Db,
    filter: &Filter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditRow>, AuditError> {
    // The most selective filter drives the query; the planner has no statistics to
    // choose with, so it is told. Each index ends in `at`, so the order comes for free.
    let index = if filter.entity.is_some() {
        "audit_log_by_entity"
    } else if filter.actor_id.is_some() && filter.action.is_some() {
        "audit_log_by_actor_action"
    } else if filter.actor_id.is_some() {
        "audit_log_by_actor"
    } else if filter.action.is_some() {
        "audit_log_by_action"
    } else {
        "audit_log_by_at"
    };
    let mut sql = format!("SELECT {COLUMNS} FROM audit_log INDEXED BY {index} WHERE 1");
    let mut params: Vec<Value> = Vec::new();
    // Appends `clause` with its one `?` numbered for `value`; only fixed text reaches SQL.
    let bind = |sql: &mut String, params: &mut Vec<Value>, clause: &str, value: Value| {
        params.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", params.len())));
    };
    let filters: [(&str, Option<Value>); 6] = [
        (
            " AND entity_type = ?",
            filter.entity.as_ref().map(|(kind, _)| kind.clone().into()),
        ),
        (
            " AND entity_id = ?",
            filter.entity.as_ref().map(|(_, id)| id.clone().into()),
        ),
        (" AND actor_id = ?", filter.actor_id.clone().map(Into::into)),
        (" AND action = ?", filter.action.map(|a| a.as_str().into())),
        (" AND at >= ?", filter.from.map(|t| format_time(t).into())),
        (" AND at < ?", filter.until.map(|t| format_time(t).into())),
    ];
    for (clause, value) in filters {
        if let Some(value) = value {
            bind(&mut sql, &mut params, clause, value);
        }
    }
    if let Some(seq) = before {
        let Some(at) = at_of(conn, seq)? else {
            return Ok(Vec::new());
        };
        // Older than the cursor row: earlier in time, or the same time and a lower seq.
        params.push(at.into());
        let at_param = params.len();
        params.push(Value::Integer(seq));
        let seq_param = params.len();
        sql.push_str(&format!(
            " AND at <= ?{at_param} AND (at < ?{at_param} OR seq < ?{seq_param})"
        ));
    }
    sql.push_str(" ORDER BY at DESC, seq DESC");
    bind(
        &mut sql,
        &mut params,
        " LIMIT ?",
        i64::from(limit.min(MAX_PAGE)).into(),
    );

    conn.rows(&sql, params, row_of)
}

/// The columns [`row_of`] reads, in order.
pub(super) const COLUMNS: &str = "seq, at, actor_kind, actor_id, actor_name, actor_role, ip, action, entity_type, entity_id, reason, diff, detail";

/// One row selected with [`COLUMNS`].
pub(super) fn row_of(row: &ward_tenancy::sql::Row) -> Result<AuditRow, AuditError> {
    let at: String = row.get(1)?;
    Ok(AuditRow {
        seq: row.get(0)?,
        at: parse_time(&at).ok_or(AuditError::Invalid("an audit row holds an invalid time"))?,
        actor_kind: row.get(2)?,
        actor_id: row.get(3)?,
        actor_name: row.get(4)?,
        actor_role: row.get(5)?,
        ip: row.get(6)?,
        action: row.get(7)?,
        entity_type: row.get(8)?,
        entity_id: row.get(9)?,
        reason: row.get(10)?,
        diff: row.get(11)?,
        detail: row.get(12)?,
    })
}

fn at_of(conn: &Db, seq: i64) -> Result<Option<String>, AuditError> {
    let mut rows = conn.query("SELECT at FROM audit_log WHERE seq = ?1", [seq])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}
