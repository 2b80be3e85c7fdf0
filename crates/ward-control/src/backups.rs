//! Backups of every clinic and of the control plane: taking them, checking them, keeping
//! the right ones, drills, and restores.
//!
//! Layout of the backup directory (`WARD_BACKUP_DIR`, default `<data>/backups/`), every
//! name built from ids and times only:
//!
//! ```text
//! clinics/<clinic uuid>/<YYYYMMDDTHHMMSS.mmmZ>-<backup uuid>.db    encrypted snapshot
//! clinics/<clinic uuid>/<YYYYMMDDTHHMMSS.mmmZ>-<backup uuid>.json  its manifest
//! control/<YYYYMMDDTHHMMSS.mmmZ>-<backup uuid>.db|.json            the control plane
//! tmp/                                                             scratch for checks
//! ```
//!
//! A manifest repeats the catalog row (no clinic data), so the folder describes itself:
//! the control plane can be restored without a working `control.db`, and backups the
//! catalog does not know (taken after the restored control-plane backup) are adopted.
//! The catalog's `kind` and `target` columns leave room for WAL segments between
//! snapshots and an object-store target behind the same [`RestoreTarget`] interface.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures::StreamExt as _;
use rand::seq::SliceRandom as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use ward_core::{ClinicId, ClinicStatus, format_time};
use ward_tenancy::backup::{
    self, AuditTableReadable, BackupError, ChainHead, Checked, ContentCheck, Digest, Expected,
    RestoreStep, StepHook,
};
use ward_tenancy::{MasterKey, Pin, TenantError, TenantStore, blocking, migrate};

use crate::catalog::{BackupRecord, NewBackup, Scope};
use crate::store::PIN_FILE;
use crate::{ControlError, ControlPlane};

/// Format and version written into every manifest.
const MANIFEST_FORMAT: &str = "ward-backup";
const MANIFEST_VERSION: u32 = 1;

/// How backups are taken and kept.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// The backup directory (`WARD_BACKUP_DIR`); meant to be another disk than the data.
    pub dir: PathBuf,
    /// Every backup younger than this is kept (default 48 hours).
    pub keep_all: TimeDelta,
    /// Beyond that, the newest good backup of each of this many UTC days (default 35).
    pub keep_daily_days: u32,
    /// Most backups or checks running at once (`WARD_BACKUP_PARALLEL`, default 2).
    pub parallel: usize,
}

impl BackupConfig {
    /// The defaults, writing to `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            keep_all: TimeDelta::hours(48),
            keep_daily_days: 35,
            parallel: 2,
        }
    }
}

/// The facts of one backup file, written as JSON beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `ward-backup`.
    pub format: String,
    /// Manifest format version.
    pub version: u32,
    /// The backup's id.
    pub id: Uuid,
    /// What it is a backup of.
    pub scope: Scope,
    /// `snapshot`.
    pub kind: String,
    /// The moment it represents.
    pub taken_at: DateTime<Utc>,
    /// Size and SHA-256 of the `.db` file.
    pub digest: Digest,
    /// Schema version of the copy (0 if its first check failed).
    pub schema_version: u32,
    /// Audit chain head, when known.
    pub chain_head: Option<ChainHead>,
}

/// An entry for the restored clinic's own audit log.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreAuditEntry {
    /// The clinic restored.
    pub clinic: ClinicId,
    /// Who restored (the operator).
    pub actor: String,
    /// Why, as the operator typed it.
    pub reason: String,
    /// The backup restored from.
    pub backup_id: Uuid,
    /// The moment it represents.
    pub backup_taken_at: DateTime<Utc>,
    /// When the restore happened.
    pub at: DateTime<Utc>,
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

/// One scope that failed, and why (for the operator; no clinic data).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// `control` or the clinic id.
    pub scope: String,
    /// The backup concerned, if one was written.
    pub backup_id: Option<Uuid>,
    /// What went wrong.
    pub reason: String,
}

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

/// Backups of one data directory.
pub struct Backups {
    control: Arc<ControlPlane>,
    tenants: TenantStore,
    config: BackupConfig,
    check: Arc<dyn ContentCheck>,
    audit: Arc<dyn RestoreAudit>,
}

