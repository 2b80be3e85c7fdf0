//! The one place a database connection is opened and configured.
//!
//! Every database Ward touches, clinic files and the control plane alike, goes through
//! [`open`], so every connection gets the same settings: SQLCipher 4 with the database's
//! raw 256-bit key (no key derivation at open; every page authenticated with
//! HMAC-SHA512), WAL, foreign keys, a busy timeout, the chosen durability, and an
//! authorizer that refuses `ATTACH`, `DETACH` and extension loading (no SQL can reach a
//! second file).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::OpenFlags;
use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::keys::DataKey;
use crate::sql::{self, Connection, IntoParams, Row};

/// How long a statement waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SQLITE_NOTADB: i32 = 26;

/// Bytes a WAL is cut back to after a checkpoint restarts it (it is emptied at close).
const WAL_SIZE_LIMIT: u64 = 4 << 20;

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: an acknowledged commit survives power loss. Clinic data.
    Full,
    /// `synchronous=NORMAL`: may lose the last commits on power loss, never corrupts.
    Normal,
}

/// Why a database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file is not there (and was not to be created).
    #[error("the database file {0} is missing")]
    Missing(PathBuf),
    /// The file was to be created but already exists.
    #[error("the database file {0} already exists")]
    AlreadyExists(PathBuf),
    /// The key does not decrypt the file (or it is not a Ward database at all).
    #[error(
        "the database file {0} does not open with its key (wrong key, damaged header, or not a Ward database)"
    )]
    WrongKey(PathBuf),
    /// The file's schema is newer than this build knows.
    #[error(
        "the database schema is at version {found}, newer than this build of Ward knows ({known}); upgrade Ward"
    )]
    TooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this build has.
        known: u32,
    },
    /// Anything the engine reported.
    #[error(transparent)]
    Sql(#[from] sql::Error),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e.into())
    }
}

impl DbError {
    /// Whether this error says the file is not readable with its key.
    fn from_open(path: &Path, e: sql::Error) -> Self {
        match e.primary_code() {
            Some(SQLITE_NOTADB) => Self::WrongKey(path.to_owned()),
            _ => Self::Sql(e),
        }
    }

    /// Whether this error means the file's pages are damaged (an authentication
    /// failure, a corrupt page, or a header that no longer opens).
    pub fn is_damage(&self) -> bool {
        match self {
            Self::WrongKey(_) => true,
            Self::Sql(e) => e.is_damage(),
            _ => false,
        }
    }
}

/// Replication's view of the databases a process writes: told of every commit, and
/// before a connection closes, so that no WAL frame is checkpointed away before it has
/// been shipped.
///
/// A database is watched when a registered watch says so for its path; its connections
/// then never checkpoint on their own (no automatic checkpoint, none at close): the
/// watch checkpoints, from [`WalWatch::committed`] or [`WalWatch::closing`], once what
/// the WAL holds has left the machine.
pub trait WalWatch: Send + Sync + 'static {
    /// Whether the database at `path` is replicated by this watch.
    fn watches(&self, path: &Path) -> bool;
    /// A transaction was committed to `path`'s WAL, which now holds `frames` frames. Runs
    /// on the committing thread: it must be quick unless the WAL has grown large.
    fn committed(&self, path: &Path, frames: u32, wal: &mut rusqlite::hooks::Wal);
    /// The last handle on a connection to `path` is being dropped.
    fn closing(&self, path: &Path, conn: &rusqlite::Connection);
}

static WATCHES: parking_lot::RwLock<Vec<std::sync::Weak<dyn WalWatch>>> =
    parking_lot::RwLock::new(Vec::new());

/// Registers a watch for the connections opened from now on (kept while `watch` lives).
pub fn watch_wal(watch: &std::sync::Arc<dyn WalWatch>) {
    let mut all = WATCHES.write();
    all.retain(|w| w.strong_count() > 0);
    all.push(std::sync::Arc::downgrade(watch));
}

fn watch_for(path: &Path) -> Option<std::sync::Arc<dyn WalWatch>> {
    WATCHES
        .read()
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .find(|w| w.watches(path))
}

/// An open database: its one configured connection.
pub struct Opened {
    /// The configured connection.
    pub conn: Connection,
}

/// Opens `path` encrypted under `key` and configures the connection.
///
/// With `create`, the file must not exist yet; without, it must. Either way a wrong key
/// is reported as [`DbError::WrongKey`] naming the file, not as a bare engine error.
/// Runs on the calling thread (it reads the file header).
pub async fn open(
    path: &Path,
    key: &DataKey,
    create: bool,
    durability: Durability,
) -> Result<Opened, DbError> {
    open_now(path, key, create, durability)
}

