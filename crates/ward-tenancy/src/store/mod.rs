//! [`TenantStore`]: clinic id → encrypted file → cached, migrated connection. Its
//! snapshots and restores of a clinic are in `snapshot`.

mod admission;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;
use ward_core::ClinicId;

use crate::cached::Db;
use crate::db::{self, Durability, blocking};
use crate::keys::{DataKey, MasterKey};
use crate::lockfile::{self, OperatorLock};
use crate::migrate::{self, MigrateOutcome, Migration};
use crate::pin::Pin;
use crate::sql::{self, Connection};

pub use snapshot::{RESTORE_WAIT, RestoreOutcome};

/// What the control plane knows about a clinic that opening it needs.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    /// The data key, sealed under the master key.
    pub wrapped_key: Vec<u8>,
    /// The schema version last recorded.
    pub schema_version: u32,
    /// Whether the clinic is currently marked as failing to open.
    pub failed: bool,
    /// Whether that mark says its file is damaged (the reason starts with
    /// [`DAMAGED`]): such a clinic stays out of service until an operator restores it or
    /// `ward verify` finds it sound.
    pub damaged: bool,
}

/// How the reason recorded for a clinic with a damaged file begins.
pub const DAMAGED: &str = "damaged: ";

/// Boxed error from the registry.
pub type RegistryError = Box<dyn std::error::Error + Send + Sync>;

/// The store's view of the control plane: where keys come from and where open results go.
#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// The clinic's key and recorded state; `None` if there is no such clinic.
    async fn tenant(&self, id: ClinicId) -> Result<Option<TenantRecord>, RegistryError>;
    /// The clinic opened at `schema_version`; clears a failure mark.
    async fn opened(&self, id: ClinicId, schema_version: u32) -> Result<(), RegistryError>;
    /// The clinic could not be opened or migrated, for `reason`.
    async fn failed(&self, id: ClinicId, reason: &str) -> Result<(), RegistryError>;
}

/// Why a clinic's database is not available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TenantError {
    /// No clinic has this id.
    #[error("there is no clinic {0}")]
    Unknown(ClinicId),
    /// An operator holds the clinic's lock (restore, purge).
    #[error("clinic {0} is under maintenance")]
    Maintenance(ClinicId),
    /// The file is missing, unreadable, has the wrong key, or its migration failed.
    #[error("clinic {clinic} cannot be opened: {reason}")]
    Unavailable {
        /// Which clinic.
        clinic: ClinicId,
        /// What went wrong, for the operator (never shown to users).
        reason: String,
    },
    /// The clinic's file is damaged (a page failed its authentication check, or the file
    /// no longer opens); it is out of service until an operator repairs it.
    #[error("clinic {0}'s database file is damaged")]
    Damaged(ClinicId),
    /// The store is draining.
    #[error("Ward is shutting down")]
    ShuttingDown,
}

/// Brings back a clinic file that is missing: a new machine rebuilding from its replica
/// serves each clinic as soon as its own file is back.
#[async_trait::async_trait]
pub trait FetchMissing: Send + Sync {
    /// Writes clinic `id`'s file at `path` (which does not exist); `Ok(false)` when there
    /// is nothing to fetch.
    async fn fetch(&self, id: ClinicId, path: &Path) -> Result<bool, String>;
}

/// How the store is set up.
#[derive(Clone)]
pub struct StoreConfig {
    /// The data directory; clinic files live in its `clinics/` folder.
    pub data_dir: PathBuf,
    /// Most handles kept in the cache (`WARD_MAX_OPEN_TENANTS`).
    pub max_open: u64,
    /// Most handles open at any moment, those that left the cache but are still in use
    /// included: the descriptor budget ([`crate::fds`]). An open past it waits for a
    /// handle to close. `None`: an eighth more than `max_open`.
    pub max_handles: Option<u64>,
    /// A handle unused this long is closed.
    pub idle_timeout: Duration,
    /// The tenant schema.
    pub migrations: Arc<[Migration]>,
    /// Where a missing clinic file comes back from, if anywhere.
    pub fetch_missing: Option<Arc<dyn FetchMissing>>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("data_dir", &self.data_dir)
            .field("max_open", &self.max_open)
            .field("max_handles", &self.max_handles)
            .field("idle_timeout", &self.idle_timeout)
            .field("fetch_missing", &self.fetch_missing.is_some())
            .finish_non_exhaustive()
    }
}

