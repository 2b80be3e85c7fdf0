use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ward_core::Clock;
use ward_tenancy::backup::{BackupError, Digest};
use ward_tenancy::migrate::{self, MigrateOutcome};
use ward_tenancy::sql::{Connection, IntoParams, Row};
use ward_tenancy::{
    DataKey, DbError, Durability, MasterKey, Pin, TenantError, backup, blocking, db,
};

/// Every row `sql` returns on `conn`, each read by `read`.
pub(crate) async fn all_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl IntoParams,
    mut read: impl FnMut(&Row) -> Result<T, ControlError>,
) -> Result<Vec<T>, ControlError> {
    rows_where(conn, sql, params, |row| read(row).map(Some)).await
}

/// The rows `sql` returns on `conn` that `read` makes something of (`None` skips a row).
pub(crate) async fn rows_where<T>(
    conn: &Connection,
    sql: &str,
    params: impl IntoParams,
    mut read: impl FnMut(&Row) -> Result<Option<T>, ControlError>,
) -> Result<Vec<T>, ControlError> {
    let mut rows = conn.query(sql, params).await?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await? {
        out.extend(read(&row)?);
    }
    Ok(out)
}

/// How many connections the control plane keeps; WAL lets readers run side by side.
const POOL_SIZE: usize = 4;

/// The control plane's pin file in the data directory (see [`ward_tenancy::Pin`]).
pub const PIN_FILE: &str = "control.pin";

/// Label of the control plane's key, derived from the master key.
const KEY_LABEL: &str = "ward control plane database v1";
/// Derives the key of form stamps (see `signup`).
const STAMP_LABEL: &str = "ward form stamps v1";

/// Why a control-plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The database refused or failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// No clinic matches the slug or id given.
    #[error("there is no clinic {0:?}")]
    NoSuchClinic(String),
    /// The requested slug belongs to another clinic.
    #[error("the short name {0:?} is already taken")]
    SlugTaken(String),
    /// A value was not acceptable; the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The clinic's database could not be created or opened.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// A backup, its check or a restore failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// Another process holds what this operation needs to hold alone.
    #[error("{0}")]
    Busy(String),
    /// An account with this email address already exists.
    #[error("the address already has an account")]
    AddressTaken,
}

impl From<ward_tenancy::sql::Error> for ControlError {
    fn from(e: ward_tenancy::sql::Error) -> Self {
        Self::Db(DbError::Sql(e))
    }
}

