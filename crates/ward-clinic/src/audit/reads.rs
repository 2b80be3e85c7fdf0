//! Auditing reads without slowing pages down: views are queued by the request (a channel
//! send) and written by one background task, per clinic, in one transaction per batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use ward_core::ClinicId;
use ward_tenancy::{TenantHandle, TenantStore};

use super::{AuditError, Entry, in_transaction, record};

/// How the read auditor batches.
#[derive(Debug, Clone)]
pub struct ReadAuditConfig {
    /// The longest a noted view waits before its batch is written.
    pub max_delay: Duration,
    /// A clinic's batch is written at once when it reaches this many views.
    pub max_batch: usize,
    /// How long to wait before trying a clinic again after a failed write.
    pub retry_after: Duration,
    /// Clinics written at the same time.
    pub parallel: usize,
    /// Attempts [`ReadAuditor::flush`] makes per clinic before giving up.
    pub flush_attempts: u32,
}

impl Default for ReadAuditConfig {
    fn default() -> Self {
        Self {
            max_delay: Duration::from_millis(100),
            max_batch: 500,
            retry_after: Duration::from_secs(1),
            parallel: 4,
            flush_attempts: 5,
        }
    }
}

/// Counters for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReadAuditStats {
    /// Views noted since start.
    pub noted: u64,
    /// Views written since start.
    pub written: u64,
    /// Failed batch writes since start (each retried).
    pub failed_writes: u64,
    /// Batches written since start: one commit each, so `written / batches` is how many
    /// views a commit carried.
    pub batches: u64,
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Views written by this flush.
    pub written: u64,
    /// Views that could still not be written (their clinic unavailable); they stay
    /// queued and are retried.
    pub pending: u64,
}

#[expect(
    clippy::large_enum_variant,
    reason = "almost every message is a view; boxing it would add an allocation per page view"
)]
enum Command {
    View(ClinicId, Option<TenantHandle>, Entry),
    Flush(oneshot::Sender<FlushOutcome>),
}

#[derive(Default)]
struct Counters {
    noted: AtomicU64,
    written: AtomicU64,
    failed_writes: AtomicU64,
    batches: AtomicU64,
}

/// Queues views and writes them in batches. One per process; cheap to clone.
#[derive(Clone)]
pub struct ReadAuditor {
    tx: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for ReadAuditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAuditor")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ReadAuditor {
    /// Starts the writer task on the current runtime. It runs until every clone of the
    /// returned auditor is dropped, writing what is still queued before it ends.
    pub fn start(store: TenantStore, config: ReadAuditConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(store, config, counters.clone());
        tokio::spawn(writer.run(rx));
        Self { tx, counters }
    }

    /// Queues a view of a record in clinic `clinic`: a channel send, nothing more. The row
    /// is written within [`ReadAuditConfig::max_delay`] (or retried until it is).
    ///
    /// Refuses an entry the log would refuse (so a bad entry cannot block a batch).
    pub fn note_view(&self, clinic: ClinicId, entry: Entry) -> Result<(), AuditError> {
        self.send_view(clinic, None, entry)
    }

    /// [`Self::note_view`] for a view made through `tenant`, the clinic's open handle.
    /// The queued batch keeps the handle until it is written, so a clinic that leaves the
    /// handle cache in the meantime is not opened a second time just for its audit rows
    /// (opening costs about a millisecond; a request already paid for this one).
    pub fn note_view_in(&self, tenant: &TenantHandle, entry: Entry) -> Result<(), AuditError> {
        self.send_view(tenant.id(), Some(tenant.clone()), entry)
    }

    fn send_view(
        &self,
        clinic: ClinicId,
        tenant: Option<TenantHandle>,
        entry: Entry,
    ) -> Result<(), AuditError> {
        entry.validate()?;
        self.counters.noted.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Command::View(clinic, tenant, entry)).is_err() {
            // Only possible if the writer task died, which the log has already shown.
            tracing::error!(clinic = %clinic, "the read auditor has stopped; a view was not recorded");
        }
        Ok(())
    }

    /// Writes every view noted before this call, now. Used at orderly shutdown (before the
    /// tenant store closes) and by tests.
    pub async fn flush(&self) -> FlushOutcome {
        let (reply, done) = oneshot::channel();
        let stopped = || {
            tracing::error!("the read auditor has stopped; queued views cannot be written");
            let stats = self.stats();
            FlushOutcome {
                written: 0,
                pending: stats.noted.saturating_sub(stats.written),
            }
        };
        if self.tx.send(Command::Flush(reply)).is_err() {
            return stopped();
        }
        done.await.unwrap_or_else(|_| stopped())
    }

    /// Counters since start.
    pub fn stats(&self) -> ReadAuditStats {
        ReadAuditStats {
            noted: self.counters.noted.load(Ordering::Relaxed),
            written: self.counters.written.load(Ordering::Relaxed),
            failed_writes: self.counters.failed_writes.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
        }
    }
}