impl StoreConfig {
    /// The defaults for `data_dir`: 1,000 handles, 10 minutes idle, the embedded schema.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            max_open: 1_000,
            max_handles: None,
            idle_timeout: Duration::from_secs(600),
            migrations: crate::migrations::TENANT.into(),
            fetch_missing: None,
        }
    }
}

/// Counters for `/status` and the benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Database handles open right now (cached or still in use after eviction).
    pub open_handles: usize,
    /// Entries in the cache.
    pub cached: u64,
    /// The cap.
    pub max_open: u64,
    /// The hard bound on open handles (the descriptor budget).
    pub max_handles: u64,
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that had to open (or wait for an open).
    pub misses: u64,
    /// Files actually opened.
    pub opens: u64,
}

/// One open clinic database. Dropping the last handle closes the file, which checkpoints
/// the WAL into the database and removes it, on a blocking thread.
pub struct Tenant {
    id: ClinicId,
    /// The store, told when a statement finds the file damaged. Weak: the store's cache
    /// holds the tenant.
    store: std::sync::Weak<Inner>,
    /// Whether the connection was used since the last idle sweep.
    used: AtomicBool,
    /// Whether its memory was released since it was last used.
    released: AtomicBool,
    // Field order matters: this second reference to the connection is dropped first, so
    // the one in `_files` is the last and the close happens where `_files` sends it.
    conn: tokio::sync::Mutex<Connection>,
    _files: CloseOffThread,
}

/// A shared, cached open clinic.
pub type TenantHandle = Arc<Tenant>;

/// Who is opening a clinic, which decides what a damage mark and the operator lock mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// A request: a clinic marked damaged stays closed, a locked one is refused.
    Request,
    /// An operator's command (`ward migrate`): a damaged clinic is tried again.
    Operator,
    /// The holder of the clinic's operator lock (restore, purge).
    UnderLock,
}

impl Tenant {
    /// Which clinic this is.
    pub fn id(&self) -> ClinicId {
        self.id
    }

    /// Runs `f` with this clinic's connection, exclusively (a transaction begun inside
    /// cannot interleave with another request's statements) and off the async workers.
    pub async fn with<T, F>(&self, f: F) -> T
    where
        F: FnOnce(Db) -> T,
    {
        let guard = self.conn.lock().await;
        self.used.store(true, Ordering::Relaxed);
        self.released.store(false, Ordering::Relaxed);
        let db = Db::new(guard.clone());
        let out = db::run_blocking(|| f(db));
        let damage = guard.take_damage();
        drop(guard);
        if let Some(reason) = damage {
            self.damaged(reason).await;
        }
        out
    }

    /// [`Self::with`] for work that must also await another service while it holds the
    /// clinic (a clinic transaction that changes the control plane in its middle, so the
    /// audit row and the change commit or fail together). Its SQLite calls run on this
    /// thread, handed off from the async worker; prefer [`Self::with`].
    pub async fn with_async<T, F, Fut>(&self, f: F) -> T
    where
        F: FnOnce(Db) -> Fut,
        Fut: std::future::Future<Output = T> + Send,
    {
        let guard = self.conn.lock().await;
        self.used.store(true, Ordering::Relaxed);
        self.released.store(false, Ordering::Relaxed);
        let out = blocking(f(Db::new(guard.clone()))).await;
        let damage = guard.take_damage();
        drop(guard);
        if let Some(reason) = damage {
            self.damaged(reason).await;
        }
        out
    }

    /// One idle sweep: gives back the memory SQLite holds for this connection (its page
    /// cache) if the connection was not used since the previous sweep and has not been
    /// released since it was last used. A clinic in use keeps its cache. Returns whether
    /// it released.
    pub fn release_memory_if_idle(&self) -> bool {
        if self.used.swap(false, Ordering::Relaxed) || self.released.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(guard) = self.conn.try_lock() else {
            return false;
        };
        guard.release_memory();
        self.released.store(true, Ordering::Relaxed);
        true
    }

