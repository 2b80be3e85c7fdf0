//! Rotating the master key: every clinic's wrapped data key and the control plane's own
//! encryption move to a new master key, so that a crash at any moment leaves a data
//! directory that opens, with one key or the other, and a second run finishes the job.
//!
//! The clinics' data keys do not change (their files are not touched); only the
//! wrapping of each data key does, and it lives in the control plane, whose file key is
//! itself derived from the master key. So the whole rotation is a change of one file:
//!
//! 1. The new key is kept first where a second run finds it: `<data>/master.key.next`
//!    (mode 0600) when the master key is the data directory's `master.key`; when it is
//!    configured (`WARD_MASTER_KEY`) the operator holds the new key and gives it again.
//! 2. Under the exclusive pin (no other process has the control plane open) and the
//!    serve guard (`ward serve` cannot start), a copy of the control plane is made beside
//!    it (`control.db.rotating`), every wrapped key in the copy is re-wrapped under the
//!    new master key, the copy is re-keyed to the new control-plane key and checked.
//!    Until now the live file is untouched: a crash leaves the old state whole, and the
//!    next run discards the copy and starts it again.
//! 3. One `rename` puts the copy in place of the live file (the same switch as a
//!    control-plane restore). Before it the control plane opens with the old key only,
//!    after it with the new key only: there is no moment with a mix.
//! 4. With `master.key`, the old key is kept as `master.key.old-<time>` (a hard link,
//!    mode 0600) and `master.key.next` is renamed over `master.key`.
//!
//! A second run tells where the first stopped from which key opens `control.db`: the old
//! one (steps 2–3 again), or the new one (only step 4 remains).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use ward_core::{ClinicId, Clock};
use ward_tenancy::backup::{self, RestoreStep};
use ward_tenancy::{DbError, Durability, MasterKey, Pin, db};

use crate::backups::ServeGuard;
use crate::store::PIN_FILE;
use crate::{ControlError, ControlPlane};

/// The master key file of a data directory without `WARD_MASTER_KEY`.
pub const KEY_FILE: &str = "master.key";
/// Where a rotation keeps the new key until it is installed as `master.key`.
pub const NEXT_KEY_FILE: &str = "master.key.next";
/// The re-keyed copy of the control plane being prepared.
const ROTATING: &str = "control.db.rotating";
/// The lock one rotation holds.
const LOCK_FILE: &str = "keys.lock";

/// Held for as long as a rotation runs (an exclusive `flock` on `<data>/keys.lock`,
/// which also holds its pid); released by the kernel if the process dies.
#[derive(Debug)]
pub struct RotationLock {
    _file: std::fs::File,
}

impl RotationLock {
    /// Takes the lock; `Ok(None)` if another process holds it.
    pub fn acquire(data_dir: &Path) -> std::io::Result<Option<Self>> {
        Ok(crate::backups::pid_lock(&data_dir.join(LOCK_FILE))?.map(|file| Self { _file: file }))
    }
}

/// What a rotation is told as it goes: the step it is about to take, or how many
/// clinic keys are re-wrapped. An `Err` from the hook stops the rotation there.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// About to take this step (`save-new-key`, `copy`, `rewrap`, `rewrap-half`,
    /// `rekey`, `keep_old`, `clear_sidecars`, `rename`, `install-key`, `reopen`).
    Step(&'static str),
    /// Clinic keys re-wrapped so far, of how many.
    Rewrapped {
        /// Done.
        done: u64,
        /// Of.
        total: u64,
    },
}

/// Where the current master key comes from, and so where the new one goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHome {
    /// `<data>/master.key`: the rotation replaces it.
    DataDirFile,
    /// `WARD_MASTER_KEY`: the operator replaces it.
    Configured,
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct RotationReport {
    /// Fingerprint of the master key rotated from.
    pub old_fingerprint: String,
    /// Fingerprint of the master key now in force.
    pub new_fingerprint: String,
    /// Clinic keys that open with the new master key.
    pub clinics: u64,
    /// Whether an earlier run had already switched the control plane.
    pub resumed: bool,
    /// Where the old key was kept (with `master.key`).
    pub old_key_kept: Option<PathBuf>,
}

