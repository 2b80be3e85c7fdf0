//! Backup and restore primitives for one encrypted database file.
//!
//! No catalog and no control-plane types here: callers say which file goes where and
//! record the results themselves.
//!
//! - [`snapshot`] copies an open database with `VACUUM INTO` into a temporary name beside
//!   the target, fsyncs it and its folder, then renames it into place. The copy is
//!   encrypted under the same key from its first page: nothing reaches the disk in the
//!   clear, not even the temporary file.
//! - [`restore_copy`] restores a backup into a new file and checks it: SHA-256 and size
//!   against the catalog, `PRAGMA integrity_check`, schema version, and a pluggable
//!   [`ContentCheck`] (the audit chain). [`verify`] does the same into a scratch file and
//!   removes it.
//! - [`swap_in`] replaces a live file with a checked one so that the live name always
//!   names a whole database, the old or the new one, whatever moment the process dies.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::sql::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::db::{self, DbError, Durability, first_row};
use crate::keys::DataKey;
use crate::migrate;

/// Why a backup, verification or restore step failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read, written, synced or renamed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// To which file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The database engine refused.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The file is not the one the catalog describes (damaged or replaced).
    #[error("the backup file does not match its catalog entry: {0}")]
    Mismatch(String),
    /// `PRAGMA integrity_check` found damage.
    #[error("the integrity check failed: {0}")]
    Integrity(String),
    /// The schema version is not what it should be.
    #[error("{0}")]
    Schema(String),
    /// The content check (audit chain) failed.
    #[error("the content check failed: {0}")]
    Check(String),
    /// The clinic is not available (unknown, locked by an operator, failing).
    #[error(transparent)]
    Tenant(#[from] crate::TenantError),
    /// Other processes kept the clinic open longer than the restore waits.
    #[error("{0}")]
    Busy(String),
    /// The step hook stopped the restore before `step`; the live file is untouched by it.
    #[error("stopped before {step}: {reason}")]
    Stopped {
        /// The step not taken.
        step: RestoreStep,
        /// The hook's reason.
        reason: String,
    },
}

impl BackupError {
    /// An I/O error mapper naming what was done to which file.
    pub fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { what, path, source }
    }
}

/// Size and SHA-256 (hex) of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the whole file.
    pub sha256: String,
}

/// The head of a clinic's audit chain: the newest entry's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number of the newest entry.
    pub seq: i64,
    /// Its hash, as the audit log stores it.
    pub hash: String,
}

/// A check of a restored copy beyond integrity and schema: the audit chain.
///
/// It returns the chain head it found (recorded in the catalog with the backup) or why
/// the content is not trustworthy.
#[async_trait::async_trait]
pub trait ContentCheck: Send + Sync {
    /// Checks the database behind `conn` (a restored copy, never the live file).
    async fn check(&self, conn: &Connection) -> Result<Option<ChainHead>, String>;
}

/// The content check used until the audit chain's own verifier is plugged in: the
/// `audit_log` table, if the schema has one, must be readable to its last row. It
/// reports no chain head.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuditTableReadable;

#[async_trait::async_trait]
impl ContentCheck for AuditTableReadable {
    async fn check(&self, conn: &Connection) -> Result<Option<ChainHead>, String> {
        let exists = first_row(
            conn,
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'audit_log'",
            (),
        )
        .map_err(|e| e.to_string())?
        .is_some();
        if exists {
            first_row(conn, "SELECT count(*) FROM audit_log", ())
                .map_err(|e| format!("the audit log cannot be read: {e}"))?;
        }
        Ok(None)
    }
}

/// What a restored copy is expected to be; `None` fields are not compared.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The file's size and hash as catalogued.
    pub digest: Option<Digest>,
    /// The schema version recorded when the backup was taken.
    pub schema_version: Option<u32>,
    /// The audit chain head recorded when the backup was taken.
    pub chain_head: Option<ChainHead>,
    /// The newest schema this build knows; a newer copy cannot be used.
    pub latest_schema: u32,
}

