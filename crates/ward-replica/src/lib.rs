//! Continuous replication of every database Ward owns to an object store, and restores
//! from it to any second.
//!
//! Each database's WAL is shipped as it is written (ciphertext pages, as on disk) in
//! *generations*: a snapshot of the encrypted file, then segments of WAL bytes in order,
//! each with the times of the commits it ends. Restoring replays a generation's
//! segments onto its snapshot up to the last commit at or before a chosen moment. The
//! replica never holds a key or a plaintext page.

pub mod compact;
pub mod recovery;
pub mod replicator;
pub mod restore;
pub mod segment;
pub mod target;
pub mod wal;

pub use compact::{Compacted, compact_generation};
pub use replicator::{DbStatus, Position, Replicator, db_name, db_path, disk_status};
pub use restore::{
    Generation, PurgedObjects, Restored, databases, delete_database, delete_purged, generations,
    restore_generation, restore_to, stored,
};
pub use target::Target;

/// What went wrong with a replica.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The target is misconfigured.
    #[error("{0}")]
    Config(String),
    /// The object store failed or is unreachable.
    #[error("the replica store failed: {0}")]
    Store(String),
    /// Another writer wrote where this one meant to.
    #[error("{0}")]
    Fenced(String),
    /// An object is damaged or missing, so the replica cannot be trusted past it.
    #[error("the replica is damaged: {0}")]
    Damaged(String),
    /// Nothing to restore.
    #[error("{0}")]
    NotFound(String),
    /// A local file could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Now, in milliseconds since the epoch (UTC). Replication records when commits really
/// happened, so it reads the wall clock.
pub fn now_ms() -> i64 {
    use ward_core::Clock;
    ward_core::SystemClock.now().timestamp_millis()
}