    /// A statement found the file damaged: the clinic is marked (so `/status` and
    /// `ward clinics list` name it and it is not opened again until repaired) and this
    /// handle leaves the cache. Other clinics are not touched.
    async fn damaged(&self, reason: String) {
        tracing::error!(clinic = %self.id, %reason, "clinic database file is damaged");
        let Some(store) = self.store.upgrade() else {
            return;
        };
        if let Err(e) = store
            .registry
            .failed(self.id, &format!("{DAMAGED}{reason}"))
            .await
        {
            tracing::error!(clinic = %self.id, error = %e, "could not record the damage");
        }
        store.cache.invalidate(&self.id).await;
        store.admission.left(self.id);
    }
}

impl Tenant {
    /// Runs the reads in `f` with this clinic's connection, exclusively and in one read
    /// transaction (one snapshot), on the calling task.
    ///
    /// Unlike [`Self::with`] this stays on the async worker. Reading an open clinic is CPU
    /// work of the order of rendering the page (about 0.1 ms for the patient page) and
    /// never waits for an fsync; handing the worker off for it cost more than the reads
    /// (about 20 µs of CPU and two thread switches per call, measured with bench-http).
    /// The transaction is rolled back at the end, so nothing written inside is kept or
    /// reaches the disk from an async worker (a write is reported as an error); writes
    /// go through [`Self::with`].
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(Db) -> Result<T, E>,
        E: From<sql::Error>,
    {
        let guard = self.conn.lock().await;
        self.used.store(true, Ordering::Relaxed);
        self.released.store(false, Ordering::Relaxed);
        let db = Db::new(guard.clone());
        let out = db.read_only(|| f(db.clone()));
        let damage = guard.take_damage();
        drop(guard);
        if let Some(reason) = damage {
            self.damaged(reason).await;
        }
        out
    }
}

/// Closes a clinic's database when dropped, off the async workers.
///
/// Whoever drops the last handle (a request, the cache's eviction listener, or the cache
/// itself during housekeeping, which holds entries a little past their eviction) may be
/// an async worker; closing checkpoints the WAL, which writes and fsyncs, so it is sent
/// to a blocking thread. The open count drops only once the file is really closed, so
/// `open_handles == 0` means every WAL has been checkpointed (and emptied).
struct CloseOffThread {
    id: ClinicId,
    // Dropped in order: the connection, then the pin (released only once the file is
    // closed), then the handle's place in the descriptor budget.
    files: Option<(Connection, Pin, tokio::sync::OwnedSemaphorePermit)>,
    open: Arc<OpenFiles>,
}

/// Which clinic files this process has open right now (in the cache or still in use).
#[derive(Default)]
struct OpenFiles {
    count: AtomicUsize,
    ids: parking_lot::Mutex<std::collections::HashMap<ClinicId, u32>>,
}