impl Expected {
    /// Nothing recorded about the copy beforehand (a rebuild from the replica): only the
    /// checks themselves decide.
    pub fn unrecorded() -> Self {
        Self {
            digest: None,
            schema_version: None,
            chain_head: None,
            latest_schema: 0,
        }
    }
}

/// What checking a restored copy found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Size and hash of the backup file that was read.
    pub digest: Digest,
    /// Its schema version.
    pub schema_version: u32,
    /// Rows per table.
    pub tables: BTreeMap<String, u64>,
    /// The audit chain head the content check reported.
    pub chain_head: Option<ChainHead>,
}

/// Name of the temporary file a snapshot is written to before it gets its real name.
fn partial_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial"))
}

/// Takes a consistent snapshot of `conn`'s database into the new file `dest` (in an
/// existing folder), durably: temporary name, fsync, rename, fsync of the folder.
///
/// Runs one read transaction on `conn`: writers on other connections are not held up.
pub async fn snapshot(conn: &Connection, dest: &Path) -> Result<Digest, BackupError> {
    let partial = partial_name(dest);
    remove_if_present(&partial)?;
    if let Err(e) = db::vacuum_into(conn, &partial).await {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    let finish = || -> Result<Digest, BackupError> {
        let digest = sync_and_digest(&partial)?;
        std::fs::rename(&partial, dest).map_err(BackupError::io("cannot rename", &partial))?;
        sync_parent(dest)?;
        Ok(digest)
    };
    finish().inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })
}

/// Restores the backup `source` into the new file `dest` and checks it. On success `dest`
/// is a complete, checkpointed, fsynced database (no `-wal`/`-shm` beside it); on
/// failure it is removed.
pub async fn restore_copy(
    source: &Path,
    dest: &Path,
    key: &DataKey,
    expected: &Expected,
    check: &dyn ContentCheck,
) -> Result<Checked, BackupError> {
    remove_database_and_sidecars(dest)?;
    let result = restore_copy_inner(source, dest, key, expected, check, true).await;
    if result.is_err() {
        let _ = remove_database_and_sidecars(dest);
    }
    result
}

async fn restore_copy_inner(
    source: &Path,
    dest: &Path,
    key: &DataKey,
    expected: &Expected,
    check: &dyn ContentCheck,
    durable: bool,
) -> Result<Checked, BackupError> {
    let digest = copy_with_digest(source, dest, durable)?;
    if let Some(want) = &expected.digest
        && want != &digest
    {
        return Err(BackupError::Mismatch(format!(
            "expected {} bytes with SHA-256 {}, found {} bytes with SHA-256 {}",
            want.size, want.sha256, digest.size, digest.sha256
        )));
    }
    let opened = db::open(dest, key, false, Durability::Normal).await?;
    let conn = &opened.conn;
    integrity(conn).await?;
    let version = migrate::version(conn)?;
    if version == 0 {
        return Err(BackupError::Schema(
            "the copy has no schema (version 0): not a Ward database".into(),
        ));
    }
    if version > expected.latest_schema {
        return Err(BackupError::Schema(format!(
            "the copy's schema is at version {version}, newer than this build knows ({}); restore it with a newer Ward",
            expected.latest_schema
        )));
    }
    if let Some(want) = expected.schema_version
        && want != version
    {
        return Err(BackupError::Schema(format!(
            "the copy's schema is at version {version}, the catalog says {want}"
        )));
    }
    let chain_head = check.check(conn).await.map_err(BackupError::Check)?;
    if let (Some(want), Some(found)) = (&expected.chain_head, &chain_head)
        && want != found
    {
        return Err(BackupError::Check(format!(
            "the audit chain ends at entry {} but the catalog recorded entry {}",
            found.seq, want.seq
        )));
    }
    let tables = table_counts(conn)?;
    // Fold the WAL back into the file so that the file alone is the database.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .await
        .map_err(DbError::Sql)?;
    drop(opened);
    remove_sidecars(dest)?;
    if durable {
        sync_file(dest)?;
    }
    Ok(Checked {
        digest,
        schema_version: version,
        tables,
        chain_head,
    })
}

