//! "Accessed by": who viewed or changed one record, and when, for the owner.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ward_tenancy::Db;

use super::{AuditError, Filter, MAX_PAGE, search};

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
        .map(|r| Access {
            at: r.at,
            actor_kind: r.actor_kind,
            actor_id: r.actor_id,
            actor_name: r.actor_name,
            actor_role: r.actor_role,
            action: r.action,
            ip: r.ip,
        })
        .collect())
}
