//! Shipping every database's WAL to the replica as it is written.
//!
//! Per database the replicator keeps a *position*: the generation it is writing, the
//! next segment number, and how far into the current WAL it has shipped (offset and
//! running checksum, so a restart can tell whether the WAL on disk still continues what
//! was shipped). Connections of a replicated database never checkpoint by themselves
//! (see `ward_tenancy::db::WalWatch`): the replicator checkpoints, and only when every
//! committed frame of the WAL is in the replica, so no frame can be lost from the stream.
//! When the stream cannot be continued (a file swapped in by a restore, a WAL
//! checkpointed by someone else, a position lost with the disk), a new generation
//! begins with a snapshot of the encrypted file.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::segment::{self, Commit, Meta, SegmentHeader};
use crate::target::Target;
use crate::wal::{self, Cursor};
use crate::{ReplicaError, now_ms};

/// A WAL with this many frames is checkpointed (after shipping) by the commit that
/// reaches it: about 4 MiB of 4 KiB pages.
const CHECKPOINT_FRAMES: u32 = 1000;
/// How long a commit or a close waits for its frames to reach the replica before it
/// leaves them in the WAL for later.
const SHIP_WAIT: Duration = Duration::from_secs(5);
/// Segments shipped at once.
const PARALLEL: usize = 64;

/// How long a server's hold on the replica lasts without renewal.
const LEASE_TTL_MS: i64 = 30_000;
/// The lease's object.
const LEASE: &str = "lease.json";

/// Which server writes the replica: one at a time, so two machines holding copies of
/// the same data never both stream into it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    holder: String,
    host: String,
    pid: u32,
    expires_at_ms: i64,
}

/// Where a database's stream stands, kept in `<data>/replication/<db>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Position {
    /// The generation being written.
    pub generation: String,
    /// When it began.
    pub created_at_ms: i64,
    /// The next segment's number.
    pub next_seq: u64,
    /// The salts of the WAL being shipped, once its first bytes have been.
    pub salt: Option<[u32; 2]>,
    /// How far into that WAL has been shipped.
    pub cursor: Option<Cursor>,
    /// The database file this stream belongs to (its inode): another file is another
    /// generation.
    pub file_id: u64,
    /// Bytes shipped in this generation (snapshot and segments).
    pub bytes: u64,
    /// When a segment was last stored.
    pub shipped_at_ms: i64,
}

/// How one database's replication is doing.
#[derive(Debug, Clone, Serialize)]
pub struct DbStatus {
    /// `control` or a clinic id.
    pub db: String,
    /// The generation being written, if any.
    pub generation: Option<String>,
    /// When the last segment or snapshot was stored.
    pub shipped_at_ms: Option<i64>,
    /// How long the oldest unshipped commit has waited, in milliseconds (0: none).
    pub lag_ms: i64,
    /// Bytes shipped in the generation.
    pub bytes: u64,
    /// The last failure, if the last attempt failed.
    pub error: Option<String>,
}

struct Stream {
    db: String,
    path: PathBuf,
    state: parking_lot::Mutex<State>,
    /// Held while shipping, so one database's segments leave in order.
    shipping: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    pos: Option<Position>,
    loaded: bool,
    /// Commits seen by the hook and not yet shipped: (frames in the WAL, time).
    commits: VecDeque<(u32, i64)>,
    /// When the oldest unshipped commit happened.
    pending_since: Option<i64>,
    /// A snapshot is being taken: no checkpoint may change the file meanwhile.
    snapshotting: bool,
    /// The next commit checkpoints once everything is shipped, and a new generation
    /// starts ([`Replicator::fresh_generation_soon`]).
    checkpoint_wanted: bool,
    error: Option<String>,
}

impl State {
    /// Notes a commit the hook saw, with `frames` in the WAL after it. A count not above
    /// the last one's means the WAL began again (checkpointed, here or by another
    /// process): the times noted for the old WAL can never be a frame of the new one,
    /// and kept they would date its commits earlier than they happened (and hold the
    /// lag at their age), so they go.
    fn note_commit(&mut self, frames: u32, now: i64) {
        if self.commits.back().is_some_and(|(n, _)| *n >= frames) {
            self.commits.clear();
            self.pending_since = None;
        }
        self.commits.push_back((frames, now));
        self.pending_since.get_or_insert(now);
    }

    /// When the commit that left `frames` in the current WAL happened, if this process
    /// saw it (the newest note of that count: the current WAL's).
    fn time_of(&self, frames: u32) -> Option<i64> {
        self.commits
            .iter()
            .rev()
            .find(|(n, _)| *n == frames)
            .map(|(_, t)| *t)
    }
}

/// What a pass over one database found to do.
enum Work {
    Nothing,
    Snapshot,
    Segment {
        header: SegmentHeader,
        body: Vec<u8>,
        cursor: Cursor,
        /// Frames in the WAL up to the cursor.
        frames: u32,
    },
}

