//! The one place a libSQL connection is opened and configured.
//!
//! Every database Ward touches, clinic files and the control plane alike, goes through
//! [`open`], so every connection gets the same settings: WAL, foreign keys, a busy
//! timeout, the chosen durability, and an authorizer that refuses `ATTACH`, `DETACH`
//! and extension loading (no SQL can reach a second file).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libsql::{
    AuthAction, AuthContext, Authorization, Cipher, Connection, Database, EncryptionConfig,
    OpenFlags,
};

use crate::keys::DataKey;

/// How long a statement waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SQLITE_NOTADB: i32 = 26;

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
    /// The key does not decrypt the file (or it is not a database at all).
    #[error("the database file {0} does not open with its key (wrong key, or not a Ward database)")]
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
    Sql(#[from] libsql::Error),
}

impl DbError {
    /// Whether this error says the file is not readable with its key.
    fn from_open(path: &Path, e: libsql::Error) -> Self {
        match e {
            libsql::Error::SqliteFailure(code, _) if code & 0xff == SQLITE_NOTADB => {
                Self::WrongKey(path.to_owned())
            }
            other => Self::Sql(other),
        }
    }
}

/// An open database: the libSQL database object and its single connection.
pub struct Opened {
    /// Keeps the database object alive as long as its connection.
    pub database: Database,
    /// The configured connection.
    pub conn: Connection,
}

/// Opens `path` encrypted under `key` and configures the connection.
///
/// With `create`, the file must not exist yet; without, it must. Either way a wrong key
/// is reported as [`DbError::WrongKey`] naming the file, not as a bare engine error.
pub async fn open(
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
    let flags = if create {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let database = libsql::Builder::new_local(path)
        .flags(flags)
        .encryption_config(EncryptionConfig::new(
            Cipher::Aes256Cbc,
            bytes::Bytes::copy_from_slice(key.bytes()),
        ))
        .build()
        .await?;
    let conn = database
        .connect()
        .map_err(|e| DbError::from_open(path, e))?;
    configure(&conn, durability).await.map_err(|e| match e {
        DbError::Sql(e) => DbError::from_open(path, e),
        other => other,
    })?;
    Ok(Opened { database, conn })
}

/// Applies Ward's settings to a connection. Called by [`open`] and nowhere else.
async fn configure(conn: &Connection, durability: Durability) -> Result<(), DbError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.load_extension_disable()?;
    conn.authorizer(Some(Arc::new(authorize)))?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // journal_mode answers with a row, so it goes through query, not a batch.
    let mut rows = conn.query("PRAGMA journal_mode=WAL", ()).await?;
    let mode: String = match rows.next().await? {
        Some(row) => row.get(0)?,
        None => String::new(),
    };
    drop(rows);
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Sql(libsql::Error::Misuse(format!(
            "journal mode stayed {mode}"
        ))));
    }
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys=ON; PRAGMA synchronous={synchronous}; PRAGMA trusted_schema=OFF;"
    ))
    .await?;
    Ok(())
}

/// Refuses everything that could reach another file or load code.
///
/// The one exception is the `ATTACH` that `VACUUM INTO` performs internally, allowed only
/// for the exact target [`vacuum_into`] is writing on this thread at that moment: SQL from
/// anywhere else can still not name a second file.
fn authorize(ctx: &AuthContext<'_>) -> Authorization {
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
/// `VACUUM INTO`, encrypted under the same key (SQLite3MultipleCiphers gives an attached
/// database without its own key the main database's key, so no page reaches the disk in
/// the clear).
///
/// The copy is one read transaction: writers on other connections carry on meanwhile,
/// and the copy shows exactly the commits before it began. `target` must not exist.
pub async fn vacuum_into(conn: &Connection, target: &Path) -> Result<(), DbError> {
    let Some(name) = target
        .to_str()
        .filter(|n| !n.contains('\'') && !n.contains('\0'))
    else {
        return Err(DbError::Sql(libsql::Error::Misuse(
            "a backup path must be plain UTF-8 without quotes".into(),
        )));
    };
    if target.try_exists().unwrap_or(true) {
        return Err(DbError::AlreadyExists(target.to_owned()));
    }
    // libSQL runs local statements on the calling thread, so the authorizer sees this
    // thread's value while the statement runs, and no other statement can.
    VACUUM_TARGET.set(Some(name.to_owned()));
    let result = conn.execute(&format!("VACUUM INTO '{name}'"), ()).await;
    VACUUM_TARGET.set(None);
    result?;
    Ok(())
}

/// Runs database work without stalling the async workers.
///
/// libSQL's local calls block the thread while SQLite reads, writes and fsyncs. On the
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

/// The first row of a query, if any.
pub async fn first_row(
    conn: &Connection,
    sql: &str,
    params: impl libsql::params::IntoParams,
) -> Result<Option<libsql::Row>, DbError> {
    let mut rows = conn.query(sql, params).await?;
    Ok(rows.next().await?)
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
            .await
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