/// [`open`], called synchronously.
pub fn open_now(
    path: &Path,
    key: &DataKey,
    create: bool,
    durability: Durability,
) -> Result<Opened, DbError> {
    match (create, path.try_exists()) {
        (true, Ok(true)) => return Err(DbError::AlreadyExists(path.to_owned())),
        (false, Ok(false)) => return Err(DbError::Missing(path.to_owned())),
        _ => {}
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_EXRESCODE;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let mut conn = rusqlite::Connection::open_with_flags(path, flags)?;
    configure(&mut conn, key, durability).map_err(|e| match e {
        DbError::Sql(e) => DbError::from_open(path, e),
        other => other,
    })?;
    let watched = match watch_for(path) {
        Some(watch) => {
            hand_checkpoints_to(&mut conn, path, &watch)?;
            Some((path.to_owned(), watch))
        }
        None => None,
    };
    Ok(Opened {
        conn: Connection::new(conn, watched),
    })
}

/// Applies Ward's settings to a connection. Called by [`open`] and nowhere else.
fn configure(
    conn: &mut rusqlite::Connection,
    key: &DataKey,
    durability: Durability,
) -> Result<(), DbError> {
    // SQLCipher writes its own diagnostics to stderr by default (an HMAC failure names
    // the page); Ward reports damage through its errors instead, and the log may reach
    // places page numbers of a clinic's file should not. The setting is process-wide and
    // takes effect once SQLite is initialised, which the open above did.
    conn.execute_batch("PRAGMA cipher_log = off; PRAGMA cipher_log_level = NONE;")?;
    // The raw key: SQLCipher uses these 32 bytes as the encryption key directly (the
    // salt stays in the file's first 16 bytes) and derives only the HMAC key, cheaply.
    conn.execute_batch(&key_pragma("key", key))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // A query plan that does not depend on bound values: without it SQLite recompiles a
    // cached statement whenever a new value is bound to a parameter the planner looked
    // at (a LIMIT, a boolean, a LIKE pattern), which made a third of every page's CPU
    // time re-preparing statements it already had.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // No SQL can corrupt the file on purpose (writable_schema, shadow tables, ...).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.authorizer(Some(authorize))?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // The first statement that reads the file: a wrong key fails here with NOTADB.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Sql(sql::Error::Misuse(format!(
            "journal mode stayed {mode}"
        ))));
    }
    // The WAL and shared-memory files stay when the file closes (the WAL checkpointed and
    // truncated to nothing): creating and unlinking two files on every open and close
    // was a quarter of an open's cost, and grows with the directory's recent deletions.
    let mut persist: std::ffi::c_int = 1;
    conn.file_control(
        Some(rusqlite::MAIN_DB),
        rusqlite::FileControl::PersistWal(&mut persist),
    )?;
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys=ON; PRAGMA synchronous={synchronous}; PRAGMA trusted_schema=OFF; \
         PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"
    ))?;
    Ok(())
}

/// Makes `watch` the only one to checkpoint `conn`'s WAL: its hook replaces SQLite's
/// automatic checkpoint, and closing leaves the WAL as it is.
fn hand_checkpoints_to(
    conn: &mut rusqlite::Connection,
    path: &Path,
    watch: &std::sync::Arc<dyn WalWatch>,
) -> Result<(), DbError> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    let (watch, path) = (std::sync::Arc::downgrade(watch), path.to_owned());
    conn.wal_hook(Some(
        move |wal: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
            if let Some(w) = watch.upgrade() {
                w.committed(&path, u32::try_from(frames).unwrap_or(0), wal);
            }
            Ok(())
        },
    ))?;
    Ok(())
}

/// `PRAGMA <verb> = "x'<key hex>'"`, wiped from memory when dropped.
fn key_pragma(verb: &str, key: &DataKey) -> zeroize::Zeroizing<String> {
    let mut pragma = zeroize::Zeroizing::new(String::with_capacity(80));
    pragma.push_str("PRAGMA ");
    pragma.push_str(verb);
    pragma.push_str(" = \"x'");
    pragma.push_str(&hex::encode(key.bytes()));
    pragma.push_str("'\"");
    pragma
}

/// Refuses everything that could reach another file or load code.
///
/// The one exception is the `ATTACH` that `VACUUM INTO` performs internally, allowed only
/// for the exact target [`vacuum_into`] is writing on this thread at that moment: SQL from
/// anywhere else can still not name a second file.
fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { filename } if is_vacuum_target(filename) => Authorization::Allow,
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

