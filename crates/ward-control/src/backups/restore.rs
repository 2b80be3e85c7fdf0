//! Restoring a clinic: the candidates for a target, the restore under the operator
//! lock, and the entry it leaves in the clinic's own audit log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use ward_core::{Actor, ClinicId, format_time};
use ward_tenancy::TenantError;
use ward_tenancy::backup::{BackupError, RestoreStep, StepHook};

use super::verify::expected_of;
use super::{Backups, Failure, stamp};
use crate::ControlError;
use crate::catalog::{BackupRecord, Scope};

/// An entry for the restored clinic's own audit log.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreAuditEntry {
    /// The clinic restored.
    pub clinic: ClinicId,
    /// Who restored (the operator).
    #[serde(serialize_with = "as_text")]
    pub actor: Actor,
    /// Why, as the operator typed it.
    pub reason: String,
    /// The backup restored from.
    pub backup_id: Uuid,
    /// The moment it represents.
    pub backup_taken_at: DateTime<Utc>,
    /// When the restore happened.
    pub at: DateTime<Utc>,
}

/// Serializes an actor as its stored text form.
fn as_text<S: serde::Serializer>(actor: &Actor, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(actor)
}

/// Appends the `restore` entry to a restored clinic's own audit log, on the clinic's
/// connection, while the operator lock is still held.
///
/// The clinic domain's audit log plugs in here (the binary passes its implementation
/// with [`Backups::with_restore_audit`]); [`NoClinicAuditLog`] is the stand-in until
/// then, and the restore is recorded in the control plane (`restores`, `clinic_events`)
/// either way.
#[async_trait::async_trait]
pub trait RestoreAudit: Send + Sync {
    /// Writes `entry` to the clinic behind `conn`.
    async fn record_restore(
        &self,
        conn: &ward_tenancy::sql::Connection,
        entry: &RestoreAuditEntry,
    ) -> Result<(), String>;
}

/// Writes nothing: the clinic audit log is not part of this build's schema yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoClinicAuditLog;

#[async_trait::async_trait]
impl RestoreAudit for NoClinicAuditLog {
    async fn record_restore(
        &self,
        _conn: &ward_tenancy::sql::Connection,
        _entry: &RestoreAuditEntry,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// Which backup a restore starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The newest good backup taken at or before this moment.
    At(DateTime<Utc>),
    /// This backup.
    Backup(Uuid),
}

/// What a clinic restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored from.
    pub backup: BackupRecord,
    /// Newer candidates that failed their check on the way (now marked as failed).
    pub skipped: Vec<Failure>,
    /// Only checked, nothing changed.
    pub dry_run: bool,
    /// Rows per table in the live file before, if it could be read.
    pub tables_before: Option<BTreeMap<String, u64>>,
    /// Rows per table in the backup as restored.
    pub tables_restored: BTreeMap<String, u64>,
    /// Rows per table after the switch and migrations.
    pub tables_after: Option<BTreeMap<String, u64>>,
    /// Where the replaced file was kept.
    pub pre_restore: Option<PathBuf>,
    /// Schema version of the backup, and after migrations.
    pub schema_from: u32,
    /// Schema version after the restore.
    pub schema_to: u32,
    /// Problems after the switch that did not undo it (e.g. the audit entry).
    pub warnings: Vec<String>,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

fn is_bad_backup(e: &BackupError) -> bool {
    match e {
        BackupError::Mismatch(_)
        | BackupError::Integrity(_)
        | BackupError::Schema(_)
        | BackupError::Check(_)
        | BackupError::Db(_) => true,
        // The source file itself unreadable or gone.
        BackupError::Io { what, .. } => *what == "cannot read",
        BackupError::Tenant(_) | BackupError::Busy(_) | BackupError::Stopped { .. } => false,
    }
}

impl Backups {
    /// The backups a restore of `scope` to `target` would try, best first.
    pub async fn candidates(
        &self,
        scope: Scope,
        target: RestoreTarget,
    ) -> Result<Vec<BackupRecord>, ControlError> {
        match target {
            RestoreTarget::Backup(id) => {
                let b = self
                    .control
                    .backup_by_id(id)
                    .await?
                    .filter(|b| b.scope == scope)
                    .ok_or_else(|| ControlError::Invalid(format!("{scope} has no backup {id}")))?;
                if b.deleted_at.is_some() {
                    return Err(ControlError::Invalid(format!(
                        "backup {id} was removed by retention"
                    )));
                }
                if let Some(e) = &b.verify_error {
                    return Err(ControlError::Invalid(format!(
                        "backup {id} failed its check and is never restored from: {e}"
                    )));
                }
                Ok(vec![b])
            }
            RestoreTarget::At(t) => {
                // Verified backups, and never-checked ones (adopted after a control-plane
                // restore): the restore checks each in full before using it.
                let list: Vec<BackupRecord> = self
                    .control
                    .list_backups(scope, false)
                    .await?
                    .into_iter()
                    .filter(|b| b.taken_at <= t && b.verify_error.is_none())
                    .collect();
                if list.is_empty() {
                    return Err(ControlError::Invalid(format!(
                        "{scope} has no usable backup taken at or before {}",
                        format_time(t)
                    )));
                }
                Ok(list)
            }
        }
    }