/// Checks the backup `source` by restoring it into a scratch file in `scratch_dir` and
/// removing that again.
pub async fn verify(
    source: &Path,
    scratch_dir: &Path,
    key: &DataKey,
    expected: &Expected,
    check: &dyn ContentCheck,
) -> Result<Checked, BackupError> {
    std::fs::create_dir_all(scratch_dir)
        .map_err(BackupError::io("cannot create the folder", scratch_dir))?;
    let scratch = scratch_dir.join(format!("verify-{}.db", uuid::Uuid::new_v4()));
    // A scratch copy is thrown away: it need not reach the disk.
    let result = restore_copy_inner(source, &scratch, key, expected, check, false).await;
    let _ = remove_database_and_sidecars(&scratch);
    result
}

/// Rows in every table of `conn`'s database.
pub fn table_counts(conn: &Connection) -> Result<BTreeMap<String, u64>, DbError> {
    let mut names = Vec::new();
    conn.for_each_row(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        (),
        |row| {
            names.push(row.get::<String>(0)?);
            Ok::<_, DbError>(())
        },
    )?;
    let mut out = BTreeMap::new();
    for name in names {
        let quoted = name.replace('"', "\"\"");
        let n = match conn.first_row_now(&format!("SELECT count(*) FROM \"{quoted}\""), ())? {
            Some(row) => row.get::<u64>(0)?,
            None => 0,
        };
        out.insert(name, n);
    }
    Ok(out)
}

async fn integrity(conn: &Connection) -> Result<(), BackupError> {
    let problems = crate::check::file_problems(conn);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BackupError::Integrity(problems.join("; ")))
    }
}

/// The steps of a restore after the backup was chosen; the caller's hook hears of each
/// before it is taken, so progress can be shown and a test can stop the process there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStep {
    /// About to restore the backup into a new file beside the live one and check it.
    Prepare,
    /// About to wait until no process has the live file open.
    Exclusive,
    /// About to count the live file's rows and checkpoint it.
    Checkpoint,
    /// About to keep the live file under its pre-restore name (a hard link).
    KeepOld,
    /// About to remove the live file's leftover `-wal`/`-shm`.
    ClearSidecars,
    /// About to rename the restored file over the live one: the switch.
    Rename,
    /// About to open the restored clinic and run pending migrations.
    Migrate,
}

impl std::fmt::Display for RestoreStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Prepare => "restoring and checking the backup beside the live file",
            Self::Exclusive => "waiting for other processes to close the clinic",
            Self::Checkpoint => "counting and checkpointing the live file",
            Self::KeepOld => "keeping the live file as the pre-restore copy",
            Self::ClearSidecars => "removing the live file's WAL and shared-memory files",
            Self::Rename => "switching to the restored file",
            Self::Migrate => "opening the restored clinic and running pending migrations",
        })
    }
}

/// A hook told of each [`RestoreStep`]; an `Err` stops the restore before that step.
pub type StepHook<'a> = &'a mut (dyn FnMut(RestoreStep) -> Result<(), String> + Send);

/// Tells `hook` that step `s` is next; its `Err` becomes [`BackupError::Stopped`].
pub fn step(hook: &mut StepHook<'_>, s: RestoreStep) -> Result<(), BackupError> {
    hook(s).map_err(|reason| BackupError::Stopped { step: s, reason })
}