/// One clinic's queued views.
struct Batch {
    entries: Vec<Entry>,
    /// The clinic's handle as the newest view found it, if the view came with one.
    tenant: Option<TenantHandle>,
    /// When the oldest queued view arrived.
    since: Instant,
    /// After a failure: not before this.
    retry_at: Option<Instant>,
}

impl Batch {
    fn due_at(&self, config: &ReadAuditConfig) -> Instant {
        let due = if self.entries.len() >= config.max_batch {
            self.since
        } else {
            self.since + config.max_delay
        };
        self.retry_at.map_or(due, |r| r.max(due))
    }
}

/// What a write task hands back: the clinic, its batch, and how the write went.
type Written = (ClinicId, Batch, Result<(), String>);

struct Writer {
    store: TenantStore,
    config: ReadAuditConfig,
    counters: Arc<Counters>,
    /// Views waiting to be written, per clinic (a clinic being written may have more).
    pending: HashMap<ClinicId, Batch>,
    /// The writes under way, at most `config.parallel`.
    writing: tokio::task::JoinSet<Written>,
    /// The clinic of each of those writes: a clinic has one write at a time, so its rows
    /// keep the order its views came in.
    in_flight: HashMap<tokio::task::Id, ClinicId>,
}

impl Writer {
    fn new(store: TenantStore, config: ReadAuditConfig, counters: Arc<Counters>) -> Self {
        Self {
            store,
            config,
            counters,
            pending: HashMap::new(),
            writing: tokio::task::JoinSet::new(),
            in_flight: HashMap::new(),
        }
    }