/// A handle on `<data>/control.db`.
pub struct ControlPlane {
    path: PathBuf,
    pool: Vec<tokio::sync::Mutex<Connection>>,
    next: AtomicUsize,
    pub(crate) clock: Arc<dyn Clock>,
    key: DataKey,
    /// Recently resolved sessions and memberships (see [`crate::cache`]).
    pub(crate) cache: crate::cache::Caches,
    /// Sessions' last-seen times not yet written (see [`crate::sessions`]).
    pub(crate) touches: crate::sessions::Touches,
    /// See [`ControlPlane::owners_second_factor_since`].
    pub(crate) owners_since: tokio::sync::OnceCell<chrono::DateTime<chrono::Utc>>,
    /// Keyed (from the master key) for form stamps; see [`crate::signup`].
    pub(crate) stamp_key: hmac::Hmac<sha2::Sha256>,
    /// Shared pin on `<data>/control.pin` for as long as this process has the file open:
    /// a control-plane restore swaps the file only when no process holds one.
    _pin: Pin,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Opens (creating if needed) `<data_dir>/control.db` and applies pending control
    /// migrations. Returns the plane and what the migration did.
    pub async fn open(
        data_dir: &Path,
        master: &MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, MigrateOutcome), ControlError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            ControlError::Invalid(format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("control.db");
        let key = Self::key(master);
        let stamp_key =
            <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&master.derive(STAMP_LABEL))
                .map_err(|e| ControlError::Invalid(format!("cannot key form stamps: {e}")))?;
        let pin_path = data_dir.join(PIN_FILE);
        let pin = Pin::shared(&pin_path)
            .map_err(|e| ControlError::Invalid(format!("cannot pin {}: {e}", pin_path.display())))?
            .ok_or_else(|| {
                ControlError::Busy(
                    "the control plane is being restored; try again when the restore has finished"
                        .into(),
                )
            })?;
        let create = !path.try_exists().unwrap_or(false);
        ward_tenancy::format::check_or_mark(data_dir, create).map_err(ControlError::Invalid)?;
        let mut pool = Vec::with_capacity(POOL_SIZE);
        let mut outcome = None;
        for i in 0..POOL_SIZE {
            let opened =
                blocking(db::open(&path, &key, create && i == 0, Durability::Full)).await?;
            // Deleted rows are overwritten, not left in the pages' free space: a purged
            // clinic's wrapped key must not survive in the file (or in a copy of it) once
            // the row no longer holds it.
            opened.conn.execute_batch_now("PRAGMA secure_delete = ON")?;
            if i == 0 {
                outcome = Some(ward_tenancy::db::run_blocking(|| {
                    migrate::migrate(&opened.conn, ward_tenancy::migrations::CONTROL)
                })?);
            }
            pool.push(tokio::sync::Mutex::new(opened.conn));
        }
        let outcome =
            outcome.ok_or_else(|| ControlError::Invalid("empty connection pool".into()))?;
        Ok((
            Self {
                path,
                pool,
                next: AtomicUsize::new(0),
                clock,
                key,
                cache: crate::cache::Caches::new(),
                touches: crate::sessions::Touches::new(),
                owners_since: tokio::sync::OnceCell::new(),
                stamp_key,
                _pin: pin,
            },
            outcome,
        ))
    }

    /// The control plane's database key, derived from the master key.
    pub fn key(master: &MasterKey) -> DataKey {
        DataKey::from_bytes(master.derive(KEY_LABEL))
    }

    /// This control plane's database key.
    pub(crate) fn data_key(&self) -> &DataKey {
        &self.key
    }

    /// Writes a consistent, encrypted snapshot of the control plane to the new file `dest`.
    pub async fn snapshot(&self, dest: &Path) -> Result<Digest, ControlError> {
        let dest = dest.to_owned();
        Ok(self
            .with(|conn| async move { backup::snapshot(&conn, &dest).await })
            .await?)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The clock every record's time comes from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs `f` on one pooled connection, exclusively and off the async workers.
    pub(crate) async fn with<T, F, Fut>(&self, f: F) -> T
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = T> + Send,
    {
        // Prefer a free connection; otherwise queue on the next one in turn.
        let guard = match self.pool.iter().find_map(|m| m.try_lock().ok()) {
            Some(g) => g,
            None => {
                self.pool[self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len()]
                    .lock()
                    .await
            }
        };
        let out = blocking(f(guard.clone())).await;
        drop(guard);
        out
    }

    /// Runs the one statement `sql` on one pooled connection; returns how many rows it
    /// changed.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: impl IntoParams + Send,
    ) -> Result<u64, ControlError> {
        Ok(self
            .with(|conn| async move { conn.execute(sql, params).await })
            .await?)
    }

    /// Every row `sql` returns, each read by `read`, on one pooled connection.
    pub(crate) async fn query_rows<T: Send>(
        &self,
        sql: &str,
        params: impl IntoParams + Send,
        read: impl FnMut(&Row) -> Result<T, ControlError> + Send,
    ) -> Result<Vec<T>, ControlError> {
        self.with(|conn| async move { all_rows(&conn, sql, params, read).await })
            .await
    }

    /// The first row `sql` returns, if any, read by `read`, on one pooled connection.
    pub(crate) async fn query_row<T: Send>(
        &self,
        sql: &str,
        params: impl IntoParams + Send,
        read: impl FnOnce(&Row) -> Result<T, ControlError> + Send,
    ) -> Result<Option<T>, ControlError> {
        self.with(|conn| async move {
            db::first_row(&conn, sql, params)?
                .map(|row| read(&row))
                .transpose()
        })
        .await
    }

    /// The rows `sql` returns that `read` makes something of (`None` skips a row), on
    /// one pooled connection.
    pub(crate) async fn query_rows_where<T: Send>(
        &self,
        sql: &str,
        params: impl IntoParams + Send,
        read: impl FnMut(&Row) -> Result<Option<T>, ControlError> + Send,
    ) -> Result<Vec<T>, ControlError> {
        self.with(|conn| async move { rows_where(&conn, sql, params, read).await })
            .await
    }

    /// Runs `f` inside one write transaction (`BEGIN IMMEDIATE`): all of it or none.
    pub(crate) async fn transaction<T, F, Fut>(&self, f: F) -> Result<T, ControlError>
    where
        F: FnOnce(Connection) -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, ControlError>> + Send,
        T: Send,
    {
        self.with(|conn| async move {
            conn.execute("BEGIN IMMEDIATE", ()).await?;
            match f(conn.clone()).await {
                Ok(v) => {
                    conn.execute("COMMIT", ()).await?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = conn.execute("ROLLBACK", ()).await;
                    Err(e)
                }
            }
        })
        .await
    }

    /// The control schema's version.
    pub async fn schema_version(&self) -> Result<u32, ControlError> {
        Ok(self
            .with(|conn| async move { migrate::version(&conn) })
            .await?)
    }

    /// Whether the database answers a trivial query (for `/status`).
    pub async fn ping(&self) -> bool {
        self.with(|conn| async move { conn.query("SELECT 1", ()).await.is_ok() })
            .await
    }
}

/// Whether `e` is a UNIQUE violation.
pub(crate) fn is_unique_violation(e: &ward_tenancy::sql::Error) -> bool {
    matches!(e, ward_tenancy::sql::Error::SqliteFailure(code, msg) if code & 0xff == 19 && msg.contains("UNIQUE"))
}
