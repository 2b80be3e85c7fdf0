//! Checking backups: restoring a copy into the scratch folder and checking it, after
//! every backup and in the restore drill.

use std::path::Path;
use std::time::Instant;

use futures::StreamExt as _;
use rand::seq::SliceRandom as _;
use serde::Serialize;
use ward_core::{ClinicId, ClinicStatus};
use ward_tenancy::backup::{self, AuditTableReadable, BackupError, Checked, Digest, Expected};
use ward_tenancy::{blocking, migrate};

use super::{Backups, Failure, Progress};
use crate::ControlError;
use crate::catalog::{BackupRecord, Scope};

/// What a drill found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DrillSummary {
    /// Scopes drilled.
    pub checked: u64,
    /// Whose newest backup restored and checked out.
    pub passed: u64,
    /// Those that did not (or had no backup).
    pub failed: Vec<Failure>,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

impl Backups {
    /// Restores `path` (a backup of `scope`) into a scratch file and checks it.
    pub(super) async fn check_file(
        &self,
        scope: Scope,
        path: &Path,
        expected: &Expected,
    ) -> Result<Checked, BackupError> {
        match scope {
            Scope::Clinic(c) => {
                self.tenants
                    .verify_backup(c, path, &self.scratch(), expected, self.check.as_ref())
                    .await
            }
            Scope::Control => {
                let expected = Expected {
                    latest_schema: migrate::latest(ward_tenancy::migrations::CONTROL),
                    ..expected.clone()
                };
                let key = self.control.data_key().clone();
                blocking(backup::verify(
                    path,
                    &self.scratch(),
                    &key,
                    &expected,
                    &AuditTableReadable,
                ))
                .await
            }
        }
    }

    /// Removes what an interrupted process left in the scratch folder (copies being
    /// checked). Called when `ward serve` starts.
    pub fn sweep_scratch(&self) {
        let scratch = self.scratch();
        for e in std::fs::read_dir(&scratch).into_iter().flatten().flatten() {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err, "cannot remove a scratch file");
            }
        }
    }

    /// The restore drill: restores the newest backup of each scope (every clinic and the
    /// control plane, or a random `sample` of the clinics, or one `clinic`) into scratch
    /// files and checks it. A failure marks the backup as failed and is logged as an
    /// error; the outcome per scope shows on `/status`.
    pub async fn drill(
        &self,
        sample: Option<usize>,
        clinic: Option<ClinicId>,
        progress: Progress<'_>,
    ) -> Result<DrillSummary, ControlError> {
        let started = Instant::now();
        let mut scopes: Vec<Scope> = match clinic {
            Some(c) => vec![Scope::Clinic(c)],
            None => {
                let mut clinics: Vec<Scope> = self
                    .control
                    .list_clinics()
                    .await?
                    .into_iter()
                    .filter(|c| c.status != ClinicStatus::Purged)
                    .map(|c| Scope::Clinic(c.id))
                    .collect();
                if let Some(n) = sample {
                    clinics.shuffle(&mut rand::thread_rng());
                    clinics.truncate(n);
                }
                clinics.push(Scope::Control);
                clinics
            }
        };
        scopes.sort();
        let mut summary = DrillSummary {
            checked: scopes.len() as u64,
            ..DrillSummary::default()
        };
        let mut results = futures::stream::iter(scopes)
            .map(|scope| async move { (scope, self.drill_one(scope).await) })
            .buffer_unordered(self.config.parallel.max(1));
        while let Some((scope, result)) = results.next().await {
            match result {
                Ok(()) => summary.passed += 1,
                Err(f) => summary.failed.push(f),
            }
            progress(&scope.key());
        }
        drop(results);
        if clinic.is_none() && sample.is_none() {
            self.control.set_job_ran_at("drill", self.now()).await?;
        }
        summary.duration_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }

    async fn drill_one(&self, scope: Scope) -> Result<(), Failure> {
        let fail = |backup_id, reason: String| Failure {
            scope: scope.key(),
            backup_id,
            reason,
        };
        let list = self
            .control
            .list_backups(scope, false)
            .await
            .map_err(|e| fail(None, e.to_string()))?;
        let Some(newest) = list.into_iter().next() else {
            let reason = "no backup to restore".to_owned();
            let _ = self
                .control
                .record_drill(scope, self.now(), Some(&reason), None)
                .await;
            tracing::error!(scope = %scope.key(), "restore drill failed: no backup to restore");
            return Err(fail(None, reason));
        };
        let result = self
            .check_file(
                scope,
                &self.config.dir.join(&newest.file),
                &expected_of(&newest),
            )
            .await;
        let now = self.now();
        let error = result.as_ref().err().map(ToString::to_string);
        let record = async {
            self.control
                .record_verification(newest.id, now, error.as_deref())
                .await?;
            self.control
                .record_drill(
                    scope,
                    now,
                    error.as_deref(),
                    error.is_none().then_some(newest.taken_at),
                )
                .await?;
            if error.is_some() {
                self.control.refresh_verified_state(scope).await?;
            }
            Ok::<_, ControlError>(())
        };
        if let Err(e) = record.await {
            tracing::error!(scope = %scope.key(), error = %e, "cannot record a drill result");
        }
        match error {
            None => Ok(()),
            Some(reason) => {
                tracing::error!(scope = %scope.key(), backup = %newest.id, error = %reason, "restore drill FAILED: the newest backup does not restore");
                Err(fail(Some(newest.id), reason))
            }
        }
    }
}

pub(super) fn expected_of(b: &BackupRecord) -> Expected {
    Expected {
        digest: Some(Digest {
            size: b.size,
            sha256: b.sha256.clone(),
        }),
        schema_version: (b.schema_version > 0).then_some(b.schema_version),
        chain_head: b.chain_head.clone(),
        latest_schema: 0,
    }
}