    /// Restores clinic `clinic` to `target` (see `ward restore`).
    ///
    /// Takes the operator lock (refused if another operator holds it), restores the first
    /// candidate that passes its checks (a candidate that fails is marked failed and the
    /// next older one is tried, unless a backup was named), switches files, records the
    /// restore and releases the lock. With `dry_run`, only checks the chosen backup.
    #[expect(clippy::too_many_arguments, reason = "mirrors the command line")]
    pub async fn restore_clinic(
        &self,
        clinic: ClinicId,
        target: RestoreTarget,
        reason: &str,
        actor: &Actor,
        dry_run: bool,
        chosen: &mut (dyn FnMut(&BackupRecord) + Send),
        hook: StepHook<'_>,
    ) -> Result<RestoreReport, ControlError> {
        let started = Instant::now();
        let scope = Scope::Clinic(clinic);
        if reason.trim().is_empty() {
            return Err(ControlError::Invalid(
                "a restore needs a reason (--reason \"…\")".into(),
            ));
        }
        let candidates = self.candidates(scope, target).await?;
        let named = matches!(target, RestoreTarget::Backup(_));
        let lock = if dry_run {
            None
        } else {
            Some(self.tenants.lock(clinic, reason).await.map_err(|e| match e {
                TenantError::Maintenance(_) => ControlError::Busy(format!(
                    "clinic {clinic} is locked by another operator (a restore or purge is running); try again when it has finished"
                )),
                other => other.into(),
            })?)
        };
        let now = self.now();
        let mut skipped = Vec::new();
        let last_step = Mutex::new(RestoreStep::Prepare);
        let mut outcome = None;
        for candidate in candidates {
            chosen(&candidate);
            let path = self.config.dir.join(&candidate.file);
            let expected = expected_of(&candidate);
            let result = match &lock {
                None => self
                    .tenants
                    .verify_backup(
                        clinic,
                        &path,
                        &self.scratch(),
                        &expected,
                        self.check.as_ref(),
                    )
                    .await
                    .map(|checked| ward_tenancy::RestoreOutcome {
                        checked,
                        before: None,
                        after: None,
                        pre_restore: None,
                        migration: None,
                    }),
                Some(lock) => {
                    let mut tracked = |s: RestoreStep| {
                        *last_step.lock().unwrap_or_else(PoisonError::into_inner) = s;
                        hook(s)
                    };
                    self.tenants
                        .restore(
                            clinic,
                            lock,
                            &path,
                            &expected,
                            self.check.as_ref(),
                            &stamp(now),
                            false,
                            &mut tracked,
                        )
                        .await
                }
            };
            let step = *last_step.lock().unwrap_or_else(PoisonError::into_inner);
            match result {
                Ok(o) => {
                    outcome = Some((candidate, o));
                    break;
                }
                Err(e) if step == RestoreStep::Prepare && is_bad_backup(&e) => {
                    let reason = e.to_string();
                    tracing::error!(clinic = %clinic, backup = %candidate.id, error = %reason, "a backup FAILED its check during a restore; marked as failed");
                    self.control
                        .record_verification(candidate.id, self.now(), Some(&reason))
                        .await?;
                    self.control.refresh_verified_state(scope).await?;
                    skipped.push(Failure {
                        scope: scope.key(),
                        backup_id: Some(candidate.id),
                        reason,
                    });
                    if named {
                        return Err(ControlError::Invalid(format!(
                            "backup {} failed its check: {}",
                            candidate.id, skipped[0].reason
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some((backup, outcome)) = outcome else {
            return Err(ControlError::Invalid(format!(
                "no backup of clinic {clinic} at or before the requested time passed its check ({} tried)",
                skipped.len()
            )));
        };
        let mut warnings = Vec::new();
        if let Some(lock) = &lock {
            let pre_restore = outcome
                .pre_restore
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            let detail = serde_json::json!({
                "rows_before": outcome.before, "rows_after": outcome.after,
            })
            .to_string();
            self.control
                .record_restore(scope, &backup, now, actor, reason, pre_restore, &detail)
                .await?;
            let entry = RestoreAuditEntry {
                clinic,
                actor: actor.clone(),
                reason: reason.to_owned(),
                backup_id: backup.id,
                backup_taken_at: backup.taken_at,
                at: now,
            };
            if let Err(e) = self
                .record_restore_in_clinic_audit(clinic, lock, &entry)
                .await
            {
                tracing::error!(clinic = %clinic, error = %e, "the restore is done but its entry in the clinic's audit log could not be written");
                warnings.push(format!(
                    "the clinic's audit log entry could not be written: {e}"
                ));
            }
            tracing::info!(clinic = %clinic, backup = %backup.id, actor = actor.to_string(), "clinic restored");
        }
        drop(lock);
        Ok(RestoreReport {
            schema_from: outcome.checked.schema_version,
            schema_to: outcome
                .migration
                .map_or(outcome.checked.schema_version, |m| m.to),
            tables_restored: outcome.checked.tables,
            tables_before: outcome.before,
            tables_after: outcome.after,
            pre_restore: outcome.pre_restore,
            backup,
            skipped,
            dry_run,
            warnings,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Appends the `restore` entry to the restored clinic's own audit log, under the
    /// operator lock, through the [`RestoreAudit`] hook.
    async fn record_restore_in_clinic_audit(
        &self,
        clinic: ClinicId,
        lock: &ward_tenancy::OperatorLock,
        entry: &RestoreAuditEntry,
    ) -> Result<(), String> {
        let audit = self.audit.clone();
        let entry = entry.clone();
        self.tenants
            .with_locked(clinic, lock, |conn| async move {
                audit.record_restore(&conn, &entry).await
            })
            .await
            .map_err(|e| e.to_string())?
    }
}
