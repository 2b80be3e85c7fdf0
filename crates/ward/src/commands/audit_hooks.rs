//! The clinic audit log plugged into backups and restores: a backup counts only if its
//! audit chain verifies, and a restore leaves its own entry in the restored clinic's log.

use std::sync::Arc;

use ward_clinic::audit::{self, Action};
use ward_control::ControlPlane;
use ward_control::backups::{RestoreAudit, RestoreAuditEntry};
use ward_core::format_time;
use ward_tenancy::Db;
use ward_tenancy::backup::{ChainHead, ContentCheck};
use ward_tenancy::sql::Connection;

/// Checks a restored copy's audit chain end to end (no anchor: a backup is older than
/// the live head by nature) and reports its head, hash in lowercase hex.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuditChainCheck;

#[async_trait::async_trait]
impl ContentCheck for AuditChainCheck {
    async fn check(&self, conn: &Connection) -> Result<Option<ChainHead>, String> {
        // Its own statement cache, dropped (so finalized) before the caller closes `conn`.
        let report = audit::verify_chain(&Db::new(conn.clone()), None)
            .map_err(|e| format!("the audit log cannot be read: {e}"))?;
        if !report.is_clean() {
            let first = report
                .problems
                .first()
                .map(|p| format!("{p:?}"))
                .unwrap_or_default();
            return Err(format!(
                "the audit chain has {} problem(s); first: {first}",
                report.problem_count
            ));
        }
        Ok(report.head.map(|h| ChainHead {
            seq: h.seq,
            hash: hex::encode(h.hash),
        }))
    }
}

/// Appends the `restore` row (operator, reason, backup id and time) to the restored
/// clinic's audit log, then moves the control plane's anchor to the new head: the
/// restored chain is legitimately shorter than the anchor taken before the restore.
pub struct ClinicRestoreAudit {
    control: Arc<ControlPlane>,
}

impl ClinicRestoreAudit {
    /// The hook, anchoring in `control`.
    pub fn new(control: Arc<ControlPlane>) -> Arc<Self> {
        Arc::new(Self { control })
    }
}

#[async_trait::async_trait]
impl RestoreAudit for ClinicRestoreAudit {
    async fn record_restore(
        &self,
        conn: &Connection,
        entry: &RestoreAuditEntry,
    ) -> Result<(), String> {
        let detail = format!(
            "backup {} taken at {}",
            entry.backup_id,
            format_time(entry.backup_taken_at)
        );
        record_restore(&self.control, conn, entry, &detail).await
    }
}

/// Appends a `restore` entry (with `detail` saying what it came from) to the restored
/// clinic's audit log, then moves the control plane's anchor to the new head.
pub async fn record_restore(
    control: &ControlPlane,
    conn: &Connection,
    entry: &RestoreAuditEntry,
    detail: &str,
) -> Result<(), String> {
    let (at, actor, reason) = (entry.at, entry.actor.to_string(), entry.reason.clone());
    let recorded = audit::in_transaction(&Db::new(conn.clone()), |tx| {
        audit::record_operator_access(&tx, at, &actor, &reason, Action::Restore, Some(detail))
    })
    .map_err(|e| e.to_string())?;
    control
        .reset_anchor(
            entry.clinic,
            recorded.seq,
            &recorded.hash,
            &entry.actor,
            &format!("restored: {detail}"),
        )
        .await
        .map_err(|e| e.to_string())
}