struct Shared {
    target: Target,
    data_dir: PathBuf,
    state_dir: PathBuf,
    streams: parking_lot::Mutex<HashMap<String, Arc<Stream>>>,
    dirty: parking_lot::Mutex<BTreeSet<String>>,
    wake: tokio::sync::Notify,
    stopped: AtomicBool,
    running: AtomicBool,
    runtime: tokio::runtime::Handle,
    me: std::sync::Weak<Shared>,
    /// How far back restores reach; generations older than that are deleted.
    retention: Duration,
    /// Where the time of commits, generations and retention comes from (the lease uses
    /// the real time: it is shared with other servers).
    clock: parking_lot::RwLock<Arc<dyn ward_core::Clock>>,
    /// Commit-to-stored delays of recent commits, in milliseconds (the newest 100,000).
    lags: parking_lot::Mutex<VecDeque<u32>>,
    /// This process's id in the lease.
    holder: String,
    /// Whether this process holds the lease (only the shipping loop takes it).
    leased: AtomicBool,
    /// Why it does not, when another server holds it.
    lease_error: parking_lot::Mutex<Option<String>>,
}

/// Ships every database of one data directory to one target.
#[derive(Clone)]
pub struct Replicator {
    shared: Arc<Shared>,
    /// Keeps the replicator's own threads alive while any clone lives.
    _runtime: Arc<RuntimeOwner>,
}

struct RuntimeOwner(Option<tokio::runtime::Runtime>);

impl Drop for RuntimeOwner {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replicator({})", self.shared.target.url)
    }
}

/// The name of the database at `path` in `data_dir`, if it is one Ward replicates.
pub fn db_name(data_dir: &Path, path: &Path) -> Option<String> {
    if path == data_dir.join("control.db") {
        return Some("control".into());
    }
    if path.parent()? != data_dir.join("clinics") {
        return None;
    }
    let stem = path.file_name()?.to_str()?.strip_suffix(".db")?;
    uuid::Uuid::parse_str(stem).ok()?;
    Some(stem.to_owned())
}