/// A progress callback: one call per scope done.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

fn manifest_path(db_file: &Path) -> PathBuf {
    db_file.with_extension("json")
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
    /// Backups of `control`'s clinics (opened through `tenants`) into `config.dir`, with
    /// the stand-in content check and audit hook.
    pub fn new(control: Arc<ControlPlane>, tenants: TenantStore, config: BackupConfig) -> Self {
        Self {
            control,
            tenants,
            config,
            check: Arc::new(AuditTableReadable),
            audit: Arc::new(NoClinicAuditLog),
        }
    }

    /// Uses `check` (the audit chain verifier) on every restored copy.
    pub fn with_content_check(mut self, check: Arc<dyn ContentCheck>) -> Self {
        self.check = check;
        self
    }

    /// Uses `audit` to write the restore entry into restored clinics.
    pub fn with_restore_audit(mut self, audit: Arc<dyn RestoreAudit>) -> Self {
        self.audit = audit;
        self
    }

    /// The settings.
    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    fn now(&self) -> DateTime<Utc> {
        self.control.clock.now()
    }

    fn scratch(&self) -> PathBuf {
        self.config.dir.join("tmp")
    }

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

    /// Restores `path` (a backup of `scope`) into a scratch file and checks it.
    async fn check_file(
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

    /// Removes the backups of `scope` that the retention tiers no longer keep; returns
    /// how many.
    pub async fn apply_retention(&self, scope: Scope) -> Result<usize, ControlError> {
        let now = self.now();
        let list = self.control.list_backups(scope, false).await?;
        let plan: Vec<(Uuid, DateTime<Utc>, bool)> = list
            .iter()
            .map(|b| (b.id, b.taken_at, b.is_good()))
            .collect();
        let doomed = retention_plan(
            &plan,
            now,
            self.config.keep_all,
            self.config.keep_daily_days,
        );
        if doomed.is_empty() {
            return Ok(0);
        }
        let doomed_set: HashSet<Uuid> = doomed.iter().copied().collect();
        for b in list.iter().filter(|b| doomed_set.contains(&b.id)) {
            let path = self.config.dir.join(&b.file);
            for p in [manifest_path(&path), path] {
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::error!(path = %p.display(), error = %e, "cannot remove an expired backup")
                    }
                }
            }
        }
        self.control.mark_backups_deleted(&doomed, now).await?;
        Ok(doomed.len())
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
        actor: &str,
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
                actor: actor.to_owned(),
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
            tracing::info!(clinic = %clinic, backup = %backup.id, actor, "clinic restored");
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

    /// Catalogs every backup in the backup directory that has a manifest but no catalog
    /// row (e.g. taken after the control-plane backup that was restored), unverified;
    /// returns how many. Backups of clinics the control plane does not know are left out.
    pub async fn adopt_orphans(&self) -> Result<usize, ControlError> {
        let manifests = blocking(async { scan_manifests(&self.config.dir) }).await;
        let known: HashSet<Uuid> = self
            .control
            .list_clinics()
            .await?
            .into_iter()
            .map(|c| *c.id.as_uuid())
            .collect();
        let mut adopted = 0;
        for (file, m) in manifests {
            if let Scope::Clinic(c) = m.scope
                && !known.contains(c.as_uuid())
            {
                continue;
            }
            if self.control.backup_by_id(m.id).await?.is_some() {
                continue;
            }
            let record = BackupRecord {
                id: m.id,
                scope: m.scope,
                kind: m.kind,
                target: "dir".into(),
                file,
                taken_at: m.taken_at,
                size: m.digest.size,
                sha256: m.digest.sha256,
                schema_version: m.schema_version,
                chain_head: m.chain_head,
                trigger: "adopted".into(),
                verified_at: None,
                verify_error: None,
                deleted_at: None,
            };
            self.control
                .record_new_backup(NewBackup {
                    record: &record,
                    fingerprint: None,
                    now: self.now(),
                })
                .await?;
            adopted += 1;
        }
        Ok(adopted)
    }
}