impl OpenFiles {
    fn opened(&self, id: ClinicId) {
        *self.ids.lock().entry(id).or_insert(0) += 1;
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn closed(&self, id: ClinicId) {
        {
            let mut ids = self.ids.lock();
            if let Some(n) = ids.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    ids.remove(&id);
                }
            }
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for CloseOffThread {
    fn drop(&mut self) {
        let Some(files) = self.files.take() else {
            return;
        };
        let (open, id) = (self.open.clone(), self.id);
        let close = move || {
            let (conn, pin, place) = files;
            drop(conn);
            drop(pin);
            open.closed(id);
            // Last: the next open may take this handle's place only once it is gone.
            drop(place);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(close);
            }
            Err(_) => close(),
        }
    }
}

struct Inner {
    clinics_dir: PathBuf,
    master: MasterKey,
    registry: Arc<dyn Registry>,
    migrations: Arc<[Migration]>,
    max_open: u64,
    cache: Cache<ClinicId, TenantHandle>,
    /// Which opened clinics the cache keeps when it is full.
    admission: admission::Admission,
    shutting_down: AtomicBool,
    open: Arc<OpenFiles>,
    hits: AtomicU64,
    misses: AtomicU64,
    opens: AtomicU64,
    /// Opens running at once. An open is CPU work (the cipher's key derivation and the
    /// schema parse, about a millisecond); more of them at a time than there are cores
    /// only adds threads switching between them, so the rest wait their turn here.
    opening: tokio::sync::Semaphore,
    /// One permit per handle that may be open; each open handle holds one until its file
    /// is closed.
    handles: Arc<tokio::sync::Semaphore>,
    max_handles: u64,
    fetch_missing: Option<Arc<dyn FetchMissing>>,
}

/// How long an open waits for a handle to close when the budget is spent.
const HANDLE_WAIT: Duration = Duration::from_secs(10);

/// Opens clinics lazily and keeps a bounded set of them open.
#[derive(Clone)]
pub struct TenantStore {
    inner: Arc<Inner>,
}

impl TenantStore {
    /// A store over `config.data_dir`, creating its `clinics/` folder if needed.
    pub fn new(
        config: StoreConfig,
        master: MasterKey,
        registry: Arc<dyn Registry>,
    ) -> std::io::Result<Self> {
        let clinics_dir = config.data_dir.join("clinics");
        std::fs::create_dir_all(&clinics_dir)?;
        let max_handles = config
            .max_handles
            .unwrap_or(config.max_open + config.max_open / 8 + 1)
            .max(config.max_open);
        // The cache keeps what `admission` chooses and closes what it drops; its own
        // bound (least recently used out first) only backs that up.
        let cache = Cache::builder()
            .max_capacity(config.max_open)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_idle(config.idle_timeout)
            .eviction_listener(
                |_id: Arc<ClinicId>, tenant: TenantHandle, cause: RemovalCause| {
                    crate::telemetry::evicted(cause);
                    drop(tenant);
                },
            )
            .build();
        Ok(Self {
            inner: Arc::new(Inner {
                clinics_dir,
                master,
                registry,
                migrations: config.migrations,
                max_open: config.max_open,
                cache,
                admission: admission::Admission::new(config.max_open),
                shutting_down: AtomicBool::new(false),
                open: Arc::default(),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                opens: AtomicU64::new(0),
                handles: Arc::new(tokio::sync::Semaphore::new(
                    usize::try_from(max_handles).unwrap_or(usize::MAX >> 4),
                )),
                max_handles,
                fetch_missing: config.fetch_missing,
                opening: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
                ),
            }),
        })
    }

    /// The folder holding every clinic file.
    pub fn clinics_dir(&self) -> &Path {
        &self.inner.clinics_dir
    }

    /// The file of clinic `id`. Built from the UUID alone: nothing a user typed can
    /// reach a path.
    pub fn path_of(&self, id: ClinicId) -> PathBuf {
        self.inner.clinics_dir.join(id.file_name())
    }

    fn lock_path(&self, id: ClinicId) -> PathBuf {
        self.inner.clinics_dir.join(format!("{id}.lock"))
    }

    fn pin_path(&self, id: ClinicId) -> PathBuf {
        self.inner.clinics_dir.join(format!("{id}.pin"))
    }

    /// A shared pin on clinic `id`, held by every connection to its file: refused while
    /// an operator holds the lock or a restore holds the exclusive pin.
    fn pin_shared(&self, id: ClinicId, under_own_lock: bool) -> Result<Pin, TenantError> {
        let pin = Pin::shared(&self.pin_path(id))
            .map_err(|e| TenantError::Unavailable {
                clinic: id,
                reason: format!("cannot pin the clinic file: {e}"),
            })?
            .ok_or(TenantError::Maintenance(id))?;
        // Checked again under the pin: a lock taken between the caller's check and the
        // pin would otherwise let this connection open a file that is about to be swapped.
        if !under_own_lock && self.is_locked(id) {
            return Err(TenantError::Maintenance(id));
        }
        Ok(pin)
    }

    /// The newest tenant schema version this store applies.
    pub fn latest_version(&self) -> u32 {
        migrate::latest(&self.inner.migrations)
    }

    /// A new random data key for `id`, and its wrapped form for the control plane.
    pub fn new_data_key(&self, id: ClinicId) -> (DataKey, Vec<u8>) {
        let key = DataKey::random();
        let wrapped = self.inner.master.wrap(id, &key);
        (key, wrapped)
    }