/// The file of database `db` in `data_dir`.
pub fn db_path(data_dir: &Path, db: &str) -> PathBuf {
    if db == "control" {
        data_dir.join("control.db")
    } else {
        data_dir.join("clinics").join(format!("{db}.db"))
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn file_id(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.ino())
}

impl Replicator {
    /// A replicator for the databases under `data_dir`, shipping to `target`. It watches
    /// every connection opened from now on (see `ward_tenancy::db::watch_wal`) and ships
    /// from its own threads; call [`Replicator::start`] to run the shipping loop.
    pub fn new(data_dir: &Path, target: Target, retention: Duration) -> Result<Self, ReplicaError> {
        let state_dir = data_dir.join("replication");
        std::fs::create_dir_all(state_dir.join("tmp"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ward-replica")
            .enable_all()
            .build()?;
        let shared = Arc::new_cyclic(|me| Shared {
            target,
            data_dir: data_dir.to_owned(),
            state_dir,
            streams: parking_lot::Mutex::new(HashMap::new()),
            dirty: parking_lot::Mutex::new(BTreeSet::new()),
            wake: tokio::sync::Notify::new(),
            stopped: AtomicBool::new(false),
            running: AtomicBool::new(false),
            runtime: runtime.handle().clone(),
            me: me.clone(),
            retention,
            clock: parking_lot::RwLock::new(Arc::new(ward_core::SystemClock)),
            lags: parking_lot::Mutex::new(VecDeque::new()),
            holder: uuid::Uuid::now_v7().to_string(),
            leased: AtomicBool::new(false),
            lease_error: parking_lot::Mutex::new(None),
        });
        let watch: Arc<dyn ward_tenancy::db::WalWatch> = shared.clone();
        ward_tenancy::db::watch_wal(&watch);
        Ok(Self {
            shared,
            _runtime: Arc::new(RuntimeOwner(Some(runtime))),
        })
    }

    /// The same replicator, reading the time of commits, generations and retention from
    /// `clock` instead of the real time (a test moving time forward).
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn ward_core::Clock>) -> Self {
        *self.shared.clock.write() = clock;
        self
    }

    /// Asks for `db`'s WAL to be checkpointed at its next commit once every frame is
    /// shipped (as when it reaches its size limit), and for a new generation to start
    /// from the checkpointed file. After a purge, the control plane's file then no longer
    /// holds the clinic's wrapped key, neither does the new generation, and the older
    /// generations (which do) are deleted once the new one is older than the retention.
    pub fn fresh_generation_soon(&self, db: &str) {
        self.shared.stream(db).state.lock().checkpoint_wanted = true;
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    /// Starts the shipping loop, and queues every database that has unshipped frames or
    /// has never been replicated.
    pub fn start(&self) {
        let shared = self.shared.clone();
        {
            let mut dirty = shared.dirty.lock();
            for db in all_databases(&shared.data_dir) {
                dirty.insert(db);
            }
        }
        // Take the lease before anything ships (waiting a few seconds at most; the loop
        // keeps trying).
        let (tx, rx) = std::sync::mpsc::channel();
        let first = shared.clone();
        self.shared.runtime.spawn(async move {
            let _ = tx.send(first.hold_lease().await);
        });
        let _ = rx.recv_timeout(SHIP_WAIT);
        self.shared.running.store(true, Ordering::Release);
        self.shared.runtime.spawn(async move { shared.run().await });
        self.shared.wake.notify_one();
    }

    /// Ships everything pending of every database now (or queued ones only), returning
    /// the databases that failed.
    pub async fn sync_all(&self) -> Vec<(String, String)> {
        let all: Vec<String> = all_databases(&self.shared.data_dir).collect();
        self.on_runtime(|shared| async move { shared.ship_each(all).await })
            .await
            .unwrap_or_default()
    }

    /// Ships what this process wrote and has not shipped yet (a command about to exit).
    pub async fn sync_dirty(&self) -> Vec<(String, String)> {
        let dirty = self.shared.take_dirty();
        self.on_runtime(|shared| async move { shared.ship_each(dirty).await })
            .await
            .unwrap_or_default()
    }

    /// Deletes the generations no restore within the retention can need: those whose
    /// successor began before the retention's start. Returns how many went.
    pub async fn apply_retention(&self) -> Result<usize, ReplicaError> {
        self.on_runtime(|shared| async move { shared.apply_retention().await })
            .await
            .map_err(|e| ReplicaError::Store(e.to_string()))?
    }

    /// Joins each generation's runs of small segments into larger objects and deletes
    /// what an earlier pass joined ([`crate::compact`]). Runs hourly with retention.
    pub async fn compact(&self) -> Result<crate::Compacted, ReplicaError> {
        self.on_runtime(|shared| async move { shared.compact().await })
            .await
            .map_err(|e| ReplicaError::Store(e.to_string()))?
    }

    /// Ships `db`'s pending frames now.
    pub async fn sync(&self, db: &str) -> Result<(), ReplicaError> {
        let db = db.to_owned();
        self.on_runtime(|shared| async move { shared.ship(&db).await })
            .await
            .map_err(|e| ReplicaError::Store(e.to_string()))?
    }

    /// Forgets `db`'s stream: its next write begins a new generation (after a restore
    /// swapped another file in).
    pub fn forget(&self, db: &str) {
        forget_position(&self.shared.data_dir, db);
        if let Some(s) = self.shared.streams.lock().get(db) {
            let mut st = s.state.lock();
            st.pos = None;
            st.loaded = true;
        }
        self.shared.dirty.lock().insert(db.to_owned());
        self.shared.wake.notify_one();
    }

    /// Every database's replication, as this process sees it.
    pub fn status(&self) -> Vec<DbStatus> {
        let now = self.shared.now_ms();
        let streams: Vec<Arc<Stream>> = self.shared.streams.lock().values().cloned().collect();
        let mut out: Vec<DbStatus> = streams
            .iter()
            .map(|s| {
                let st = s.state.lock();
                DbStatus {
                    db: s.db.clone(),
                    generation: st.pos.as_ref().map(|p| p.generation.clone()),
                    shipped_at_ms: st.pos.as_ref().map(|p| p.shipped_at_ms),
                    lag_ms: st.pending_since.map_or(0, |t| (now - t).max(0)),
                    bytes: st.pos.as_ref().map_or(0, |p| p.bytes),
                    error: st.error.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.db.cmp(&b.db));
        out
    }

    /// The commit-to-stored delays (milliseconds) recorded since the last call.
    pub fn take_lag_samples(&self) -> Vec<u32> {
        std::mem::take(&mut *self.shared.lags.lock()).into()
    }

    /// Why this server is not writing the replica, when another holds it.
    pub fn lease_error(&self) -> Option<String> {
        self.shared.lease_error.lock().clone()
    }

    /// Ships what is pending and gives the replica up for the next server (at shutdown).
    pub async fn release(&self) {
        let _ = self
            .on_runtime(|shared| async move {
                shared.stopped.store(true, Ordering::Release);
                for db in shared.take_dirty() {
                    let _ = shared.ship(&db).await;
                }
                // The hold is given up for the next server; this process may still ship
                // what its last closes leave, in its own generations.
                if shared.leased.load(Ordering::Acquire) {
                    let _ = shared.target.delete(LEASE).await;
                }
            })
            .await;
    }

    /// Runs `job` with the shared state on the replicator's own threads and waits for it.
    async fn on_runtime<T, F>(
        &self,
        job: impl FnOnce(Arc<Shared>) -> F,
    ) -> Result<T, tokio::task::JoinError>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.shared.runtime.spawn(job(self.shared.clone())).await
    }

    /// Whether the shipping loop runs in this process.
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Stops the loop (pending frames stay in the WAL for the next start).
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// Every database of a data directory: the control plane and each clinic file.
fn all_databases(data_dir: &Path) -> impl Iterator<Item = String> {
    let control = data_dir
        .join("control.db")
        .exists()
        .then(|| "control".to_owned());
    let clinics = std::fs::read_dir(data_dir.join("clinics"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?.strip_suffix(".db")?.to_owned();
            uuid::Uuid::parse_str(&name).ok()?;
            Some(name)
        })
        .collect::<Vec<_>>();
    control.into_iter().chain(clinics)
}

fn position_path(data_dir: &Path, db: &str) -> PathBuf {
    data_dir.join("replication").join(format!("{db}.json"))
}

/// Reads `db`'s saved position.
pub fn load_position(data_dir: &Path, db: &str) -> Option<Position> {
    let bytes = std::fs::read(position_path(data_dir, db)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes `db`'s saved position, so its next write starts a new generation.
pub fn forget_position(data_dir: &Path, db: &str) {
    let _ = std::fs::remove_file(position_path(data_dir, db));
}

fn save_position(data_dir: &Path, db: &str, pos: &Position) -> std::io::Result<()> {
    let path = position_path(data_dir, db);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(pos)?)?;
    std::fs::rename(tmp, path)
}

impl Shared {
    fn stream(&self, db: &str) -> Arc<Stream> {
        let mut streams = self.streams.lock();
        streams
            .entry(db.to_owned())
            .or_insert_with(|| {
                Arc::new(Stream {
                    db: db.to_owned(),
                    path: db_path(&self.data_dir, db),
                    state: parking_lot::Mutex::new(State::default()),
                    shipping: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Now, in milliseconds, on this replicator's clock.
    fn now_ms(&self) -> i64 {
        self.clock.read().now().timestamp_millis()
    }

    async fn apply_retention(&self) -> Result<usize, ReplicaError> {
        let horizon = self.now_ms() - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for db in crate::restore::databases(&self.target).await? {
            let gens = crate::restore::generations(&self.target, &db).await?;
            let mut doomed: Vec<String> = gens
                .windows(2)
                .filter(|pair| pair[1].meta.created_at_ms < horizon)
                .map(|pair| pair[0].name.clone())
                .collect();
            // A folder without a description (a deletion interrupted before its end, a
            // generation whose snapshot was stored but not its description) is never
            // restored from; once older than the retention it goes too. Its name begins
            // with its time; a younger one may be a generation being written.
            let described: std::collections::HashSet<&str> =
                gens.iter().map(|g| g.name.as_str()).collect();
            for name in self.target.folders(&db).await? {
                if !described.contains(name.as_str())
                    && crate::segment::generation_time(&name).is_some_and(|t| t < horizon)
                {
                    doomed.push(name);
                }
            }
            for name in doomed {
                // A folder target may keep the emptied folder: it is not counted again.
                if self.delete_generation(&db, &name).await? > 0 {
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    async fn compact(&self) -> Result<crate::Compacted, ReplicaError> {
        let mut done = crate::Compacted::default();
        for db in crate::restore::databases(&self.target).await? {
            for g in crate::restore::generations(&self.target, &db).await? {
                done += crate::compact::compact_generation(&self.target, &db, &g.name).await?;
            }
        }
        Ok(done)
    }

    /// Deletes every object of a generation, its description last: a deletion cut short
    /// leaves a folder without one, which the next retention pass takes up again.
    /// Returns how many objects went.
    async fn delete_generation(&self, db: &str, generation: &str) -> Result<usize, ReplicaError> {
        let meta = format!("{db}/{generation}/meta.json");
        let objects = self.target.list(&format!("{db}/{generation}")).await?;
        let mut described = false;
        for (name, _) in &objects {
            if *name == meta {
                described = true;
            } else {
                self.target.delete(name).await?;
            }
        }
        if described {
            self.target.delete(&meta).await?;
        }
        Ok(objects.len())
    }

    /// Marks every database whose files changed since the last look (written by another
    /// process, which this one's hooks do not see).
    fn notice_outside_writes(&self, seen: &mut HashMap<String, (u64, i64)>) {
        use std::os::unix::fs::MetadataExt;
        for db in all_databases(&self.data_dir) {
            let path = db_path(&self.data_dir, &db);
            let stamp = |p: &Path| {
                std::fs::metadata(p).map_or((0, 0), |m| {
                    (m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000)
                })
            };
            let (a, b) = (stamp(&path), stamp(&wal_path(&path)));
            let now = (a.0 ^ b.0.rotate_left(32), a.1 ^ b.1);
            if seen
                .insert(db.clone(), now)
                .is_some_and(|before| before != now)
            {
                self.dirty.lock().insert(db);
            }
        }
    }

    /// Takes or renews the lease; false when another server holds it.
    async fn hold_lease(&self) -> bool {
        let now = now_ms();
        let current = match self.target.get_versioned(LEASE).await {
            Ok(c) => c,
            Err(e) => {
                // Unreachable: shipping fails too. The hold lapses on its own.
                tracing::debug!(error = %e, "cannot read the replica lease");
                return self.leased.load(Ordering::Acquire);
            }
        };
        let version = match &current {
            Some((bytes, version)) => match serde_json::from_slice::<Lease>(bytes) {
                Ok(l) if l.holder != self.holder && l.expires_at_ms > now => {
                    let why = format!(
                        "another server (host {}, pid {}) writes this replica until {} unless it renews; this one is not replicating",
                        l.host,
                        l.pid,
                        crate::restore::rfc3339(l.expires_at_ms)
                    );
                    if self.leased.swap(false, Ordering::AcqRel)
                        || self.lease_error.lock().is_none()
                    {
                        tracing::error!("{why}");
                    }
                    *self.lease_error.lock() = Some(why);
                    return false;
                }
                _ => Some(version.clone()),
            },
            None => None,
        };
        let lease = Lease {
            holder: self.holder.clone(),
            host: std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            pid: std::process::id(),
            expires_at_ms: now + LEASE_TTL_MS,
        };
        let bytes = serde_json::to_vec(&lease).unwrap_or_default();
        match self.target.put_if(LEASE, bytes, version).await {
            Ok(true) => {
                if !self.leased.swap(true, Ordering::AcqRel) {
                    tracing::info!("this server writes the replica");
                }
                *self.lease_error.lock() = None;
                true
            }
            Ok(false) => {
                self.leased.store(false, Ordering::Release);
                false
            }
            Err(_) => self.leased.load(Ordering::Acquire),
        }
    }

    async fn run(self: Arc<Self>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let mut last_lease: Option<std::time::Instant> = None;
        let mut seen = HashMap::new();
        self.notice_outside_writes(&mut seen);
        let mut last_look = std::time::Instant::now();
        let mut last_retention: Option<std::time::Instant> = None;
        while !self.stopped.load(Ordering::Acquire) {
            let lease_every = if self.leased.load(Ordering::Acquire) {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(2)
            };
            if last_lease.is_none_or(|t| t.elapsed() >= lease_every) {
                last_lease = Some(std::time::Instant::now());
                self.hold_lease().await;
            }
            if !self.leased.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if last_look.elapsed() >= Duration::from_secs(10) {
                self.notice_outside_writes(&mut seen);
                last_look = std::time::Instant::now();
            }
            if last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                last_retention = Some(std::time::Instant::now());
                match self.apply_retention().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(generations = n, "replica retention applied"),
                    Err(e) => tracing::warn!(error = %e, "replica retention failed; will retry"),
                }
                match self.compact().await {
                    Ok(c) if c == crate::Compacted::default() => {}
                    Ok(c) => tracing::info!(
                        written = c.written,
                        joined = c.joined,
                        deleted = c.deleted,
                        "replica segments compacted"
                    ),
                    Err(e) => tracing::warn!(error = %e, "replica compaction failed; will retry"),
                }
            }
            let batch = self.take_dirty();
            if batch.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
                continue;
            }
            // Each database ships as soon as a slot is free; a slow one never holds up
            // the others' next commits.
            for db in batch {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    if me.ship(&db).await.is_err() {
                        // Retried after a pause; the slot stays taken meanwhile, so an
                        // unreachable store is not hammered.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        me.dirty.lock().insert(db);
                        me.wake.notify_one();
                    }
                    drop(permit);
                });
            }
        }
    }

    /// The databases written since they last shipped, leaving the set empty.
    fn take_dirty(&self) -> Vec<String> {
        std::mem::take(&mut *self.dirty.lock())
            .into_iter()
            .collect()
    }

    /// Ships each of `dbs`, returning those that failed and why.
    async fn ship_each(&self, dbs: Vec<String>) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for db in dbs {
            if let Err(e) = self.ship(&db).await {
                failed.push((db, e.to_string()));
            }
        }
        failed
    }

    /// Ships what `db` has not shipped, starting a generation if it must.
    async fn ship(&self, db: &str) -> Result<(), ReplicaError> {
        if self.running.load(Ordering::Acquire) && !self.leased.load(Ordering::Acquire) {
            return Err(ReplicaError::Fenced(
                self.lease_error
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "this server does not hold the replica lease yet".into()),
            ));
        }
        let stream = self.stream(db);
        let _one = stream.shipping.lock().await;
        let result = self.ship_locked(&stream).await;
        let mut st = stream.state.lock();
        let error = result.as_ref().err().map(ToString::to_string);
        match (&st.error, &error) {
            (None, Some(e)) => {
                tracing::warn!(db = %db, error = %e, "replication is behind; retrying every second");
            }
            (Some(_), None) => tracing::info!(db = %db, "replication caught up"),
            _ => {}
        }
        st.error = error;
        result
    }

    async fn ship_locked(&self, stream: &Stream) -> Result<(), ReplicaError> {
        for _ in 0..64 {
            let work = self.plan(stream)?;
            match work {
                Work::Nothing => return Ok(()),
                Work::Snapshot => self.snapshot(stream).await?,
                Work::Segment {
                    header,
                    body,
                    cursor,
                    frames,
                } => {
                    let name = segment::segment_name(&stream.db, &header.generation, header.seq);
                    let bytes = segment::encode(&header, &body);
                    let len = bytes.len() as u64;
                    match self.target.create(&name, bytes).await {
                        Ok(()) => {}
                        Err(ReplicaError::Fenced(why)) => {
                            // Another writer holds this generation: start our own.
                            tracing::warn!(db = %stream.db, "{why}; starting a new generation");
                            stream.state.lock().pos = None;
                            forget_position(&self.data_dir, &stream.db);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    {
                        let stored = self.now_ms();
                        let mut lags = self.lags.lock();
                        for c in &header.commits {
                            lags.push_back(
                                u32::try_from((stored - c.at_ms).max(0)).unwrap_or(u32::MAX),
                            );
                        }
                        while lags.len() > 100_000 {
                            lags.pop_front();
                        }
                    }
                    let mut st = stream.state.lock();
                    let Some(pos) = st.pos.as_mut() else { continue };
                    if pos.generation != header.generation || pos.next_seq != header.seq {
                        continue;
                    }
                    pos.next_seq += 1;
                    pos.salt = Some(header.salt);
                    pos.cursor = Some(cursor);
                    pos.bytes += len;
                    pos.shipped_at_ms = self.now_ms();
                    while st.commits.front().is_some_and(|(n, _)| *n <= frames) {
                        st.commits.pop_front();
                    }
                    if st.commits.is_empty() {
                        st.pending_since = None;
                    } else {
                        st.pending_since = st.commits.front().map(|(_, t)| *t);
                    }
                    let Some(pos) = st.pos.clone() else { continue };
                    drop(st);
                    save_position(&self.data_dir, &stream.db, &pos)?;
                }
            }
        }
        Ok(())
    }

    fn ensure_loaded(&self, stream: &Stream, st: &mut State) {
        if !st.loaded {
            st.pos = load_position(&self.data_dir, &stream.db);
            st.loaded = true;
        }
    }

    /// Decides what to ship next, reading the WAL as it is on disk.
    fn plan(&self, stream: &Stream) -> Result<Work, ReplicaError> {
        let mut st = stream.state.lock();
        self.ensure_loaded(stream, &mut st);
        let Ok(id) = file_id(&stream.path) else {
            // The file is gone (purged, or not restored yet).
            return Ok(Work::Nothing);
        };
        let Some(pos) = st.pos.clone() else {
            return Ok(Work::Snapshot);
        };
        if pos.file_id != id {
            // Another process may have started this file's stream (a restore): take its.
            match load_position(&self.data_dir, &stream.db) {
                Some(p) if p.file_id == id => {
                    st.pos = Some(p);
                    drop(st);
                    return self.plan(stream);
                }
                _ => return Ok(Work::Snapshot),
            }
        }
        // A fresh snapshot now and then bounds a restore's replay and lets old
        // generations go: after the retention at the latest (so at most two generations
        // are kept), and after half of it once the segments since the snapshot hold half
        // the file again (a busy clinic's restore replays at most that much). A quiet
        // clinic is not copied whole twice a retention for a few changed pages. The
        // control plane, small, always takes the half. After a purge it starts one at
        // once, from a checkpointed file ([`Replicator::fresh_generation_soon`]), so its
        // generations holding the purged clinic's wrapped key go a retention later.
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let age = self.now_ms() - pos.created_at_ms;
        let file = std::fs::metadata(&stream.path).map_or(0, |m| m.len());
        let busy = pos.bytes.saturating_mul(2) > file.saturating_mul(3);
        if age > retention || (age > retention / 2 && (busy || stream.db == "control")) {
            return Ok(Work::Snapshot);
        }
        let u = match unshipped(&wal_path(&stream.path), Some(&pos))? {
            WalState::Empty => return Ok(Work::Nothing),
            WalState::Broken => return Ok(Work::Snapshot),
            WalState::Continues(u) => u,
        };
        let (h, scan) = (u.header, &u.scan);
        if scan.frames.is_empty() {
            return Ok(Work::Nothing);
        }
        let frame_len = u64::from(h.page_size) + wal::FRAME_HEADER as u64;
        let now = self.now_ms();
        let mut commits = Vec::new();
        for f in scan.commits() {
            let end = f.offset + frame_len;
            let n = frames_at(end, h.page_size);
            let at = st.time_of(n).unwrap_or(now);
            commits.push(Commit { end, at_ms: at });
        }
        let end = (scan.end.offset - u.base) as usize;
        let body = if u.from == 0 {
            [u.header_bytes.as_slice(), &u.tail[..end]].concat()
        } else {
            u.tail[..end].to_vec()
        };
        let from = u.from;
        let header = SegmentHeader {
            db: stream.db.clone(),
            generation: pos.generation.clone(),
            seq: pos.next_seq,
            through: None,
            salt: h.salt,
            from,
            to: scan.end.offset,
            commits,
            sha256: segment::digest(&body),
        };
        Ok(Work::Segment {
            header,
            body,
            cursor: scan.end,
            frames: frames_at(scan.end.offset, h.page_size),
        })
    }

    /// Begins a new generation with a copy of the encrypted file.
    async fn snapshot(&self, stream: &Stream) -> Result<(), ReplicaError> {
        let now = self.now_ms();
        let generation = segment::new_generation(now);
        let tmp = self
            .state_dir
            .join("tmp")
            .join(format!("{}-{generation}.db", stream.db));
        let id = {
            let mut st = stream.state.lock();
            st.snapshotting = true;
            // The file changes only when this replicator checkpoints, which it does not
            // while `snapshotting` is set, so the copy is the file as of the last
            // checkpoint; the WAL on disk continues it from its first frame.
            // A process that does not replicate (a command run while the server serves)
            // may checkpoint meanwhile: a copy during which the file changed is retried.
            let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let mut copied = Err(std::io::Error::other(
                "the file kept changing during the copy",
            ));
            for _ in 0..5 {
                let before = stamp(&stream.path);
                let r = std::fs::copy(&stream.path, &tmp).and_then(|_| file_id(&stream.path));
                if r.is_err() || stamp(&stream.path) == before {
                    copied = r;
                    break;
                }
            }
            if copied.is_err() {
                st.snapshotting = false;
            }
            copied?
        };
        let result = async {
            let bytes = tokio::fs::read(&tmp).await?;
            let meta = Meta {
                db: stream.db.clone(),
                generation: generation.clone(),
                created_at_ms: now,
                size: bytes.len() as u64,
                sha256: segment::digest(&bytes),
            };
            drop(bytes);
            self.target
                .upload_file(&format!("{}/{generation}/snapshot.db", stream.db), &tmp)
                .await?;
            self.target
                .create(
                    &format!("{}/{generation}/meta.json", stream.db),
                    serde_json::to_vec(&meta).unwrap_or_default(),
                )
                .await?;
            Ok::<u64, ReplicaError>(meta.size)
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        let mut st = stream.state.lock();
        st.snapshotting = false;
        let size = result?;
        let pos = Position {
            generation,
            created_at_ms: now,
            next_seq: 0,
            salt: None,
            cursor: None,
            file_id: id,
            bytes: size,
            shipped_at_ms: self.now_ms(),
        };
        st.pos = Some(pos.clone());
        drop(st);
        save_position(&self.data_dir, &stream.db, &pos)?;
        tracing::debug!(db = %stream.db, generation = %pos.generation, bytes = size, "replica generation started");
        Ok(())
    }

    /// Ships `db` from a thread that is not the replicator's, waiting at most
    /// [`SHIP_WAIT`].
    fn ship_and_wait(&self, db: &str) -> bool {
        let Some(me) = self.me.upgrade() else {
            return false;
        };
        // While the store is failing for this database, nobody waits on it: its frames
        // stay in the WAL (uncheckpointed) and the loop ships them once it is back.
        if self.stream(db).state.lock().error.is_some() {
            return false;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let db = db.to_owned();
        self.runtime.spawn(async move {
            let _ = tx.send(me.ship(&db).await.is_ok());
        });
        rx.recv_timeout(SHIP_WAIT).unwrap_or(false)
    }

    /// Checkpoints `db` with `checkpoint` if every committed frame of its WAL is shipped.
    fn checkpoint_if_shipped(&self, db: &str, checkpoint: impl FnOnce() -> bool) {
        let stream = self.stream(db);
        let mut st = stream.state.lock();
        self.ensure_loaded(&stream, &mut st);
        if st.snapshotting {
            return;
        }
        let Some(pos) = st.pos.clone() else { return };
        if file_id(&stream.path).ok() != Some(pos.file_id) {
            return;
        }
        let shipped = match unshipped(&wal_path(&stream.path), Some(&pos)) {
            Ok(WalState::Empty) => true,
            Ok(WalState::Continues(u)) => u.scan.frames.is_empty(),
            Ok(WalState::Broken) | Err(_) => false,
        };
        if shipped && checkpoint() {
            // The next WAL starts afresh: its first bytes begin the next segment.
            st.commits.clear();
            if std::mem::take(&mut st.checkpoint_wanted) {
                // Asked for: the next shipment begins a generation with a snapshot of
                // the file as it is now, holding every commit.
                st.pos = None;
                drop(st);
                forget_position(&self.data_dir, db);
                self.dirty.lock().insert(db.to_owned());
                self.wake.notify_one();
                return;
            }
            if let Some(pos) = st.pos.as_mut() {
                pos.salt = None;
                pos.cursor = None;
                let pos = pos.clone();
                drop(st);
                let _ = save_position(&self.data_dir, db, &pos);
            }
        }
    }
}

/// What of a database's WAL is not in the replica yet, read from disk: only the header
/// and the bytes past what was shipped.
struct Unshipped {
    header: wal::Header,
    header_bytes: Vec<u8>,
    /// Where the next segment begins (0: with the WAL's header).
    from: u64,
    /// The bytes from `scan`'s start on.
    tail: Vec<u8>,
    /// Offset of `tail`'s first byte.
    base: u64,
    scan: wal::Scan,
}

/// What `Unshipped` found, or that the WAL does not continue the stream.
enum WalState {
    /// No WAL, or no valid header: nothing to ship.
    Empty,
    /// The WAL does not continue what was shipped (a checkpoint this stream did not make).
    Broken,
    /// The WAL continues the stream; its unshipped committed frames (perhaps none).
    Continues(Unshipped),
}

fn unshipped(wal_file: &Path, pos: Option<&Position>) -> std::io::Result<WalState> {
    let Some((header, header_bytes)) = wal::read_header(wal_file)? else {
        return Ok(WalState::Empty);
    };
    let (from, start) = match pos.map(|p| (p.salt, p.cursor)) {
        Some((Some(salt), Some(cursor))) if salt == header.salt => (cursor.offset, cursor),
        // The first WAL of a generation, or the next one after a checkpoint that
        // followed a complete shipment (which clears the salt).
        Some((None, _)) | None => (0, Cursor::start(&header)),
        Some(_) => return Ok(WalState::Broken),
    };
    let tail = wal::read_from(wal_file, start.offset)?;
    let scan = wal::scan_at(&tail, start.offset, &header, start);
    Ok(WalState::Continues(Unshipped {
        header,
        header_bytes,
        from,
        tail,
        base: start.offset,
        scan,
    }))
}

fn frames_at(offset: u64, page_size: u32) -> u32 {
    let frame = u64::from(page_size) + wal::FRAME_HEADER as u64;
    u32::try_from(offset.saturating_sub(wal::HEADER as u64) / frame).unwrap_or(u32::MAX)
}

impl ward_tenancy::db::WalWatch for Shared {
    fn watches(&self, path: &Path) -> bool {
        !self.stopped.load(Ordering::Acquire) && db_name(&self.data_dir, path).is_some()
    }

    fn committed(&self, path: &Path, frames: u32, wal: &mut rusqlite::hooks::Wal) {
        let Some(db) = db_name(&self.data_dir, path) else {
            return;
        };
        let stream = self.stream(&db);
        let (starting, wanted) = {
            let mut st = stream.state.lock();
            self.ensure_loaded(&stream, &mut st);
            st.note_commit(frames, self.now_ms());
            (st.pos.is_none(), st.checkpoint_wanted)
        };
        self.dirty.lock().insert(db.clone());
        self.wake.notify_one();
        if starting && frames < CHECKPOINT_FRAMES {
            // A database's first commit (a new clinic) waits for its generation to be
            // stored: a clinic the control plane lists always has a copy to restore.
            self.ship_and_wait(&db);
        }
        if (frames >= CHECKPOINT_FRAMES || wanted) && self.ship_and_wait(&db) {
            self.checkpoint_if_shipped(&db, || {
                wal.checkpoint_v2(rusqlite::wal::CheckpointMode::TRUNCATE)
                    .is_ok()
            });
        }
    }

    fn closing(&self, path: &Path, conn: &rusqlite::Connection) {
        let Some(db) = db_name(&self.data_dir, path) else {
            return;
        };
        if self.ship_and_wait(&db) {
            self.checkpoint_if_shipped(&db, || {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
                .is_ok_and(|busy| busy == 0)
            });
        }
    }
}

/// Every database's replication as the data directory shows it (for a process other
/// than the one shipping): the saved position, and whether the WAL holds committed
/// frames beyond it (the lag then counts from the WAL's last change).
pub fn disk_status(data_dir: &Path) -> Vec<DbStatus> {
    let now = now_ms();
    all_databases(data_dir)
        .map(|db| {
            let path = db_path(data_dir, &db);
            let pos = load_position(data_dir, &db);
            let wal_file = wal_path(&path);
            let pending = match unshipped(&wal_file, pos.as_ref()) {
                Ok(WalState::Empty) | Err(_) => false,
                Ok(WalState::Broken) => true,
                Ok(WalState::Continues(u)) => pos.is_none() || !u.scan.frames.is_empty(),
            };
            let changed_ms = std::fs::metadata(&wal_file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(now, |d| i64::try_from(d.as_millis()).unwrap_or(now));
            DbStatus {
                generation: pos.as_ref().map(|p| p.generation.clone()),
                shipped_at_ms: pos.as_ref().map(|p| p.shipped_at_ms),
                lag_ms: if pending {
                    (now - changed_ms).max(0)
                } else {
                    0
                },
                bytes: pos.as_ref().map_or(0, |p| p.bytes),
                error: pos.is_none().then(|| "never replicated".to_owned()),
                db,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn a_commit_is_dated_by_the_current_wals_notes_not_an_earlier_wals() {
        let mut st = State::default();
        // Two commits of a WAL checkpointed away by another process before they shipped.
        st.note_commit(5, 1_000);
        st.note_commit(9, 2_000);
        // The WAL began again: a commit leaving 3 frames, then one leaving 5.
        st.note_commit(3, 3_000);
        st.note_commit(5, 4_000);
        assert_eq!(st.time_of(5), Some(4_000));
        assert_eq!(st.time_of(3), Some(3_000));
        assert_eq!(st.time_of(9), None, "a frame count of the old WAL");
        assert_eq!(
            st.pending_since,
            Some(3_000),
            "the lag counts from the new WAL"
        );
    }
}
