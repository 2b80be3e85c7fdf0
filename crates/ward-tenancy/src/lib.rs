//! Many encrypted SQLite databases in one process.
//!
//! A clinic id maps to exactly one file, `<data>/clinics/<uuid>.db`, encrypted under the
//! clinic's own data key; [`TenantStore`] opens it on first use, brings its schema up to
//! date and keeps the handle in a bounded cache. [`db`] is the one place a database
//! connection is opened and configured, for clinic files and the control plane alike.

pub mod backup;
pub mod cached;
pub mod check;
pub mod db;
pub mod fds;
pub mod forensic;
pub mod format;
pub mod keys;
mod lockfile;
pub mod memory;
pub mod migrate;
mod pin;
pub mod sealed;
pub mod sql;
mod store;
mod telemetry;

#[cfg(test)]
mod engine_tests;

#[cfg(test)]
mod test_files {
    use std::path::PathBuf;

    use tempfile::TempDir;

    use crate::DataKey;

    /// A path named `name` in a new empty folder, which lasts as long as the `TempDir`.
    pub(crate) fn temp_file(name: &str) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        (dir, path)
    }

    /// [`temp_file`] for a new database, with a fresh key to encrypt it.
    pub(crate) fn temp_db(name: &str) -> (TempDir, PathBuf, DataKey) {
        let (dir, path) = temp_file(name);
        (dir, path, DataKey::random())
    }
}

pub use cached::{Db, DbRows};
pub use db::{DbError, Durability, blocking};
pub use keys::{DataKey, KeyError, MasterKey};
pub use lockfile::OperatorLock;
pub use migrate::{MigrateOutcome, Migration};
pub use pin::Pin;
pub use store::{
    DAMAGED, FetchMissing, RESTORE_WAIT, Registry, RestoreOutcome, StoreConfig, StoreStats, Tenant,
    TenantError, TenantHandle, TenantRecord, TenantStore,
};

/// The types a [`Registry`] implementation needs.
pub mod store_registry {
    pub use crate::store::{RegistryError, TenantRecord};
}

/// The schema migrations embedded in the binary.
pub mod migrations {
    use crate::Migration;
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}