thread_local! {
    static IN_BLOCKING: Cell<bool> = const { Cell::new(false) };
    /// The file [`vacuum_into`] is writing on this thread, if it is running.
    static VACUUM_TARGET: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn is_vacuum_target(filename: &str) -> bool {
    VACUUM_TARGET.with_borrow(|t| t.as_deref() == Some(filename))
}

/// Writes a consistent copy of `conn`'s database into the new file `target` with
/// `VACUUM INTO`, encrypted under the same key (SQLCipher gives the target, attached
/// without a key of its own, the main database's key, so no page reaches the disk in the
/// clear).
///
/// The copy is one read transaction: writers on other connections carry on meanwhile,
/// and the copy shows exactly the commits before it began. `target` must not exist.
pub async fn vacuum_into(conn: &Connection, target: &Path) -> Result<(), DbError> {
    let Some(name) = target
        .to_str()
        .filter(|n| !n.contains('\'') && !n.contains('\0'))
    else {
        return Err(DbError::Sql(sql::Error::Misuse(
            "a backup path must be plain UTF-8 without quotes".into(),
        )));
    };
    if target.try_exists().unwrap_or(true) {
        return Err(DbError::AlreadyExists(target.to_owned()));
    }
    // SQLite runs the statement on the calling thread, so the authorizer sees this
    // thread's value while the statement runs, and no other statement can.
    VACUUM_TARGET.set(Some(name.to_owned()));
    let result = conn.execute_batch_now(&format!("VACUUM INTO '{name}'"));
    VACUUM_TARGET.set(None);
    result?;
    Ok(())
}

/// Re-encrypts the whole database of `conn` under `key`: a copy made into another clinic
/// must not share its source's key (crypto-shredding one must not spare the other).
pub fn rekey(conn: &Connection, key: &DataKey) -> Result<(), DbError> {
    conn.execute_batch_now("PRAGMA journal_mode=DELETE")?;
    conn.execute_batch_now(&key_pragma("rekey", key))?;
    conn.execute_batch_now("PRAGMA journal_mode=WAL")?;
    Ok(())
}

/// Runs database work without stalling the async workers.
///
/// SQLite calls block the thread while SQLite reads, writes and fsyncs. On the
/// multi-threaded runtime this hands the worker's other tasks to another thread for the
/// duration (`block_in_place`), so one clinic's slow commit never delays another clinic's
/// page. Elsewhere (single-threaded tests, nested calls) it simply awaits.
pub async fn blocking<F: Future>(fut: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread && !IN_BLOCKING.get() => h,
        _ => return fut.await,
    };
    tokio::task::block_in_place(move || {
        IN_BLOCKING.set(true);
        let out = handle.block_on(fut);
        IN_BLOCKING.set(false);
        out
    })
}

/// Runs synchronous database work without stalling the async workers: on the
/// multi-threaded runtime the worker's other tasks move to another thread for the
/// duration (`block_in_place`), so one clinic's fsync never delays another clinic's page;
/// elsewhere (single-threaded tests, nested calls) `f` simply runs.
pub fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread && !IN_BLOCKING.get() => {
            tokio::task::block_in_place(move || {
                IN_BLOCKING.set(true);
                let out = f();
                IN_BLOCKING.set(false);
                out
            })
        }
        _ => f(),
    }
}

/// The first row of a query, if any.
pub fn first_row(
    conn: &Connection,
    sql: &str,
    params: impl IntoParams,
) -> Result<Option<Row>, DbError> {
    Ok(conn.first_row_now(sql, params)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &[u8] = b"CANARY-7f3a9c";

    async fn fresh(dir: &Path) -> (Opened, DataKey) {
        let key = DataKey::random();
        let opened = open(&dir.join("a.db"), &key, true, Durability::Full)
            .await
            .unwrap();
        opened
            .conn
            .execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('CANARY-7f3a9c');")
            .await
            .unwrap();
        (opened, key)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sql_cannot_attach_or_detach_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let (opened, _) = fresh(dir.path()).await;
        let other = dir.path().join("b.db");
        let attach = format!("ATTACH '{}' AS other", other.display());
        assert!(opened.conn.execute(&attach, ()).await.is_err());
        assert!(opened.conn.execute("DETACH other", ()).await.is_err());
        // Nor by naming the file as a VACUUM INTO target outside `vacuum_into`.
        let vacuum = format!("VACUUM INTO '{}'", other.display());
        assert!(opened.conn.execute(&vacuum, ()).await.is_err());
        assert!(!other.exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn vacuum_into_writes_an_encrypted_copy_that_opens_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let (opened, key) = fresh(dir.path()).await;
        let copy = dir.path().join("copy.db");
        vacuum_into(&opened.conn, &copy).await.unwrap();
        // The authorizer's exception ended with the statement.
        let attach = format!("ATTACH '{}' AS other", copy.display());
        assert!(opened.conn.execute(&attach, ()).await.is_err());
        let bytes = std::fs::read(&copy).unwrap();
        assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY));
        assert!(matches!(
            open(&copy, &DataKey::random(), false, Durability::Full).await,
            Err(DbError::WrongKey(_))
        ));
        let reopened = open(&copy, &key, false, Durability::Full).await.unwrap();
        let row = first_row(&reopened.conn, "SELECT x FROM t", ())
            .unwrap()
            .unwrap();
        assert_eq!(row.get::<String>(0).unwrap().as_bytes(), CANARY);
        // An existing target is refused rather than overwritten.
        assert!(matches!(
            vacuum_into(&opened.conn, &copy).await,
            Err(DbError::AlreadyExists(_))
        ));
    }
}