    /// Creates clinic `id`'s file (which must not exist), migrated to the newest schema,
    /// and caches it. On failure nothing is left on disk.
    pub async fn create(&self, id: ClinicId, wrapped_key: &[u8]) -> Result<u32, TenantError> {
        self.check_running()?;
        let key = self.unwrap_key(id, wrapped_key)?;
        let path = self.path_of(id);
        let permit = self.handle_permit(id).await?;
        let pin = self.pin_shared(id, false)?;
        let migrations = self.inner.migrations.clone();
        let result = blocking(async {
            let opened = db::open(&path, &key, true, Durability::Full).await?;
            let outcome = migrate::migrate(&opened.conn, &migrations)?;
            Ok::<_, db::DbError>((opened, outcome))
        })
        .await;
        let (opened, outcome) = match result {
            Ok(ok) => ok,
            Err(e) => {
                if !matches!(e, db::DbError::AlreadyExists(_)) {
                    remove_database_files(&path);
                }
                return Err(TenantError::Unavailable {
                    clinic: id,
                    reason: e.to_string(),
                });
            }
        };
        self.inner.opens.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::opened();
        let tenant = self.wrap_tenant(id, opened, pin, permit);
        self.record_opened(id, outcome.to).await;
        self.inner.cache.insert(id, tenant).await;
        if let Some(victim) = self.inner.admission.added(id) {
            self.inner.cache.invalidate(&victim).await;
        }
        Ok(outcome.to)
    }

    /// The open clinic `id`, opening and migrating it on first use. Concurrent first uses
    /// share one open.
    pub async fn get(&self, id: ClinicId) -> Result<TenantHandle, TenantError> {
        self.check_running()?;
        if self.is_locked(id) {
            self.inner.cache.invalidate(&id).await;
            self.inner.admission.left(id);
            return Err(TenantError::Maintenance(id));
        }
        if let Some(tenant) = self.inner.cache.get(&id).await {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            self.inner.admission.used(id);
            crate::telemetry::hit();
            return Ok(tenant);
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::miss();
        let verdict = self.inner.admission.missed(id);
        let opened = self
            .inner
            .cache
            .try_get_with(id, async {
                let (tenant, _) = self.open(id).await?;
                Ok::<_, TenantError>(tenant)
            })
            .await
            .map_err(|e: Arc<TenantError>| (*e).clone());
        // Concurrent first uses share the one open above whatever is decided here; a
        // clinic not kept leaves the cache at once and closes when its pages finish.
        match (&opened, verdict) {
            (
                Ok(_),
                admission::Verdict::Keep {
                    evict: Some(victim),
                },
            ) => {
                crate::telemetry::admitted("replaced");
                self.inner.cache.invalidate(&victim).await;
            }
            (Ok(_), admission::Verdict::Keep { evict: None }) => {
                crate::telemetry::admitted("room");
            }
            (Ok(_), admission::Verdict::Pass) => {
                crate::telemetry::admitted("passed");
                self.inner.cache.invalidate(&id).await;
            }
            (Err(_), _) => self.inner.admission.left(id),
        }
        opened
    }

    /// Brings one clinic to the newest schema (for `ward migrate`), without disturbing the
    /// cache: an open handle is migrated in place, a closed clinic is opened and closed.
    pub async fn migrate_clinic(&self, id: ClinicId) -> Result<MigrateOutcome, TenantError> {
        self.check_running()?;
        if self.is_locked(id) {
            return Err(TenantError::Maintenance(id));
        }
        if let Some(tenant) = self.inner.cache.get(&id).await {
            let migrations = self.inner.migrations.clone();
            let outcome = tenant
                .with(|conn| migrate::migrate(&conn, &migrations))
                .await
                .map_err(|e| TenantError::Unavailable {
                    clinic: id,
                    reason: e.to_string(),
                })?;
            if outcome.changed() {
                self.record_opened(id, outcome.to).await;
            }
            return Ok(outcome);
        }
        // An operator's command tries a clinic marked damaged again (its file may have
        // been repaired); requests do not.
        let (tenant, outcome) = self.open_with(id, Opening::Operator).await?;
        drop(tenant);
        Ok(outcome)
    }

    /// Takes the operator lock of clinic `id` and closes this process's handle to it.
    /// Users of the clinic get [`TenantError::Maintenance`] until the lock is dropped.
    pub async fn lock(&self, id: ClinicId, reason: &str) -> Result<OperatorLock, TenantError> {
        let lock = OperatorLock::acquire(&self.lock_path(id), reason)
            .map_err(|e| TenantError::Unavailable {
                clinic: id,
                reason: format!("cannot take the operator lock: {e}"),
            })?
            .ok_or(TenantError::Maintenance(id))?;
        self.close_now(id).await;
        Ok(lock)
    }

    /// Whether an operator lock is held on clinic `id`.
    pub fn is_locked(&self, id: ClinicId) -> bool {
        let path = self.lock_path(id);
        // The common case is one failed stat; only an existing file is read.
        path.exists() && lockfile::is_held(&path)
    }

    /// Closes clinic `id`'s handle if it is open (once requests still using it finish).
    pub async fn evict(&self, id: ClinicId) {
        self.close_now(id).await;
    }

    /// Removes clinic `id` from the cache and has the handle closed now: the cache hands
    /// an invalidated entry to the eviction listener (which closes it) only during its
    /// housekeeping, which this runs.
    async fn close_now(&self, id: ClinicId) {
        self.inner.cache.invalidate(&id).await;
        self.inner.admission.left(id);
        // The cache keeps its own reference to a removed entry until its next
        // housekeeping pass; run it now so the file is really closed.
        self.inner.cache.run_pending_tasks().await;
    }

    /// The clinics open right now. Listing them does not count as a use, so a periodic
    /// sweep (audit anchoring) does not keep idle clinics open.
    pub fn open_tenants(&self) -> Vec<TenantHandle> {
        self.inner.cache.iter().map(|(_, tenant)| tenant).collect()
    }

    /// Closes this process's handles to every clinic an operator has locked, so the
    /// operator's restore is not left waiting for a request that would notice the lock.
    /// Returns how many were closed. `ward serve` runs it every second.
    pub async fn close_locked(&self) -> usize {
        let locked: Vec<ClinicId> = self
            .inner
            .cache
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| self.is_locked(*id))
            .collect();
        for id in &locked {
            self.inner.cache.invalidate(id).await;
        }
        if !locked.is_empty() {
            self.inner.cache.run_pending_tasks().await;
        }
        locked.len()
    }

