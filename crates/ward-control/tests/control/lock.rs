//! The operator lock takes one clinic offline and no other.

use ward_tenancy::TenantError;

use crate::support::{TestPlatform, eventually, get_setting, put_setting};

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_clinic_is_in_maintenance_and_the_others_are_not() {
    let t = TestPlatform::new().await;
    let store = t.store();
    let a = t.clinic("Alpha").await;
    let b = t.clinic("Beta").await;
    put_setting(store, a.id, "k", "alpha").await;
    put_setting(store, b.id, "k", "beta").await;

    let lock = store.lock(a.id, "restore").await.unwrap();
    assert!(store.is_locked(a.id));
    assert!(!store.is_locked(b.id));
    // Taking the lock closed this process's handle to the clinic.
    eventually("the locked clinic's handle is closed", || {
        store.stats().open_handles == 1
    })
    .await;
    assert!(matches!(store.get(a.id).await, Err(TenantError::Maintenance(id)) if id == a.id));
    assert!(matches!(
        store.migrate_clinic(a.id).await,
        Err(TenantError::Maintenance(_))
    ));
    // A second operator cannot take the same lock.
    assert!(matches!(
        store.lock(a.id, "purge").await,
        Err(TenantError::Maintenance(_))
    ));
    assert_eq!(get_setting(store, b.id, "k").await.as_deref(), Some("beta"));
    let err = store.get(a.id).await.err().unwrap().to_string();
    assert!(err.contains("maintenance"), "{err}");

    drop(lock);
    assert!(!store.is_locked(a.id));
    assert_eq!(
        get_setting(store, a.id, "k").await.as_deref(),
        Some("alpha")
    );
    // The lock was not mistaken for a broken clinic.
    assert!(t.failing().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_left_by_a_dead_process_does_not_block_forever() {
    let t = TestPlatform::new().await;
    let store = t.store();
    let a = t.clinic("Alpha").await;
    let lock_file = store.clinics_dir().join(format!("{}.lock", a.id));
    // No live process has this pid (Linux caps pids at 2^22).
    std::fs::write(&lock_file, "999999999\nrestore\n").unwrap();
    assert!(!store.is_locked(a.id));
    store.get(a.id).await.unwrap();
    let lock = store.lock(a.id, "purge").await.unwrap();
    assert!(matches!(
        store.get(a.id).await,
        Err(TenantError::Maintenance(_))
    ));
    drop(lock);
    assert!(!lock_file.exists());
}
