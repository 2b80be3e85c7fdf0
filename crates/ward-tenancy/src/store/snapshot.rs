//! Backups of a clinic through the store: a snapshot of a clinic in use, checking a
//! backup file, and restoring one under the operator lock (the switch of files and the
//! reopening through the store).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ward_core::ClinicId;

use super::{Opening, TenantError, TenantStore};
use crate::backup::{
    self, BackupError, Checked, ContentCheck, Digest, Expected, RestoreStep, StepHook,
};
use crate::db::{self, Durability, blocking};
use crate::keys::DataKey;
use crate::lockfile::OperatorLock;
use crate::migrate::MigrateOutcome;
use crate::pin::Pin;

/// How long a restore waits for other processes to close a clinic it has locked
/// (`ward serve` closes locked clinics within about a second).
pub const RESTORE_WAIT: Duration = Duration::from_secs(30);

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// What checking the restored copy found (rows per table as restored).
    pub checked: Checked,
    /// Rows per table in the live file before, if it could be read.
    pub before: Option<std::collections::BTreeMap<String, u64>>,
    /// Rows per table after the switch and migrations; `None` for a dry run.
    pub after: Option<std::collections::BTreeMap<String, u64>>,
    /// Where the replaced file was kept; `None` for a dry run.
    pub pre_restore: Option<PathBuf>,
    /// What opening the restored file migrated; `None` for a dry run.
    pub migration: Option<MigrateOutcome>,
}

impl TenantStore {
    /// A cheap summary of clinic `id`'s files (identity, size and modification time of
    /// the database and its WAL): when it is unchanged, so is the clinic. `None` if the
    /// file is missing. A checkpoint changes it without changing the data, which costs at
    /// most one needless backup.
    pub fn fingerprint(&self, id: ClinicId) -> Option<String> {
        use std::os::unix::fs::MetadataExt as _;
        let path = self.path_of(id);
        let part = |m: &std::fs::Metadata| {
            format!("{}.{}.{}.{}", m.ino(), m.len(), m.mtime(), m.mtime_nsec())
        };
        let db = std::fs::metadata(&path).ok()?;
        // An empty WAL and no WAL hold the same data: closing a clinic empties it.
        let wal = std::fs::metadata(backup::sidecar(&path, "-wal"))
            .ok()
            .filter(|m| m.len() > 0)
            .map(|m| part(&m))
            .unwrap_or_else(|| "-".to_owned());
        Some(format!("{}/{wal}", part(&db)))
    }

    /// Writes a consistent, encrypted snapshot of clinic `id` to the new file `dest`
    /// (whose folder exists), through a connection of its own so the clinic's requests
    /// are not held up. Refused while an operator holds the clinic's lock.
    pub async fn snapshot(&self, id: ClinicId, dest: &Path) -> Result<Digest, BackupError> {
        self.check_running()?;
        if self.is_locked(id) {
            return Err(TenantError::Maintenance(id).into());
        }
        let key = self.data_key(id).await?;
        let pin = self.pin_shared(id, false)?;
        let path = self.path_of(id);
        let digest = blocking(async {
            let opened = db::open(&path, &key, false, Durability::Full).await?;
            let digest = backup::snapshot(&opened.conn, dest).await;
            drop(opened);
            digest
        })
        .await;
        drop(pin);
        digest
    }

    /// Checks the backup `source` of clinic `id` by restoring it into a scratch file in
    /// `scratch_dir`.
    pub async fn verify_backup(
        &self,
        id: ClinicId,
        source: &Path,
        scratch_dir: &Path,
        expected: &Expected,
        check: &dyn ContentCheck,
    ) -> Result<Checked, BackupError> {
        let key = self.data_key(id).await?;
        let expected = Expected {
            latest_schema: self.latest_version(),
            ..expected.clone()
        };
        blocking(backup::verify(source, scratch_dir, &key, &expected, check)).await
    }