    /// Runs `f` on clinic `id`'s connection for the holder of its operator lock (whom
    /// [`Self::get`] refuses like everyone else), opening and closing the file for it.
    ///
    /// `f` may await other services (the restore hook moves the control plane's audit
    /// anchor); its SQLite calls run on this thread, handed off from the async worker.
    pub async fn with_locked<T, F, Fut>(
        &self,
        id: ClinicId,
        _lock: &OperatorLock,
        f: F,
    ) -> Result<T, TenantError>
    where
        F: FnOnce(Db) -> Fut,
        Fut: std::future::Future<Output = T> + Send,
    {
        let (tenant, _) = self.open_with(id, Opening::UnderLock).await?;
        let out = tenant.with_async(f).await;
        drop(tenant);
        Ok(out)
    }

    /// What the control plane knows of clinic `id`; an unknown (or purged) clinic is
    /// [`TenantError::Unknown`].
    async fn record(&self, id: ClinicId) -> Result<TenantRecord, TenantError> {
        self.inner
            .registry
            .tenant(id)
            .await
            .map_err(|e| TenantError::Unavailable {
                clinic: id,
                reason: format!("control plane: {e}"),
            })?
            .ok_or(TenantError::Unknown(id))
    }

    /// Clinic `id`'s data key, unwrapped (for checking its backups).
    pub async fn data_key(&self, id: ClinicId) -> Result<DataKey, TenantError> {
        let record = self.record(id).await?;
        self.unwrap_key(id, &record.wrapped_key)
    }

    /// Checks clinic `id`'s file for damage through a connection of its own (see
    /// [`crate::check::file_problems`]), whether or not the clinic is marked damaged:
    /// the problems found, empty when the file is sound. A sound file clears a damage
    /// mark, so the clinic is served again. Refused while an operator holds its lock.
    pub async fn check_file(&self, id: ClinicId) -> Result<Vec<String>, TenantError> {
        self.check_running()?;
        if self.is_locked(id) {
            return Err(TenantError::Maintenance(id));
        }
        let record = self.record(id).await?;
        let key = self.unwrap_key(id, &record.wrapped_key)?;
        let pin = self.pin_shared(id, false)?;
        let path = self.path_of(id);
        let checked = blocking(async {
            let opened = db::open(&path, &key, false, Durability::Full).await?;
            let problems = crate::check::file_problems(&opened.conn);
            let version = migrate::version(&opened.conn).ok();
            Ok::<_, db::DbError>((problems, version))
        })
        .await;
        drop(pin);
        match checked {
            Ok((problems, Some(version))) if problems.is_empty() => {
                if record.damaged {
                    tracing::info!(clinic = %id, "clinic file checked sound; damage mark cleared");
                    self.record_opened(id, version).await;
                }
                Ok(problems)
            }
            Ok((problems, _)) => Ok(problems),
            Err(e) => Ok(vec![format!("the file does not open: {e}")]),
        }
    }