/// Rotates the master key of `data_dir` from `current` to `new` (or, with `master.key`,
/// to a fresh key or the one an unfinished run left in `master.key.next`). See the
/// module's text for how a crash is survived.
pub async fn rotate_master(
    data_dir: &Path,
    current: &MasterKey,
    home: KeyHome,
    new: Option<MasterKey>,
    clock: Arc<dyn Clock>,
    hook: &mut (dyn FnMut(Event) -> Result<(), String> + Send),
) -> Result<RotationReport, ControlError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        ControlError::Invalid(format!("{what} {}: {e}", path.display()))
    };
    let step = |hook: &mut (dyn FnMut(Event) -> Result<(), String> + Send),
                e: Event|
     -> Result<(), ControlError> {
        hook(e).map_err(|why| ControlError::Invalid(format!("the rotation stopped: {why}")))
    };
    let lock_path = data_dir.join(LOCK_FILE);
    let _lock = RotationLock::acquire(data_dir)
        .map_err(|e| io("cannot take", &lock_path, e))?
        .ok_or_else(|| {
            crate::backups::held_by(&lock_path, |pid| {
                format!("another key rotation{pid} is running on this data directory; wait for it to finish")
            })
        })?;
    let _serve = ServeGuard::acquire_before(data_dir, "rotating the master key")?;

    let next_path = data_dir.join(NEXT_KEY_FILE);
    let new = match home {
        KeyHome::DataDirFile if next_path.exists() => {
            let (left, _) = MasterKey::load_or_generate(&next_path)
                .map_err(|e| ControlError::Invalid(e.to_string()))?;
            if let Some(given) = &new
                && given.fingerprint() != left.fingerprint()
            {
                return Err(ControlError::Invalid(format!(
                    "an unfinished rotation to the key {} is in {}; run again without a new key to finish it first",
                    left.fingerprint(),
                    next_path.display()
                )));
            }
            left
        }
        KeyHome::DataDirFile => {
            let new = new.unwrap_or_else(MasterKey::random);
            refuse_same(current, &new)?;
            step(hook, Event::Step("save-new-key"))?;
            new.write_new(&next_path)
                .map_err(|e| ControlError::Invalid(e.to_string()))?;
            backup::sync_parent(&next_path)?;
            new
        }
        KeyHome::Configured => {
            let new = new.ok_or_else(|| {
                ControlError::Invalid(
                    "WARD_MASTER_KEY is set, so the new key must be given: --new-master-key-file FILE or WARD_NEW_MASTER_KEY".into(),
                )
            })?;
            refuse_same(current, &new)?;
            new
        }
    };
    let old_db_key = ControlPlane::key(current);
    let new_db_key = ControlPlane::key(&new);
    let live = data_dir.join("control.db");
    let rotating = data_dir.join(ROTATING);

    let pin_path = data_dir.join(PIN_FILE);
    let pin = Pin::exclusive(&pin_path, Duration::from_secs(2))
        .map_err(|e| io("cannot pin", &pin_path, e))?
        .ok_or_else(|| {
            ControlError::Busy(
                "another ward command has the control plane open; wait for it to finish".into(),
            )
        })?;
    // Left by a run stopped during the switch: another name for the live file (before the
    // rename) or the old file (after it); either way under the old key, and not needed.
    remove_pre_rotate(data_dir)?;
    let resumed = match db::open_now(&live, &old_db_key, false, Durability::Full) {
        Ok(opened) => {
            step(hook, Event::Step("copy"))?;
            backup::remove_database_and_sidecars(&rotating)?;
            opened
                .conn
                .execute_batch_now("PRAGMA wal_checkpoint(TRUNCATE);")?;
            backup::snapshot(&opened.conn, &rotating).await?;
            drop(opened);
            let prepared = async {
                rewrap_copy(&rotating, current, &new, hook).await?;
                step(hook, Event::Step("rekey"))?;
                {
                    let copy = db::open_now(&rotating, &old_db_key, false, Durability::Full)?;
                    db::rekey(&copy.conn, &new_db_key)?;
                }
                let copy = db::open_now(&rotating, &new_db_key, false, Durability::Full)?;
                count_opening(&copy.conn, &new)?;
                copy.conn
                    .execute_batch_now("PRAGMA wal_checkpoint(TRUNCATE);")?;
                drop(copy);
                std::fs::File::open(&rotating)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io("cannot sync", &rotating, e))?;
                Ok::<_, ControlError>(())
            };
            if let Err(e) = prepared.await {
                let _ = backup::remove_database_and_sidecars(&rotating);
                return Err(e);
            }
            let pre = data_dir.join(format!(
                "control.db.pre-rotate-{}",
                clock.now().format("%Y%m%dT%H%M%S%.3fZ")
            ));
            let mut restore_hook = |s: RestoreStep| -> Result<(), String> {
                let name = match s {
                    RestoreStep::KeepOld => "keep_old",
                    RestoreStep::ClearSidecars => "clear_sidecars",
                    RestoreStep::Rename => "rename",
                    _ => "swap",
                };
                hook(Event::Step(name))
            };
            let mut restore_hook: backup::StepHook<'_> = &mut restore_hook;
            let kept = backup::swap_in(&live, &rotating, &pre, &mut restore_hook)?;
            // The old file is under the old key and holds the old wrappings: the switch is
            // durable, so it goes (backups taken before stay, under the old key).
            backup::remove_database_and_sidecars(&kept)?;
            false
        }
        Err(DbError::WrongKey(_)) => {
            match db::open_now(&live, &new_db_key, false, Durability::Full) {
                Ok(_) => {}
                Err(DbError::WrongKey(_)) => {
                    return Err(ControlError::Invalid(format!(
                        "the control plane {} opens with neither the current master key ({}) nor the new one ({}); give the key it was last rotated to",
                        live.display(),
                        current.fingerprint(),
                        new.fingerprint()
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            backup::remove_database_and_sidecars(&rotating)?;
            true
        }
        Err(e) => return Err(e.into()),
    };
    drop(pin);

    let mut old_key_kept = None;
    if home == KeyHome::DataDirFile && next_path.exists() {
        step(hook, Event::Step("install-key"))?;
        let key_path = data_dir.join(KEY_FILE);
        if key_path.exists() {
            let kept = data_dir.join(format!(
                "{KEY_FILE}.old-{}",
                clock.now().format("%Y%m%dT%H%M%SZ")
            ));
            std::fs::hard_link(&key_path, &kept)
                .map_err(|e| io("cannot keep the old key as", &kept, e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io("cannot restrict", &kept, e))?;
            }
            old_key_kept = Some(kept);
        }
        std::fs::rename(&next_path, &key_path)
            .map_err(|e| io("cannot install the new key as", &key_path, e))?;
        backup::sync_parent(&key_path)?;
    }

    step(hook, Event::Step("reopen"))?;
    let (control, _) = ControlPlane::open(data_dir, &new, clock).await?;
    let check = new.clone();
    let clinics = control
        .with(|conn| async move { count_opening(&conn, &check) })
        .await?;
    tracing::info!(
        from = %current.fingerprint(),
        to = %new.fingerprint(),
        clinics,
        resumed,
        "master key rotated"
    );
    Ok(RotationReport {
        old_fingerprint: current.fingerprint(),
        new_fingerprint: new.fingerprint(),
        clinics,
        resumed,
        old_key_kept,
    })
}

fn remove_pre_rotate(data_dir: &Path) -> Result<(), ControlError> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("control.db.pre-rotate-")
            && !name.ends_with("-wal")
            && !name.ends_with("-shm")
        {
            backup::remove_database_and_sidecars(&entry.path())?;
        }
    }
    Ok(())
}

fn refuse_same(current: &MasterKey, new: &MasterKey) -> Result<(), ControlError> {
    if current.fingerprint() == new.fingerprint() {
        return Err(ControlError::Invalid(
            "the new master key is the current one; give a different key".into(),
        ));
    }
    Ok(())
}

/// Every clinic that still has a key, with its wrapped key.
fn wrapped_keys(
    conn: &ward_tenancy::sql::Connection,
) -> Result<Vec<(ClinicId, Vec<u8>)>, ControlError> {
    let mut out = Vec::new();
    conn.for_each_row(
        "SELECT id, wrapped_key FROM clinics WHERE wrapped_key IS NOT NULL ORDER BY id",
        (),
        |row| {
            let id = ClinicId::parse(&row.get::<String>(0)?).map_err(|_| {
                ControlError::Invalid("the control plane holds an invalid clinic id".into())
            })?;
            out.push((id, row.get::<Vec<u8>>(1)?));
            Ok::<_, ControlError>(())
        },
    )?;
    Ok(out)
}

/// Checks that every wrapped key opens with `master`; returns how many there are.
fn count_opening(
    conn: &ward_tenancy::sql::Connection,
    master: &MasterKey,
) -> Result<u64, ControlError> {
    let keys = wrapped_keys(conn)?;
    for (id, wrapped) in &keys {
        master
            .unwrap(*id, wrapped)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
    }
    Ok(keys.len() as u64)
}

/// Re-wraps, in the copy at `path` (still under the old control-plane key), every
/// clinic's data key from `old` to `new`, in one transaction.
async fn rewrap_copy(
    path: &Path,
    old: &MasterKey,
    new: &MasterKey,
    hook: &mut (dyn FnMut(Event) -> Result<(), String> + Send),
) -> Result<(), ControlError> {
    let stop = |why: String| ControlError::Invalid(format!("the rotation stopped: {why}"));
    hook(Event::Step("rewrap")).map_err(stop)?;
    let copy = db::open_now(path, &ControlPlane::key(old), false, Durability::Full)?;
    let keys = wrapped_keys(&copy.conn)?;
    let total = keys.len() as u64;
    copy.conn.execute_batch_now("BEGIN IMMEDIATE")?;
    let done = (|| {
        for (i, (id, wrapped)) in keys.iter().enumerate() {
            if i as u64 == total / 2 {
                hook(Event::Step("rewrap-half")).map_err(stop)?;
            }
            let key = old
                .unwrap(*id, wrapped)
                .map_err(|e| ControlError::Invalid(e.to_string()))?;
            copy.conn.execute_now(
                "UPDATE clinics SET wrapped_key = ?2 WHERE id = ?1",
                ward_tenancy::sql::params![id.to_string(), new.wrap(*id, &key)],
            )?;
            hook(Event::Rewrapped {
                done: i as u64 + 1,
                total,
            })
            .map_err(stop)?;
        }
        Ok::<_, ControlError>(())
    })();
    match done {
        Ok(()) => copy.conn.execute_batch_now("COMMIT")?,
        Err(e) => {
            let _ = copy.conn.execute_batch_now("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

/// What `ward keys status` shows about the master key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// Fingerprint of the master key in force.
    pub fingerprint: String,
    /// Fingerprint of the key an unfinished rotation is moving to, if one is.
    pub unfinished_rotation_to: Option<String>,
    /// Old keys kept by earlier rotations (`master.key.old-*`).
    pub old_keys_kept: Vec<PathBuf>,
}

/// The master key's state in `data_dir`.
pub fn key_status(data_dir: &Path, current: &MasterKey) -> KeyStatus {
    let next = data_dir.join(NEXT_KEY_FILE);
    let unfinished_rotation_to = next
        .exists()
        .then(|| MasterKey::load_or_generate(&next).ok())
        .flatten()
        .map(|(k, _)| k.fingerprint());
    let mut old_keys_kept: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("master.key.old-"))
        })
        .collect();
    old_keys_kept.sort();
    KeyStatus {
        fingerprint: current.fingerprint(),
        unfinished_rotation_to,
        old_keys_kept,
    }
}
