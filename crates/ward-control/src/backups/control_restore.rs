//! Restoring the control plane, and the guard that keeps `ward serve` and such a
//! restore from running at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;
use ward_core::Actor;
use ward_tenancy::backup::{
    self, AuditTableReadable, BackupError, Expected, RestoreStep, StepHook,
};
use ward_tenancy::{MasterKey, Pin, TenantStore, blocking, migrate};

use super::manifests::{Manifest, scan_manifests};
use super::{BackupConfig, Backups, stamp};
use crate::catalog::{BackupRecord, Scope};
use crate::store::PIN_FILE;
use crate::{ControlError, ControlPlane};

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
        Ok(pid_lock(&Self::path(data_dir))?.map(|file| Self { _file: file }))
    }

    /// The pid written by the guard's last holder.
    pub fn holder_pid(data_dir: &Path) -> Option<u32> {
        pid_in(&Self::path(data_dir))
    }

    /// Takes the guard for work `ward serve` must not run beside, refusing while it
    /// runs: the refusal asks to stop it before `doing` ("restoring the control plane").
    pub(crate) fn acquire_before(data_dir: &Path, doing: &str) -> Result<Self, ControlError> {
        Self::acquire(data_dir)
            .map_err(|e| {
                ControlError::Invalid(format!(
                    "cannot take {}: {e}",
                    Self::path(data_dir).display()
                ))
            })?
            .ok_or_else(|| {
                held_by(&Self::path(data_dir), |pid| {
                    format!(
                        "ward serve{pid} is running on this data directory; stop it before {doing}"
                    )
                })
            })
    }
}

/// Takes an exclusive `flock` on `path` (created if missing) and writes this process's
/// pid into it; `Ok(None)` if another process holds it. The kernel releases it when the
/// process dies.
pub(crate) fn pid_lock(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::io::{Seek as _, Write as _};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(Some(file))
}

/// The pid the last holder of the lock file `path` wrote.
pub(crate) fn pid_in(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The refusal while another process holds the lock file `path`: `message` is given
/// the holder as " (pid N)", or "" when its pid cannot be read.
pub(crate) fn held_by(path: &Path, message: impl FnOnce(&str) -> String) -> ControlError {
    let pid = pid_in(path)
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    ControlError::Busy(message(&pid))
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
    actor: &Actor,
    dry_run: bool,
    clock: Arc<dyn ward_core::Clock>,
    mut hook: StepHook<'_>,
) -> Result<ControlRestoreReport, ControlError> {
    let started = Instant::now();
    let guard = ServeGuard::acquire_before(data_dir, "restoring the control plane")?;
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