    /// Receives views and writes them as they fall due, without ever waiting for a write
    /// to finish before taking the next view or starting the next clinic's write: a
    /// clinic whose write is slow (its fsync, a long page holding its connection) holds
    /// up only itself.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let next_due = self.start_due();
            let wake = tokio::time::sleep_until(
                next_due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::View(clinic, tenant, entry)) => {
                        self.queue(clinic, tenant, entry);
                        // Take everything already waiting, so a burst becomes one batch
                        // per clinic, not many.
                        while let Ok(c) = rx.try_recv() {
                            match c {
                                Command::View(clinic, tenant, entry) => {
                                    self.queue(clinic, tenant, entry);
                                }
                                Command::Flush(reply) => {
                                    self.flush(reply).await;
                                    break;
                                }
                            }
                        }
                    }
                    Some(Command::Flush(reply)) => self.flush(reply).await,
                    None => {
                        let outcome = self.write_all().await;
                        if outcome.pending > 0 {
                            tracing::error!(
                                views = outcome.pending,
                                "views could not be written to the audit log before the read auditor stopped"
                            );
                        }
                        return;
                    }
                },
                Some(joined) = self.writing.join_next_with_id(), if !self.writing.is_empty() => {
                    self.settle(joined);
                }
                () = wake, if next_due.is_some() => {}
            }
        }
    }

    fn queue(&mut self, clinic: ClinicId, tenant: Option<TenantHandle>, entry: Entry) {
        let batch = self.pending.entry(clinic).or_insert_with(|| Batch {
            entries: Vec::new(),
            tenant: None,
            since: Instant::now(),
            retry_at: None,
        });
        batch.entries.push(entry);
        if tenant.is_some() {
            batch.tenant = tenant;
        }
    }

    /// Starts the writes of the batches that are due, oldest first, as far as there are
    /// places for them, and says when the next waiting batch falls due (none while every
    /// place is taken: a finishing write wakes the loop instead). One pass over the queue.
    fn start_due(&mut self) -> Option<Instant> {
        let free = self
            .config
            .parallel
            .max(1)
            .saturating_sub(self.writing.len());
        if free == 0 {
            return None;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        let mut next = None::<Instant>;
        for (id, batch) in &self.pending {
            if self.is_writing(*id) {
                continue;
            }
            let at = batch.due_at(&self.config);
            if at <= now {
                due.push((batch.since, *id));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        if due.len() > free {
            due.select_nth_unstable_by_key(free, |(since, _)| *since);
            due.truncate(free);
        }
        due.sort_unstable_by_key(|(since, _)| *since);
        let places_left = due.len() < free;
        for (_, id) in due {
            self.start(id);
        }
        // With every place taken the loop comes back when a write ends.
        next.filter(|_| places_left)
    }

    /// The clinics with a batch waiting and no write under way, oldest view first.
    fn oldest_first(&self) -> Vec<ClinicId> {
        let mut waiting: Vec<(Instant, ClinicId)> = self
            .pending
            .iter()
            .filter(|(id, _)| !self.is_writing(**id))
            .map(|(id, b)| (b.since, *id))
            .collect();
        waiting.sort_unstable_by_key(|(since, _)| *since);
        waiting.into_iter().map(|(_, id)| id).collect()
    }

    /// Starts writing clinic `id`'s batch.
    fn start(&mut self, id: ClinicId) {
        let Some(mut batch) = self.pending.remove(&id) else {
            return;
        };
        let store = self.store.clone();
        let tenant = batch.tenant.take();
        // Each clinic in its own task: a write blocks its thread, and clinics must not
        // wait for each other.
        let task = self.writing.spawn(async move {
            let result = write_batch(&store, id, tenant, &batch.entries).await;
            (id, batch, result)
        });
        self.in_flight.insert(task.id(), id);
    }

    fn is_writing(&self, id: ClinicId) -> bool {
        self.in_flight.values().any(|c| *c == id)
    }

    /// Books a finished write; a failed batch goes back to the queue with a retry time.
    /// Returns the rows written.
    fn settle(
        &mut self,
        joined: Result<(tokio::task::Id, Written), tokio::task::JoinError>,
    ) -> u64 {
        let task = match &joined {
            Ok((task, _)) => *task,
            Err(e) => e.id(),
        };
        self.in_flight.remove(&task);
        let Ok((_, (id, mut batch, result))) = joined else {
            // A panic inside a write: the batch went with it. Never expected; loud if it
            // happens.
            tracing::error!("a read-audit write task panicked; its views are lost");
            return 0;
        };
        match result {
            Ok(()) => {
                let n = batch.entries.len() as u64;
                self.counters.written.fetch_add(n, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                // From the oldest view's arrival to its row: the flush lag.
                metrics::histogram!("ward_audit_read_flush_lag_seconds")
                    .record(batch.since.elapsed().as_secs_f64());
                n
            }
            Err(reason) => {
                self.counters.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    clinic = %id,
                    views = batch.entries.len(),
                    %reason,
                    "views could not be written to the audit log yet; will retry"
                );
                batch.retry_at = Some(Instant::now() + self.config.retry_after);
                // Views noted while this batch was being written go after it.
                if let Some(newer) = self.pending.remove(&id) {
                    batch.entries.extend(newer.entries);
                }
                self.pending.insert(id, batch);
                0
            }
        }
    }

    async fn flush(&mut self, reply: oneshot::Sender<FlushOutcome>) {
        let outcome = self.write_all().await;
        // The caller may have stopped waiting; the views are written either way.
        let _ = reply.send(outcome);
    }

    /// Writes every clinic's batch now (after the writes under way), retrying failures a
    /// few times.
    async fn write_all(&mut self) -> FlushOutcome {
        let mut written = 0;
        while let Some(joined) = self.writing.join_next_with_id().await {
            written += self.settle(joined);
        }
        let parallel = self.config.parallel.max(1);
        for attempt in 1..=self.config.flush_attempts.max(1) {
            // Each batch once per round; one that fails waits for the next round.
            let mut round = self.oldest_first().into_iter();
            loop {
                while self.writing.len() < parallel {
                    let Some(id) = round.next() else { break };
                    self.start(id);
                }
                let Some(joined) = self.writing.join_next_with_id().await else {
                    break;
                };
                written += self.settle(joined);
            }
            if self.pending.is_empty() || attempt == self.config.flush_attempts {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pending = self.pending.values().map(|b| b.entries.len() as u64).sum();
        FlushOutcome { written, pending }
    }
}

/// Writes one clinic's views, through the handle the views came with when there is one.
/// A clinic an operator has locked since is left to [`TenantStore::get`], which refuses
/// it until the lock is gone (and the held handle is dropped, so a restore waiting for
/// every handle to close is not kept waiting).
async fn write_batch(
    store: &TenantStore,
    id: ClinicId,
    tenant: Option<TenantHandle>,
    entries: &[Entry],
) -> Result<(), String> {
    let held = tenant.filter(|_| !store.is_locked(id));
    let tenant = match held {
        Some(t) => t,
        None => store.get(id).await.map_err(|e| e.to_string())?,
    };
    tenant
        .with(|conn| {
            // These views waited in memory up to `max_delay` before this write, so their
            // rows were never promised to survive a power cut; their commit need not
            // wait for the disk (`synchronous=NORMAL` in WAL mode: durable at the next
            // full commit or checkpoint, never corrupt). Every other write on the
            // connection stays `FULL`. Pragmas take effect when prepared, so these two
            // go through `execute_batch`, which never takes a statement from the cache.
            conn.execute_batch("PRAGMA synchronous=NORMAL")?;
            let written = in_transaction(&conn, |tx| {
                for entry in entries {
                    record(&tx, entry)?;
                }
                Ok::<_, AuditError>(())
            });
            conn.execute_batch("PRAGMA synchronous=FULL")?;
            written
        })
        .await
        .map_err(|e| e.to_string())
}