    /// Releases the page-cache memory of every open clinic not used since the previous
    /// call (`ward serve` calls it every 15 s): an idle handle then costs little more
    /// than its schema and its descriptors. Returns how many were released.
    pub fn release_idle_memory(&self) -> usize {
        self.inner
            .cache
            .iter()
            .filter(|(_, tenant)| tenant.release_memory_if_idle())
            .count()
    }

    /// Runs the cache's pending housekeeping (idle and over-cap evictions) now.
    pub async fn run_pending(&self) {
        self.inner.cache.run_pending_tasks().await;
        // What the cache closed on its own (idle clinics) leaves the admission's list.
        self.inner
            .admission
            .resync(self.inner.cache.iter().map(|(id, _)| *id));
    }

    /// Whether this process has clinic `id`'s file open (cached, or still in use after it
    /// left the cache). False once the last handle has really closed the file.
    pub fn is_open(&self, id: ClinicId) -> bool {
        self.inner.open.ids.lock().contains_key(&id)
    }

    /// Current counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            open_handles: self.inner.open.count.load(Ordering::Acquire),
            cached: self.inner.cache.entry_count(),
            max_open: self.inner.max_open,
            max_handles: self.inner.max_handles,
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            opens: self.inner.opens.load(Ordering::Relaxed),
        }
    }

    /// Refuses new work, closes every cached handle and waits (up to `wait`) for handles
    /// still in use to be released. Returns how many were still open at the deadline.
    pub async fn shutdown(&self, wait: Duration) -> usize {
        self.inner.shutting_down.store(true, Ordering::Release);
        // `invalidate_all` alone leaves the entries to the cache's lazy housekeeping, which
        // may not hand them to the eviction listener (which closes them) for a while;
        // invalidating each one explicitly does, at the next `run_pending_tasks`.
        let open: Vec<ClinicId> = self.inner.cache.iter().map(|(id, _)| *id).collect();
        for id in &open {
            self.inner.cache.invalidate(id).await;
        }
        self.inner.cache.invalidate_all();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Housekeeping releases the cache's own references to removed entries, so it
            // runs on every turn, not once: one pass can leave handles held until the next.
            self.inner.cache.run_pending_tasks().await;
            let open = self.inner.open.count.load(Ordering::Acquire);
            if open == 0 || tokio::time::Instant::now() >= deadline {
                if open > 0 {
                    tracing::warn!(open, "clinic handles still in use at shutdown");
                }
                return open;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            // One housekeeping run does not always remove what `invalidate_all` marked
            // (entries stamped in the same clock tick survive it); keep running it.
            self.inner.cache.run_pending_tasks().await;
        }
    }

    fn check_running(&self) -> Result<(), TenantError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            Err(TenantError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn unwrap_key(&self, id: ClinicId, wrapped: &[u8]) -> Result<DataKey, TenantError> {
        self.inner
            .master
            .unwrap(id, wrapped)
            .map_err(|e| TenantError::Unavailable {
                clinic: id,
                reason: e.to_string(),
            })
    }

    /// Opens and migrates clinic `id` (not through the cache), recording the outcome in
    /// the registry: the new version when it changed, or the failure.
    async fn open(&self, id: ClinicId) -> Result<(TenantHandle, MigrateOutcome), TenantError> {
        self.open_with(id, Opening::Request).await
    }

    /// [`Self::open`], for whoever `opening` says.
    async fn open_with(
        &self,
        id: ClinicId,
        opening: Opening,
    ) -> Result<(TenantHandle, MigrateOutcome), TenantError> {
        // The semaphore is never closed, so acquiring cannot fail; were it to, opening
        // without a turn is still correct.
        let _turn = self.inner.opening.acquire().await.ok();
        let permit = self.handle_permit(id).await?;
        // One hand-off from the async worker for the whole open (the registry read, the
        // file, the migration check) rather than one per step: the nested `blocking`
        // calls inside simply run.
        blocking(self.open_blocking(id, opening, permit)).await
    }

    /// A place for one more open handle within the descriptor budget. While the budget
    /// is spent this runs the cache's housekeeping (which closes handles evicted over the
    /// cap) and waits for a handle to close, up to [`HANDLE_WAIT`]; a request never goes
    /// on to meet `EMFILE`.
    async fn handle_permit(
        &self,
        id: ClinicId,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, TenantError> {
        if let Ok(permit) = self.inner.handles.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let deadline = tokio::time::Instant::now() + HANDLE_WAIT;
        loop {
            self.inner.cache.run_pending_tasks().await;
            let wait = tokio::time::timeout(
                Duration::from_millis(20),
                self.inner.handles.clone().acquire_owned(),
            );
            match wait.await {
                Ok(Ok(permit)) => return Ok(permit),
                Ok(Err(_)) => return Err(TenantError::ShuttingDown),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(TenantError::Unavailable {
                        clinic: id,
                        reason: format!(
                            "all {} clinic handles the descriptor budget allows stayed in use for {} s",
                            self.inner.max_handles,
                            HANDLE_WAIT.as_secs()
                        ),
                    });
                }
                Err(_) => {}
            }
        }
    }

    async fn open_blocking(
        &self,
        id: ClinicId,
        opening: Opening,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(TenantHandle, MigrateOutcome), TenantError> {
        let under_own_lock = opening == Opening::UnderLock;
        let retry_damaged = opening != Opening::Request;
        let record = self.record(id).await?;
        if record.damaged && !retry_damaged {
            return Err(TenantError::Damaged(id));
        }
        let pin = self.pin_shared(id, under_own_lock)?;
        let fetched = match &self.inner.fetch_missing {
            Some(f) if !self.path_of(id).exists() => {
                f.fetch(id, &self.path_of(id)).await.map(|_| ())
            }
            _ => Ok(()),
        };
        let result = match fetched.and_then(|()| {
            self.unwrap_key(id, &record.wrapped_key)
                .map_err(|e| e.to_string())
        }) {
            Ok(key) => {
                let path = self.path_of(id);
                let migrations = self.inner.migrations.clone();
                blocking(async {
                    let opened = db::open(&path, &key, false, Durability::Full).await?;
                    let outcome = migrate::migrate(&opened.conn, &migrations)?;
                    Ok::<_, db::DbError>((opened, outcome))
                })
                .await
                .map_err(|e| {
                    if e.is_damage() {
                        format!("{DAMAGED}{e}")
                    } else {
                        e.to_string()
                    }
                })
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((opened, outcome)) => {
                self.inner.opens.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::opened();
                if outcome.changed() || record.failed || record.schema_version != outcome.to {
                    self.record_opened(id, outcome.to).await;
                }
                Ok((self.wrap_tenant(id, opened, pin, permit), outcome))
            }
            Err(reason) => {
                tracing::error!(clinic = %id, %reason, "clinic cannot be opened");
                if let Err(e) = self.inner.registry.failed(id, &reason).await {
                    tracing::error!(clinic = %id, error = %e, "could not record the failure");
                }
                if reason.starts_with(DAMAGED) && !retry_damaged {
                    return Err(TenantError::Damaged(id));
                }
                Err(TenantError::Unavailable { clinic: id, reason })
            }
        }
    }

    fn wrap_tenant(
        &self,
        id: ClinicId,
        opened: db::Opened,
        pin: Pin,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> TenantHandle {
        self.inner.open.opened(id);
        Arc::new(Tenant {
            id,
            store: Arc::downgrade(&self.inner),
            used: AtomicBool::new(true),
            released: AtomicBool::new(false),
            conn: tokio::sync::Mutex::new(opened.conn.clone()),
            _files: CloseOffThread {
                id,
                files: Some((opened.conn, pin, permit)),
                open: self.inner.open.clone(),
            },
        })
    }

    async fn record_opened(&self, id: ClinicId, version: u32) {
        if let Err(e) = self.inner.registry.opened(id, version).await {
            tracing::error!(clinic = %id, error = %e, "could not record the clinic's schema version");
        }
    }
}

/// Removes a database file and its WAL and shared-memory files, ignoring absent ones.
pub(crate) fn remove_database_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(path = %Path::new(&p).display(), error = %e, "could not remove a database file")
            }
        }
    }
}
