//! A data directory in a temporary folder, opened the way `ward` opens it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use ward_control::{ClinicRecord, Platform};
use ward_core::{ClinicId, SystemClock};
use ward_tenancy::{MasterKey, Migration, StoreConfig, TenantStore};
pub use ward_testkit::create_clinic;

/// The master key every test platform uses (tests that need another make one).
pub const MASTER_HEX: &str = "7f3c1a9e5b2d4f6081a3c5e7f9b1d3e5a7c9e1f3b5d7f9a1c3e5b7d9f1a3c5e7";

/// A platform over its own temporary data directory.
pub struct TestPlatform {
    /// Keeps the folder alive; removed on drop.
    pub dir: TempDir,
    /// The opened platform.
    pub platform: Platform,
}

impl TestPlatform {
    /// Default settings.
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// Settings adjusted by `f` (cache cap, idle time, migrations).
    pub async fn with(f: impl FnOnce(&mut StoreConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let platform = open_platform(&data_dir_of(&dir), f).await;
        Self { dir, platform }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        data_dir_of(&self.dir)
    }

    /// The tenant store.
    pub fn store(&self) -> &TenantStore {
        &self.platform.tenants
    }

    /// Creates a clinic named `name`.
    pub async fn clinic(&self, name: &str) -> ClinicRecord {
        create_clinic(&self.platform, name).await
    }

    /// The clinics marked as failing to open.
    pub async fn failing(&self) -> Vec<ClinicRecord> {
        self.platform.control.failing_clinics().await.unwrap()
    }

    /// The ids of the clinics marked as failing to open.
    pub async fn failing_ids(&self) -> Vec<ClinicId> {
        self.failing().await.into_iter().map(|c| c.id).collect()
    }

    /// Closes every clinic and the control plane, then opens the same data directory again
    /// with settings adjusted by `f`.
    pub async fn reopen(self, f: impl FnOnce(&mut StoreConfig)) -> Self {
        let Self { dir, platform } = self;
        assert_eq!(platform.tenants.shutdown(Duration::from_secs(10)).await, 0);
        drop(platform);
        let platform = open_platform(&data_dir_of(&dir), f).await;
        Self { dir, platform }
    }
}

fn data_dir_of(dir: &TempDir) -> PathBuf {
    dir.path().join("data")
}

/// Opens `data_dir` with the test master key.
pub async fn open_platform(data_dir: &Path, f: impl FnOnce(&mut StoreConfig)) -> Platform {
    let mut config = StoreConfig::new(data_dir);
    f(&mut config);
    ward_testkit::open_platform(config, MASTER_HEX, Arc::new(SystemClock)).await
}

/// The test master key.
pub fn master() -> MasterKey {
    MasterKey::from_hex(MASTER_HEX).unwrap()
}

/// The embedded tenant schema plus one more step.
pub fn tenant_migrations_plus(sql: &'static str) -> Arc<[Migration]> {
    let mut all = ward_tenancy::migrations::TENANT.to_vec();
    all.push(Migration {
        version: ward_tenancy::migrations::TENANT.len() as u32 + 1,
        name: "test_extra",
        sql,
    });
    all.into()
}

/// Waits until `cond` holds, failing after a generous deadline. Handles are closed on
/// blocking threads, so their effects land shortly after the call that caused them.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs the cache's housekeeping (as `ward serve` does on a timer) until `cond` holds.
pub async fn settle(store: &TenantStore, what: &str, mut cond: impl FnMut(&TenantStore) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        store.run_pending().await;
        if cond(store) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {:?}",
            store.stats()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Closes clinics `ids` and waits until no handle is open at all.
pub async fn close_all(store: &TenantStore, ids: &[ClinicId]) {
    for id in ids {
        store.evict(*id).await;
    }
    settle(store, "every handle is closed", |s| {
        s.stats().open_handles == 0
    })
    .await;
}

/// Stores `value` under `key` in the clinic's settings table.
pub async fn put_setting(store: &TenantStore, id: ClinicId, key: &str, value: &str) {
    let tenant = store.get(id).await.unwrap();
    let (key, value) = (key.to_owned(), value.to_owned());
    tenant
        .with(|c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
        })
        .await
        .unwrap();
}

/// Reads a setting back.
pub async fn get_setting(store: &TenantStore, id: ClinicId, key: &str) -> Option<String> {
    let tenant = store.get(id).await.unwrap();
    let key = key.to_owned();
    tenant
        .with(|c| {
            let mut rows = c.query("SELECT value FROM settings WHERE key = ?1", [key])?;
            match rows.next()? {
                Some(row) => row.get::<String>(0).map(Some),
                None => Ok(None),
            }
        })
        .await
        .unwrap()
}

/// Bytes in the WAL beside the database `path` (0 when there is none). A closed clinic's
/// WAL stays on disk, checkpointed and empty.
pub fn wal_len(path: &Path) -> u64 {
    std::fs::metadata(sibling(path, "-wal")).map_or(0, |m| m.len())
}

/// The file `path` with `suffix` appended (`-wal`, `-shm`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The first column of the first row `sql` returns on `conn`.
pub async fn first_value<T: ward_tenancy::sql::FromValue>(
    conn: &ward_tenancy::sql::Connection,
    sql: &str,
) -> T {
    let mut rows = conn.query(sql, ()).await.unwrap();
    rows.next().await.unwrap().unwrap().get(0).unwrap()
}
