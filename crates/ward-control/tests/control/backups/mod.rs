//! Backups and restores against real encrypted SQLCipher files in temporary directories.

mod restore;
mod taking;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tempfile::TempDir;
use ward_control::backups::PassSummary;
use ward_control::{Backups, Platform};
use ward_core::{ClinicId, ManualClock, parse_time};
use ward_tenancy::sql::Connection;
use ward_tenancy::{DataKey, Durability, StoreConfig, db};

pub use ward_testkit::exec;

use crate::support::create_clinic;

/// A canary written into clinics; it must never appear in a backup file in the clear.
pub const CANARY: &str = "PLAINTEXT-CANARY-4d1c8e";

pub const MASTER_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub struct Env {
    pub dir: TempDir,
    pub clock: ManualClock,
    pub platform: Platform,
    pub backups: Backups,
}

pub fn start_time() -> DateTime<Utc> {
    parse_time("2026-03-01T12:00:00Z").unwrap()
}

impl Env {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(start_time());
        let (platform, backups) = open(dir.path(), &clock).await;
        Self {
            dir,
            clock,
            platform,
            backups,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn backup_dir(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// A clinic with a `notes` table holding the canary.
    pub async fn clinic(&self, name: &str) -> ClinicId {
        let c = create_clinic(&self.platform, name).await;
        self.exec(
            c.id,
            &format!(
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
                 INSERT INTO notes (body) VALUES ('{CANARY}');
                 INSERT INTO settings (key, value) VALUES ('letterhead', '{name}');"
            ),
        )
        .await;
        c.id
    }

    pub async fn exec(&self, id: ClinicId, sql: &str) {
        exec(&self.platform.tenants, id, sql).await;
    }

    /// Every row of every table of the live clinic.
    pub async fn dump(&self, id: ClinicId) -> Dump {
        self.platform
            .tenants
            .get(id)
            .await
            .unwrap()
            .with_async(|conn| async move { dump(&conn).await })
            .await
    }

    pub async fn pass(&self, full: bool) -> PassSummary {
        self.backups.pass(full, "schedule", &|_| {}).await.unwrap()
    }

    pub async fn key(&self, id: ClinicId) -> DataKey {
        self.platform.tenants.data_key(id).await.unwrap()
    }
}

pub async fn open(root: &Path, clock: &ManualClock) -> (Platform, Backups) {
    let platform = ward_testkit::open_platform(
        StoreConfig::new(root.join("data")),
        MASTER_HEX,
        Arc::new(clock.clone()),
    )
    .await;
    let backups = ward_testkit::backups(&platform, root.join("backups"));
    (platform, backups)
}

pub type Dump = BTreeMap<String, Vec<String>>;

pub async fn dump(conn: &Connection) -> Dump {
    let mut names = Vec::new();
    let mut rows = conn
        .query(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            (),
        )
        .await
        .unwrap();
    while let Some(r) = rows.next().await.unwrap() {
        names.push(r.get::<String>(0).unwrap());
    }
    let mut out = BTreeMap::new();
    for name in names {
        let mut rows = conn
            .query(&format!("SELECT * FROM \"{name}\" ORDER BY 1"), ())
            .await
            .unwrap();
        let mut lines = Vec::new();
        while let Some(r) = rows.next().await.unwrap() {
            let cols: Vec<String> = (0..r.column_count())
                .map(|i| format!("{:?}", r.get_value(i).unwrap()))
                .collect();
            lines.push(cols.join("|"));
        }
        out.insert(name, lines);
    }
    out
}

/// Opens a copy of `file` (never the file itself) with `key` and dumps it.
pub async fn dump_file(file: &Path, key: &DataKey) -> Dump {
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("copy.db");
    std::fs::copy(file, &copy).unwrap();
    let opened = db::open(&copy, key, false, Durability::Normal)
        .await
        .unwrap();
    dump(&opened.conn).await
}

/// Every regular file under `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