/// Replaces `live` with the checked database `prepared` (same folder), keeping the old
/// file as `pre_restore` (or, if an interrupted attempt took that name, the same name
/// with `.1`, `.2`, … appended). Returns the name the old file was kept under.
///
/// The caller holds the exclusive pin (no connection to `live` exists anywhere) and has
/// checkpointed `live` if it could. At every moment `live` names a whole database: the
/// old one is hard-linked to `pre_restore` first (its `-wal`, if one is left because the
/// old file could not be opened, too), leftover `-wal`/`-shm` are removed while the old
/// content is still safe under its new name, and one `rename` switches to the new file.
pub fn swap_in(
    live: &Path,
    prepared: &Path,
    pre_restore: &Path,
    hook: &mut StepHook<'_>,
) -> Result<PathBuf, BackupError> {
    step(hook, RestoreStep::KeepOld)?;
    let kept = (0..)
        .map(|n| {
            if n == 0 {
                pre_restore.to_owned()
            } else {
                sidecar(pre_restore, &format!(".{n}"))
            }
        })
        .find(|p| !p.exists() && !sidecar(p, "-wal").exists())
        .unwrap_or_else(|| pre_restore.to_owned());
    if live.exists() {
        std::fs::hard_link(live, &kept)
            .map_err(BackupError::io("cannot keep the current file as", &kept))?;
        let wal = sidecar(live, "-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            std::fs::hard_link(&wal, sidecar(&kept, "-wal"))
                .map_err(BackupError::io("cannot keep the current WAL of", live))?;
        }
        sync_parent(live)?;
    }
    step(hook, RestoreStep::ClearSidecars)?;
    remove_sidecars(live)?;
    sync_parent(live)?;
    step(hook, RestoreStep::Rename)?;
    std::fs::rename(prepared, live).map_err(BackupError::io("cannot rename", prepared))?;
    sync_parent(live)?;
    Ok(kept)
}

/// `path` with `suffix` appended to its name (`-wal`, `-shm`).
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn remove_if_present(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::io("cannot remove", path)(e)),
    }
}

fn remove_sidecars(path: &Path) -> Result<(), BackupError> {
    remove_if_present(&sidecar(path, "-wal"))?;
    remove_if_present(&sidecar(path, "-shm"))
}

/// Removes a database file and its `-wal`/`-shm`, ignoring absent ones.
pub fn remove_database_and_sidecars(path: &Path) -> Result<(), BackupError> {
    remove_sidecars(path)?;
    remove_if_present(path)
}

/// Copies `from` to the new file `to`, hashing as it goes; `to` is fsynced if `durable`.
fn copy_with_digest(from: &Path, to: &Path, durable: bool) -> Result<Digest, BackupError> {
    let mut src = std::fs::File::open(from).map_err(BackupError::io("cannot read", from))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(BackupError::io("cannot create", to))?;
    let digest = read_digesting(&mut src, from, |block| {
        dst.write_all(block)
            .map_err(BackupError::io("cannot write", to))
    })?;
    if durable {
        dst.sync_all().map_err(BackupError::io("cannot sync", to))?;
    }
    Ok(digest)
}

/// Size and SHA-256 of a file.
pub fn digest_file(path: &Path) -> Result<Digest, BackupError> {
    let mut f = std::fs::File::open(path).map_err(BackupError::io("cannot read", path))?;
    read_digesting(&mut f, path, |_| Ok(()))
}

/// Reads `src` (the file at `path`) to its end in blocks of 1 MiB, hashing each block and
/// handing it to `each`: its size and SHA-256.
fn read_digesting(
    src: &mut std::fs::File,
    path: &Path,
    mut each: impl FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<Digest, BackupError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .map_err(BackupError::io("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        each(&buf[..n])?;
        size += n as u64;
    }
    Ok(Digest {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn sync_and_digest(path: &Path) -> Result<Digest, BackupError> {
    sync_file(path)?;
    digest_file(path)
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io("cannot sync", path))
}

/// Fsyncs the folder holding `path`, so a create, rename or unlink in it is durable.
pub fn sync_parent(path: &Path) -> Result<(), BackupError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io("cannot sync the folder", dir))
}