fn expected_of(b: &BackupRecord) -> Expected {
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

/// Which backups the tiers drop: all younger than `keep_all` stay; beyond that, the
/// newest good backup of each of the last `keep_daily_days` UTC days stays; and the
/// newest good backup of all always stays (a clinic that has not changed for months
/// still has one). Everything else goes. `backups` are `(id, taken_at, good)`.
pub fn retention_plan(
    backups: &[(Uuid, DateTime<Utc>, bool)],
    now: DateTime<Utc>,
    keep_all: TimeDelta,
    keep_daily_days: u32,
) -> Vec<Uuid> {
    let mut keep: HashSet<Uuid> = HashSet::new();
    let first_day: NaiveDate =
        (now - TimeDelta::days(i64::from(keep_daily_days.saturating_sub(1)))).date_naive();
    let mut newest_per_day: BTreeMap<NaiveDate, (DateTime<Utc>, Uuid)> = BTreeMap::new();
    let mut newest_good: Option<(DateTime<Utc>, Uuid)> = None;
    for &(id, at, good) in backups {
        if at >= now - keep_all {
            keep.insert(id);
        }
        if !good {
            continue;
        }
        if newest_good.is_none_or(|(t, _)| at > t) {
            newest_good = Some((at, id));
        }
        let day = at.date_naive();
        if keep_daily_days > 0 && day >= first_day {
            let e = newest_per_day.entry(day).or_insert((at, id));
            if at > e.0 {
                *e = (at, id);
            }
        }
    }
    keep.extend(newest_per_day.values().map(|(_, id)| *id));
    keep.extend(newest_good.map(|(_, id)| id));
    backups
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !keep.contains(id))
        .collect()
}

fn write_manifest(db_file: &Path, m: &Manifest) -> Result<(), BackupError> {
    let path = manifest_path(db_file);
    let partial = path.with_extension("json.partial");
    let text = serde_json::to_vec_pretty(m)
        .map_err(|e| BackupError::io("cannot encode", &path)(std::io::Error::other(e)))?;
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&partial, &path)
    };
    // The folder is not synced for it: a manifest only matters for adopting backups
    // into a restored catalog, and one lost in a crash leaves the backup catalogued.
    write().map_err(BackupError::io("cannot write", &path))
}

/// Every manifest under `dir`, with its `.db` file's path relative to `dir`.
fn scan_manifests(dir: &Path) -> Vec<(String, Manifest)> {
    let mut folders = vec![(dir.join("control"), "control".to_owned())];
    if let Ok(entries) = std::fs::read_dir(dir.join("clinics")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ClinicId::parse(&name).is_ok() {
                folders.push((e.path(), format!("clinics/{name}")));
            }
        }
    }
    let mut out = Vec::new();
    for (folder, rel) in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Some(m) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
                .filter(|m| m.format == MANIFEST_FORMAT)
            else {
                continue;
            };
            let db = path.with_extension("db");
            if !db.exists() {
                continue;
            }
            let name = db.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some(name) = name {
                out.push((format!("{rel}/{name}"), m));
            }
        }
    }
    out
}

/// Held by `ward serve` for as long as it runs (an exclusive `flock` on
/// `<data>/serve.pid`, which also holds its pid); a control-plane restore takes it too, so
/// neither starts while the other runs. Released by the kernel if the process dies.
#[derive(Debug)]
pub struct ServeGuard {
    _file: std::fs::File,
}

