//! A platform in a temporary directory, and audit entries to fill it with.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ward_clinic::audit::{self, Action, Actor, Diff, Entry};
use ward_control::{ClinicRecord, Platform};
use ward_core::{ManualClock, Role, parse_time};
use ward_tenancy::migrations::TENANT;
use ward_tenancy::{DataKey, Db, MasterKey, Registry, StoreConfig, db};
pub use ward_testkit::zip_files;

/// The master key every test platform uses (64 hex characters).
pub const MASTER_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub struct TestPlatform {
    /// Keeps the data directory alive as long as the platform.
    _dir: tempfile::TempDir,
    pub platform: Platform,
}

/// A platform in `dir` whose clinics are brought to (only) `migrations`.
pub async fn migrated_platform(dir: &Path, migrations: &[ward_tenancy::Migration]) -> Platform {
    let mut config = StoreConfig::new(dir);
    config.migrations = migrations.into();
    ward_testkit::open_platform(config, MASTER_HEX, Arc::new(ManualClock::new(start()))).await
}

/// Creates "Old Clinic" on the schema clinics had before the migration named `name`,
/// with the statements `seed` run in it; then opens it on a platform with every
/// migration of this build (so it is migrated on first use) and runs `f` on it.
pub async fn migrated_from<T>(name: &str, seed: &str, f: impl FnOnce(Db) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let at = TENANT.iter().position(|m| m.name == name).unwrap();
    let clinic = old_clinic(dir.path(), &TENANT[..at], seed).await;
    let new = migrated_platform(dir.path(), TENANT).await;
    let tenant = new.tenants.get(clinic.id).await.unwrap();
    tenant.with(f).await
}

/// Creates "Old Clinic" in `dir` on the schema of `migrations`, runs the statements
/// `seed` in it, and shuts that platform down again.
pub async fn old_clinic(
    dir: &Path,
    migrations: &[ward_tenancy::Migration],
    seed: &str,
) -> ClinicRecord {
    let old = migrated_platform(dir, migrations).await;
    let clinic = ward_testkit::create_clinic(&old, "Old Clinic").await;
    let tenant = old.tenants.get(clinic.id).await.unwrap();
    tenant
        .with(|conn| {
            assert_eq!(
                ward_tenancy::migrate::version(&conn).unwrap() as usize,
                migrations.len()
            );
            conn.execute_batch(seed).unwrap();
        })
        .await;
    drop(tenant);
    assert_eq!(old.tenants.shutdown(Duration::from_secs(10)).await, 0);
    drop(old);
    clinic
}

impl TestPlatform {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(start());
        let platform =
            ward_testkit::open_platform(StoreConfig::new(dir.path()), MASTER_HEX, Arc::new(clock))
                .await;
        Self {
            _dir: dir,
            platform,
        }
    }

    pub async fn clinic(&self, name: &str) -> ClinicRecord {
        ward_testkit::create_clinic(&self.platform, name).await
    }

    /// The clinic's data key, as the tenant store would unwrap it.
    pub async fn key_of(&self, clinic: &ClinicRecord) -> DataKey {
        let record = self
            .platform
            .control
            .tenant(clinic.id)
            .await
            .unwrap()
            .unwrap();
        MasterKey::from_hex(MASTER_HEX)
            .unwrap()
            .unwrap(clinic.id, &record.wrapped_key)
            .unwrap()
    }

    /// Runs `f` on the clinic's cached connection.
    pub async fn with<T, F>(&self, clinic: &ClinicRecord, f: F) -> T
    where
        F: FnOnce(ward_tenancy::Db) -> T,
    {
        let tenant = self.platform.tenants.get(clinic.id).await.unwrap();
        tenant.with(f).await
    }
}

/// Runs `f` on clinic `name`, the one clinic of a new platform.
pub async fn in_new_clinic<T>(name: &str, f: impl FnOnce(ward_tenancy::Db) -> T) -> T {
    let t = TestPlatform::new().await;
    let clinic = t.clinic(name).await;
    t.with(&clinic, f).await
}

pub fn start() -> DateTime<Utc> {
    parse_time("2026-03-01T09:00:00.000Z").unwrap()
}

pub fn doctor() -> Actor {
    Actor::User {
        id: "0192f5c4-0000-7000-8000-000000000001".into(),
        name: "Dr Ada Lovelace".into(),
        role: Role::Doctor,
    }
}

/// The `n`-th of a varied set of entries: every column gets exercised.
pub fn entry(n: i64) -> Entry {
    let at = start() + TimeDelta::milliseconds(n * 1_500);
    let patient = format!("patient-{}", n % 17);
    match n % 5 {
        0 => Entry::new(at, doctor(), Action::View)
            .entity("patient", &patient)
            .ip("192.0.2.10"),
        1 => Entry::new(at, doctor(), Action::Update)
            .entity("patient", &patient)
            .ip("2001:db8::1")
            .diff(Diff::new().field("phone", format!("555-{n:04}"), format!("555-{:04}", n + 1))),
        2 => Entry::new(
            at,
            Actor::User {
                id: "0192f5c4-0000-7000-8000-000000000002".into(),
                name: "Front Desk".into(),
                role: Role::Receptionist,
            },
            Action::Create,
        )
        .entity("appointment", n),
        3 => Entry::new(at, doctor(), Action::Print)
            .entity("prescription", n)
            .detail("printable prescription"),
        _ => Entry::new(
            at,
            Actor::Operator { name: "ops".into() },
            Action::OperatorAccess,
        )
        .reason("support ticket 42: the owner asked us to check a record"),
    }
}

/// Appends entries `from..to` in one transaction.
pub fn append(conn: &ward_tenancy::Db, range: std::ops::Range<i64>) {
    audit::in_transaction(conn, |tx| {
        for n in range {
            audit::record(&tx, &entry(n))?;
        }
        Ok::<_, audit::AuditError>(())
    })
    .unwrap();
}

/// Copies a closed clinic file to `to` and opens the copy with the clinic's key.
pub async fn open_copy(from: &Path, to: &Path, key: &DataKey) -> db::Opened {
    std::fs::copy(from, to).unwrap();
    db::open(to, key, false, db::Durability::Normal)
        .await
        .unwrap()
}

/// The message of an import refused for what it holds; any other outcome fails the test.
pub fn refusal<T: std::fmt::Debug>(r: Result<T, ward_clinic::import::ImportError>) -> String {
    match r {
        Err(ward_clinic::import::ImportError::Refused(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Closes clinic `id` as its owner would, with the usual 90 days of retention.
pub async fn close_by_owner(
    control: &ward_control::ControlPlane,
    id: ward_core::ClinicId,
) -> ClinicRecord {
    control
        .transition_clinic(
            id,
            ward_control::lifecycle::Transition::Close,
            &ward_core::Actor::user("owner"),
            "",
            ward_control::lifecycle::retention_days(90),
        )
        .await
        .unwrap()
}
