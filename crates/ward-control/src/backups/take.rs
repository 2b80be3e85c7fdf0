//! Taking backups: one scope now, a pass over the scopes that changed, and the daily
//! schedule (a full pass and a drill).

use std::path::Path;
use std::time::Instant;

use chrono::TimeDelta;
use futures::StreamExt as _;
use rand::seq::SliceRandom as _;
use serde::Serialize;
use uuid::Uuid;
use ward_core::ClinicStatus;
use ward_tenancy::TenantError;
use ward_tenancy::backup::{self, BackupError, Expected};

use super::manifests::{MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, write_manifest};
use super::{Backups, Failure, Progress, stamp};
use crate::ControlError;
use crate::catalog::{BackupRecord, NewBackup, Scope};

/// What one scheduled or operator pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PassSummary {
    /// Scopes looked at (clinics plus the control plane).
    pub considered: u64,
    /// Of those, changed since their last backup (all of them on a full pass).
    pub changed: u64,
    /// Backups taken and verified.
    pub backed_up: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Locked by an operator (restore, purge): left for the next pass.
    pub skipped_locked: u64,
    /// Scopes whose backup or its check failed.
    pub failed: Vec<Failure>,
    /// Old backups removed by retention.
    pub removed: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

impl Backups {
    /// The file summary of `scope` that says whether it changed.
    fn fingerprint(&self, scope: Scope) -> Option<String> {
        match scope {
            Scope::Clinic(id) => self.tenants.fingerprint(id),
            Scope::Control => {
                use std::os::unix::fs::MetadataExt as _;
                let path = self.control.path();
                let part = |p: &Path| {
                    std::fs::metadata(p)
                        .map(|m| {
                            format!("{}.{}.{}.{}", m.ino(), m.len(), m.mtime(), m.mtime_nsec())
                        })
                        .unwrap_or_else(|_| "-".into())
                };
                Some(format!(
                    "{}/{}",
                    part(path),
                    part(&backup::sidecar(path, "-wal"))
                ))
            }
        }
    }

    /// Takes one backup of `scope` now, checks it, writes its manifest and catalogs it.
    ///
    /// A backup whose check failed is still catalogued, with its error, and logged as an
    /// error; it shows on `/status` and is never restored from. The caller sees it as
    /// `verify_error` on the returned record.
    pub async fn backup(&self, scope: Scope, trigger: &str) -> Result<BackupRecord, ControlError> {
        let fingerprint = self.fingerprint(scope);
        let taken_at = self.now();
        let id = Uuid::now_v7();
        let file = format!("{}/{}-{id}.db", scope.folder(), stamp(taken_at));
        let path = self.config.dir.join(&file);
        let snapshot = async {
            let parent = path.parent().unwrap_or(&self.config.dir);
            std::fs::create_dir_all(parent).map_err(BackupError::io("cannot create", parent))?;
            match scope {
                Scope::Clinic(c) => self.tenants.snapshot(c, &path).await,
                Scope::Control => match self.control.snapshot(&path).await {
                    Ok(d) => Ok(d),
                    Err(ControlError::Backup(e)) => Err(e),
                    Err(e) => Err(BackupError::Busy(e.to_string())),
                },
            }
        };
        let digest = match snapshot.await {
            Ok(d) => d,
            // Locked by an operator: not a failure, the next pass takes it.
            Err(BackupError::Tenant(e @ TenantError::Maintenance(_))) => return Err(e.into()),
            Err(e) => {
                tracing::error!(scope = %scope.key(), error = %e, "backup failed");
                self.control
                    .record_backup_failure(scope, &e.to_string(), self.now())
                    .await?;
                return Err(e.into());
            }
        };
        let expected = Expected {
            digest: Some(digest.clone()),
            ..Expected::default()
        };
        let checked = self.check_file(scope, &path, &expected).await;
        let (schema_version, chain_head, verified_at, verify_error) = match &checked {
            Ok(c) => (
                c.schema_version,
                c.chain_head.clone(),
                Some(self.now()),
                None,
            ),
            Err(e) => (0, None, None, Some(e.to_string())),
        };
        let record = BackupRecord {
            id,
            scope,
            kind: "snapshot".into(),
            target: "dir".into(),
            file,
            taken_at,
            size: digest.size,
            sha256: digest.sha256.clone(),
            schema_version,
            chain_head: chain_head.clone(),
            trigger: trigger.to_owned(),
            verified_at,
            verify_error: verify_error.clone(),
            deleted_at: None,
        };
        write_manifest(
            &path,
            &Manifest {
                format: MANIFEST_FORMAT.into(),
                version: MANIFEST_VERSION,
                id,
                scope,
                kind: record.kind.clone(),
                taken_at,
                digest,
                schema_version,
                chain_head,
            },
        )?;
        if let Some(e) = &verify_error {
            tracing::error!(scope = %scope.key(), backup = %id, error = %e, "a new backup FAILED verification; it will not be restored from");
        }
        self.control
            .record_new_backup(NewBackup {
                record: &record,
                fingerprint,
                now: self.now(),
            })
            .await?;
        Ok(record)
    }