impl ServeGuard {
    /// The guard file in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("serve.pid")
    }

    /// Takes the guard and records this process's pid in it; `Ok(None)` if another
    /// process holds it.
    pub fn acquire(data_dir: &Path) -> std::io::Result<Option<Self>> {
        use std::io::{Seek as _, Write as _};
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(Self::path(data_dir))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(Some(Self { _file: file }))
    }

    /// The pid written by the guard's last holder.
    pub fn holder_pid(data_dir: &Path) -> Option<u32> {
        std::fs::read_to_string(Self::path(data_dir))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// What a control-plane restore did.
#[derive(Debug, Clone, Serialize)]
pub struct ControlRestoreReport {
    /// The backup restored from, as its manifest describes it.
    pub backup: Manifest,
    /// Only checked.
    pub dry_run: bool,
    /// Rows per table before (if readable), as restored, and after migrations.
    pub tables_before: Option<BTreeMap<String, u64>>,
    /// Rows per table in the backup.
    pub tables_restored: BTreeMap<String, u64>,
    /// Where the replaced file was kept.
    pub pre_restore: Option<PathBuf>,
    /// Backups found in the folder and added to the restored catalog.
    pub adopted: usize,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

/// Restores the control plane of `data_dir` from backup `id` in `backup_dir`, found by
/// its manifest (the catalog may be the thing being repaired).
///
/// Refused while `ward serve` runs on the data directory (its [`ServeGuard`]) or any
/// other command has the control plane open (its pin); holds the guard throughout so
/// that `ward serve` cannot start half-way. The same switch as a clinic restore: checked
/// copy beside the live file, hard link to `control.db.pre-restore-<time>`, one rename.
/// Afterwards the restored control plane is opened (migrated), the restore recorded and
/// newer backups adopted into its catalog.
#[expect(clippy::too_many_arguments, reason = "mirrors the command line")]
pub async fn restore_control_plane(
    data_dir: &Path,
    backups: BackupConfig,
    master: &MasterKey,
    id: Uuid,
    reason: &str,
    actor: &str,
    dry_run: bool,
    clock: Arc<dyn ward_core::Clock>,
    mut hook: StepHook<'_>,
) -> Result<ControlRestoreReport, ControlError> {
    let started = Instant::now();
    let guard = ServeGuard::acquire(data_dir)
        .map_err(|e| ControlError::Invalid(format!("cannot take {}: {e}", ServeGuard::path(data_dir).display())))?
        .ok_or_else(|| {
            let pid = ServeGuard::holder_pid(data_dir)
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            ControlError::Busy(format!(
                "ward serve{pid} is running on this data directory; stop it before restoring the control plane"
            ))
        })?;
    let (file, manifest) = blocking(async { scan_manifests(&backups.dir) })
        .await
        .into_iter()
        .find(|(_, m)| m.id == id && m.scope == Scope::Control)
        .ok_or_else(|| {
            ControlError::Invalid(format!(
                "there is no control-plane backup {id} in {}",
                backups.dir.display()
            ))
        })?;
    let key = ControlPlane::key(master);
    let live = data_dir.join("control.db");
    let prepared = data_dir.join("control.db.restoring");
    let expected = Expected {
        digest: Some(manifest.digest.clone()),
        schema_version: (manifest.schema_version > 0).then_some(manifest.schema_version),
        chain_head: None,
        latest_schema: migrate::latest(ward_tenancy::migrations::CONTROL),
    };
    backup::step(&mut hook, RestoreStep::Prepare)?;
    let checked = blocking(backup::restore_copy(
        &backups.dir.join(&file),
        &prepared,
        &key,
        &expected,
        &AuditTableReadable,
    ))
    .await?;
    if dry_run {
        backup::remove_database_and_sidecars(&prepared)?;
        return Ok(ControlRestoreReport {
            backup: manifest,
            dry_run,
            tables_before: None,
            tables_restored: checked.tables,
            pre_restore: None,
            adopted: 0,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }
    let swapped = async {
        backup::step(&mut hook, RestoreStep::Exclusive)?;
        let pin_path = data_dir.join(PIN_FILE);
        let pin = Pin::exclusive(&pin_path, Duration::from_secs(2))
            .map_err(BackupError::io("cannot pin", &pin_path))?
            .ok_or_else(|| {
                BackupError::Busy(
                    "another ward command has the control plane open; wait for it to finish".into(),
                )
            })?;
        backup::step(&mut hook, RestoreStep::Checkpoint)?;
        let before = blocking(async {
            let opened = ward_tenancy::db::open(&live, &key, false, ward_tenancy::Durability::Full)
                .await
                .ok()?;
            let counts = backup::table_counts(&opened.conn).ok();
            let _ = opened
                .conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .await;
            counts
        })
        .await;
        let pre_restore = data_dir.join(format!("control.db.pre-restore-{}", stamp(clock.now())));
        let pre_restore = backup::swap_in(&live, &prepared, &pre_restore, &mut hook)?;
        drop(pin);
        Ok::<_, BackupError>((before, pre_restore))
    };
    let (before, pre_restore) = match swapped.await {
        Ok(v) => v,
        Err(e) => {
            let _ = backup::remove_database_and_sidecars(&prepared);
            return Err(e.into());
        }
    };
    backup::step(&mut hook, RestoreStep::Migrate)?;
    let (control, _) = ControlPlane::open(data_dir, master, clock.clone()).await?;
    let control = Arc::new(control);
    let record = BackupRecord {
        id: manifest.id,
        scope: Scope::Control,
        kind: manifest.kind.clone(),
        target: "dir".into(),
        file,
        taken_at: manifest.taken_at,
        size: manifest.digest.size,
        sha256: manifest.digest.sha256.clone(),
        schema_version: manifest.schema_version,
        chain_head: None,
        trigger: "adopted".into(),
        verified_at: Some(clock.now()),
        verify_error: None,
        deleted_at: None,
    };
    control
        .record_restore(
            Scope::Control,
            &record,
            clock.now(),
            actor,
            reason,
            pre_restore
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
            "{}",
        )
        .await?;
    // The store is only needed to satisfy `Backups`; adoption touches no clinic file.
    let tenants = TenantStore::new(
        ward_tenancy::StoreConfig::new(data_dir),
        master.clone(),
        control.clone(),
    )
    .map_err(|e| ControlError::Invalid(e.to_string()))?;
    let adopted = Backups::new(control, tenants, backups)
        .adopt_orphans()
        .await?;
    tracing::info!(backup = %id, adopted, "control plane restored");
    drop(guard);
    Ok(ControlRestoreReport {
        backup: manifest,
        dry_run,
        tables_before: before,
        tables_restored: checked.tables,
        pre_restore: Some(pre_restore),
        adopted,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_core::parse_time;

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn retention_keeps_two_days_of_everything_then_one_good_backup_a_day() {
        let now = at("2026-03-01T12:00:00Z");
        let mut backups = Vec::new();
        // One every 6 hours for 40 days back, the 03:00 one of every day failing.
        for h in (0..40 * 24).step_by(3) {
            let t = now - TimeDelta::hours(h);
            let good = t.format("%H").to_string() != "00";
            backups.push((Uuid::now_v7(), t, good));
        }
        let doomed: HashSet<Uuid> = retention_plan(&backups, now, TimeDelta::hours(48), 35)
            .into_iter()
            .collect();
        let kept: Vec<_> = backups.iter().filter(|b| !doomed.contains(&b.0)).collect();
        // Everything of the last 48 hours, good or not.
        for b in &backups {
            if b.1 >= now - TimeDelta::hours(48) {
                assert!(!doomed.contains(&b.0));
            }
        }
        // Beyond: exactly one per day, the newest good one, for days within 35 days.
        let old: Vec<_> = kept
            .iter()
            .filter(|b| b.1 < now - TimeDelta::hours(48))
            .collect();
        let days: HashSet<NaiveDate> = old.iter().map(|b| b.1.date_naive()).collect();
        assert_eq!(days.len(), old.len(), "one per day");
        assert!(old.iter().all(|b| b.2));
        assert!(old.iter().all(|b| b.1.format("%H").to_string() == "21"));
        let oldest = old.iter().map(|b| b.1).min().unwrap();
        assert_eq!(oldest.date_naive(), at("2026-01-26T00:00:00Z").date_naive());
    }

    #[test]
    fn retention_never_drops_the_only_good_backup() {
        let now = at("2026-03-01T12:00:00Z");
        let old = (Uuid::now_v7(), now - TimeDelta::days(100), true);
        let failed = (Uuid::now_v7(), now - TimeDelta::days(90), false);
        let doomed = retention_plan(&[old, failed], now, TimeDelta::hours(48), 35);
        assert_eq!(doomed, vec![failed.0]);
    }
}
