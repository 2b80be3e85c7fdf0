//! Tenant migrations on open and on demand; broken and missing files are reported.

use std::collections::BTreeMap;

use ward_core::ClinicId;
use ward_tenancy::TenantError;
use ward_tenancy::migrations::TENANT;

use crate::support::{TestPlatform, close_all, get_setting, put_setting, tenant_migrations_plus};

const EXTRA: &str = "CREATE TABLE extra (id INTEGER PRIMARY KEY, note TEXT NOT NULL) STRICT;
INSERT INTO extra (note) VALUES ('added by the test migration');";

async fn versions(t: &TestPlatform) -> BTreeMap<ClinicId, u32> {
    t.platform
        .control
        .list_clinics()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.schema_version))
        .collect()
}

async fn has_table(t: &TestPlatform, id: ClinicId, table: &'static str) -> bool {
    let tenant = t.store().get(id).await.unwrap();
    tenant
        .with(|c| {
            let mut rows = c
                .query(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                    [table],
                )
                .unwrap();
            rows.next().unwrap().unwrap().get::<i64>(0).unwrap() == 1
        })
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_tenant_migration_applies_on_next_open_and_through_migrate_clinic() {
    let current = TENANT.len() as u32;
    let t = TestPlatform::new().await;
    let a = t.clinic("Alpha").await;
    let b = t.clinic("Beta").await;
    let c = t.clinic("Gamma").await;
    assert_eq!(a.schema_version, current);
    put_setting(t.store(), a.id, "k", "kept").await;

    let t = t
        .reopen(|config| config.migrations = tenant_migrations_plus(EXTRA))
        .await;
    assert_eq!(t.store().latest_version(), current + 1);
    assert_eq!(
        versions(&t).await,
        BTreeMap::from([(a.id, current), (b.id, current), (c.id, current)])
    );

    // First use migrates.
    assert!(has_table(&t, a.id, "extra").await);
    assert_eq!(
        get_setting(t.store(), a.id, "k").await.as_deref(),
        Some("kept")
    );
    assert_eq!(
        versions(&t).await,
        BTreeMap::from([(a.id, current + 1), (b.id, current), (c.id, current)])
    );

    // `ward migrate`'s path: a closed clinic is opened, migrated and closed again.
    let outcome = t.store().migrate_clinic(b.id).await.unwrap();
    assert_eq!((outcome.from, outcome.to), (current, current + 1));
    assert!(outcome.changed());
    let again = t.store().migrate_clinic(b.id).await.unwrap();
    assert!(!again.changed());
    // An already open (and current) clinic is left as it is.
    assert!(!t.store().migrate_clinic(a.id).await.unwrap().changed());
    assert_eq!(
        versions(&t).await,
        BTreeMap::from([(a.id, current + 1), (b.id, current + 1), (c.id, current)])
    );
    assert!(has_table(&t, b.id, "extra").await);

    // A build that does not know the new version refuses the file instead of guessing.
    let t = t.reopen(|_| {}).await;
    match t.store().get(a.id).await {
        Err(TenantError::Unavailable { clinic, reason }) => {
            assert_eq!(clinic, a.id);
            assert!(reason.contains("newer"), "{reason}");
        }
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
    // Clinic C, never migrated, still opens with the older build.
    t.store().get(c.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_migration_leaves_the_schema_as_it_was() {
    let current = TENANT.len() as u32;
    let t = TestPlatform::new().await;
    let a = t.clinic("Alpha").await;
    let b = t.clinic("Beta").await;
    let t = t
        .reopen(|config| {
            config.migrations = tenant_migrations_plus(
                "CREATE TABLE half_done (x INTEGER) STRICT; CREATE TABLE settings (k TEXT) STRICT;",
            )
        })
        .await;
    let err = t.store().get(a.id).await.err().unwrap();
    assert!(
        matches!(&err, TenantError::Unavailable { clinic, .. } if *clinic == a.id),
        "{err}"
    );
    assert!(t.store().migrate_clinic(b.id).await.is_err());
    let failing = t.failing_ids().await;
    assert_eq!(failing.len(), 2);
    assert!(failing.contains(&a.id) && failing.contains(&b.id));

    let t = t.reopen(|_| {}).await;
    assert!(
        !has_table(&t, a.id, "half_done").await,
        "a partial migration was kept"
    );
    assert_eq!(
        versions(&t).await,
        BTreeMap::from([(a.id, current), (b.id, current)])
    );
    // Opening successfully clears the failure mark.
    t.store().get(b.id).await.unwrap();
    assert!(t.failing().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_clinic_file_is_reported_and_does_not_affect_the_others() {
    let t = TestPlatform::new().await;
    let broken = t.clinic("Broken").await;
    let fine = t.clinic("Fine").await;
    put_setting(t.store(), fine.id, "k", "v").await;
    close_all(t.store(), &[broken.id, fine.id]).await;
    let path = t.store().path_of(broken.id);
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    let garbage: Vec<u8> = (0..size).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();

    // A file that no longer opens with its key is damage: the clinic is marked so.
    match t.store().get(broken.id).await {
        Err(TenantError::Damaged(clinic)) => assert_eq!(clinic, broken.id),
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    let failing = t.failing().await;
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].id, broken.id);
    let reason = failing[0].open_error.clone().unwrap();
    assert!(
        reason.starts_with(ward_tenancy::DAMAGED) && reason.contains("key"),
        "{reason}"
    );
    assert!(failing[0].open_error_at.is_some());
    // Requests do not retry a damaged clinic: the mark answers until it is repaired.
    assert!(matches!(
        t.store().get(broken.id).await,
        Err(TenantError::Damaged(_))
    ));
    let listed = t.platform.control.clinic_by_id(broken.id).await.unwrap();
    assert!(listed.open_error.is_some());

    assert_eq!(
        get_setting(t.store(), fine.id, "k").await.as_deref(),
        Some("v")
    );
    assert!(t.store().migrate_clinic(fine.id).await.is_ok());
    assert!(t.store().migrate_clinic(broken.id).await.is_err());
    // The garbage is left for the operator to inspect, not "repaired" or replaced.
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
    assert_eq!(t.store().stats().open_handles, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_clinic_file_is_reported_not_recreated() {
    let t = TestPlatform::new().await;
    let gone = t.clinic("Gone").await;
    let other = t.clinic("Other").await;
    close_all(t.store(), &[gone.id, other.id]).await;
    let path = t.store().path_of(gone.id);
    let saved = t.dir.path().join("saved.db");
    std::fs::rename(&path, &saved).unwrap();

    match t.store().get(gone.id).await {
        Err(TenantError::Unavailable { clinic, reason }) => {
            assert_eq!(clinic, gone.id);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
    assert!(!path.exists(), "an empty database was created in its place");
    assert!(t.store().migrate_clinic(gone.id).await.is_err());
    assert!(!path.exists());
    assert_eq!(t.failing_ids().await, vec![gone.id]);
    t.store().get(other.id).await.unwrap();

    // Put back, it opens again and the mark is cleared.
    std::fs::rename(&saved, &path).unwrap();
    t.store().get(gone.id).await.unwrap();
    assert!(t.failing().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_clinic_is_unknown() {
    let t = TestPlatform::new().await;
    let id = ClinicId::new();
    assert!(matches!(t.store().get(id).await, Err(TenantError::Unknown(x)) if x == id));
    assert!(!t.store().path_of(id).exists());
}