    /// Backs up the control plane and every clinic whose files changed since its last
    /// backup (all of them when `full`), at most `parallel` at once and in random order
    /// (so a pass does not always start with the same clinics), then applies retention
    /// to what it touched (to everything when `full`).
    pub async fn pass(
        &self,
        full: bool,
        trigger: &str,
        progress: Progress<'_>,
    ) -> Result<PassSummary, ControlError> {
        let started = Instant::now();
        let states = self.control.backup_states().await?;
        let clinics = self.control.list_clinics().await?;
        let mut scopes = vec![Scope::Control];
        scopes.extend(
            clinics
                .iter()
                .filter(|c| c.status != ClinicStatus::Purged)
                .map(|c| Scope::Clinic(c.id)),
        );
        let mut summary = PassSummary {
            considered: scopes.len() as u64,
            ..PassSummary::default()
        };
        let mut todo: Vec<Scope> = scopes
            .iter()
            .copied()
            .filter(|s| {
                full || {
                    let seen = states
                        .get(&s.key())
                        .and_then(|st| st.fingerprint.as_deref());
                    seen.is_none() || seen != self.fingerprint(*s).as_deref()
                }
            })
            .collect();
        todo.shuffle(&mut rand::thread_rng());
        summary.changed = todo.len() as u64;
        let mut results = futures::stream::iter(todo)
            .map(|scope| async move { (scope, self.backup(scope, trigger).await) })
            .buffer_unordered(self.config.parallel.max(1));
        let mut touched = Vec::new();
        while let Some((scope, result)) = results.next().await {
            match result {
                Ok(r) if r.verify_error.is_none() => {
                    summary.backed_up += 1;
                    summary.bytes += r.size;
                    touched.push(scope);
                }
                Ok(r) => summary.failed.push(Failure {
                    scope: scope.key(),
                    backup_id: Some(r.id),
                    reason: r.verify_error.unwrap_or_default(),
                }),
                Err(ControlError::Tenant(TenantError::Maintenance(_))) => {
                    summary.skipped_locked += 1;
                }
                Err(e) => summary.failed.push(Failure {
                    scope: scope.key(),
                    backup_id: None,
                    reason: e.to_string(),
                }),
            }
            progress(&scope.key());
        }
        drop(results);
        let retain = if full { scopes } else { touched };
        for scope in retain {
            match self.apply_retention(scope).await {
                Ok(n) => summary.removed += n as u64,
                Err(e) => {
                    tracing::error!(scope = %scope.key(), error = %e, "retention failed")
                }
            }
        }
        if full {
            self.control.set_job_ran_at("full_pass", self.now()).await?;
        }
        summary.duration_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }

    /// Runs the daily jobs that are due: a full pass and a drill, each at most once a day
    /// (remembered in the control plane across restarts).
    pub async fn run_daily_if_due(&self, progress: Progress<'_>) -> Result<(), ControlError> {
        let day = TimeDelta::hours(24);
        let now = self.now();
        if self
            .control
            .job_ran_at("full_pass")
            .await?
            .is_none_or(|t| now - t >= day)
        {
            let s = self.pass(true, "daily", progress).await?;
            tracing::info!(
                backed_up = s.backed_up,
                failed = s.failed.len(),
                removed = s.removed,
                ms = s.duration_ms,
                "daily full backup pass done"
            );
        }
        if self
            .control
            .job_ran_at("drill")
            .await?
            .is_none_or(|t| now - t >= day)
        {
            let s = self.drill(None, None, progress).await?;
            tracing::info!(
                passed = s.passed,
                failed = s.failed.len(),
                ms = s.duration_ms,
                "daily restore drill done"
            );
        }
        Ok(())
    }
}