    /// Restores clinic `id` from the backup file `source`, under the operator's `lock`.
    ///
    /// The backup is restored into `<uuid>.db.restoring` beside the live file and checked
    /// (hash, integrity, schema, `check`); with `dry_run` that is all, and the file is
    /// removed. Otherwise the restore waits until no process has the clinic open, counts
    /// the live rows, checkpoints, keeps the live file as `<uuid>.db.pre-restore-<stamp>`,
    /// switches to the restored file with one rename, and opens it through the store,
    /// which runs pending migrations. Any failure before the rename leaves the live file
    /// as it was; a crash at any point leaves a whole database, old or new, under the
    /// live name.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per caller, all named"
    )]
    pub async fn restore(
        &self,
        id: ClinicId,
        _lock: &OperatorLock,
        source: &Path,
        expected: &Expected,
        check: &dyn ContentCheck,
        stamp: &str,
        dry_run: bool,
        mut hook: StepHook<'_>,
    ) -> Result<RestoreOutcome, BackupError> {
        self.check_running()?;
        let key = self.data_key(id).await?;
        let live = self.path_of(id);
        let prepared = self.inner.clinics_dir.join(format!("{id}.db.restoring"));
        let expected = Expected {
            latest_schema: self.latest_version(),
            ..expected.clone()
        };
        backup::step(&mut hook, RestoreStep::Prepare)?;
        let checked = blocking(backup::restore_copy(
            source, &prepared, &key, &expected, check,
        ))
        .await?;
        if dry_run {
            backup::remove_database_and_sidecars(&prepared)?;
            return Ok(RestoreOutcome {
                checked,
                before: None,
                after: None,
                pre_restore: None,
                migration: None,
            });
        }
        let swapped = self
            .swap(id, &key, &live, &prepared, stamp, &mut hook)
            .await;
        let (before, pre_restore) = match swapped {
            Ok(v) => v,
            Err(e) => {
                let _ = backup::remove_database_and_sidecars(&prepared);
                return Err(e);
            }
        };
        backup::step(&mut hook, RestoreStep::Migrate)?;
        // The operator lock still keeps everyone else out; this process opens the clinic
        // directly, as `get` would refuse a locked clinic.
        let (tenant, migration) = self.open_with(id, Opening::UnderLock).await?;
        let after = tenant
            .with(|conn| backup::table_counts(&conn))
            .await
            .map_err(BackupError::Db)?;
        drop(tenant);
        Ok(RestoreOutcome {
            checked,
            before,
            after: Some(after),
            pre_restore: Some(pre_restore),
            migration: Some(migration),
        })
    }

    async fn swap(
        &self,
        id: ClinicId,
        key: &DataKey,
        live: &Path,
        prepared: &Path,
        stamp: &str,
        hook: &mut StepHook<'_>,
    ) -> Result<(Option<std::collections::BTreeMap<String, u64>>, PathBuf), BackupError> {
        backup::step(hook, RestoreStep::Exclusive)?;
        self.close_now(id).await;
        let pin_path = self.pin_path(id);
        let pin = blocking(async { Pin::exclusive(&pin_path, RESTORE_WAIT) })
            .await
            .map_err(BackupError::io("cannot pin", &pin_path))?
            .ok_or_else(|| {
                BackupError::Busy(format!(
                    "clinic {id} is still open in another process after {} s; is a `ward serve` without backup support running on this data?",
                    RESTORE_WAIT.as_secs()
                ))
            })?;
        backup::step(hook, RestoreStep::Checkpoint)?;
        let before = blocking(async {
            // The live file may be the damaged one being replaced: not opening it is no
            // reason to refuse the restore (its WAL is then kept with the old file).
            let opened = db::open(live, key, false, Durability::Full).await.ok()?;
            let counts = backup::table_counts(&opened.conn).ok();
            let _ = opened
                .conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .await;
            drop(opened);
            counts
        })
        .await;
        let pre_restore = self
            .inner
            .clinics_dir
            .join(format!("{id}.db.pre-restore-{stamp}"));
        let pre_restore =
            blocking(async { backup::swap_in(live, prepared, &pre_restore, hook) }).await?;
        drop(pin);
        Ok((before, pre_restore))
    }
}
