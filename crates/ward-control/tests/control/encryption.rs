//! Clinic data is encrypted at rest with the clinic's own key, everywhere it lands.

use std::sync::Arc;

use ward_core::ClinicId;
use ward_tenancy::db::{self, DbError, Durability};
use ward_tenancy::{MasterKey, Registry, StoreConfig, TenantError, TenantStore};

use crate::support::{
    TestPlatform, close_all, contains, first_value, get_setting, master, put_setting, sibling,
    wal_len,
};

const CANARY: &str = "CANARY-patient-Zanzibar-7731";

async fn data_key(t: &TestPlatform, id: ClinicId) -> ward_tenancy::DataKey {
    let record = t.platform.control.tenant(id).await.unwrap().unwrap();
    master().unwrap(id, &record.wrapped_key).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_is_absent_from_the_file_its_wal_and_every_copy() {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Canary Clinic").await;
    let store = t.store();
    let path = store.path_of(clinic.id);
    // Enough rows that the canary fills pages, not just one cell.
    for i in 0..50 {
        put_setting(store, clinic.id, &format!("note-{i}"), &CANARY.repeat(20)).await;
    }

    // While the clinic is open the newest pages live only in the WAL.
    let wal = sibling(&path, "-wal");
    let wal_bytes = std::fs::read(&wal).unwrap();
    assert!(
        wal_bytes.len() > 4096,
        "the writes were expected in the WAL, it has {} bytes",
        wal_bytes.len()
    );
    assert!(
        !contains(&wal_bytes, CANARY.as_bytes()),
        "canary in the WAL"
    );
    assert!(!contains(&std::fs::read(&path).unwrap(), CANARY.as_bytes()));

    // A copy taken while the clinic is open (file and WAL, as a naive backup would) is
    // just as opaque, and it is a real copy: with the key, the canary reads back.
    let copy = t.dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::copy(&wal, sibling(&copy, "-wal")).unwrap();
    for f in [copy.clone(), sibling(&copy, "-wal")] {
        assert!(
            !contains(&std::fs::read(&f).unwrap(), CANARY.as_bytes()),
            "{}",
            f.display()
        );
    }
    let key = data_key(&t, clinic.id).await;
    let opened = db::open(&copy, &key, false, Durability::Normal)
        .await
        .unwrap();
    let n: i64 = first_value(
        &opened.conn,
        "SELECT count(*) FROM settings WHERE value LIKE '%Zanzibar%'",
    )
    .await;
    assert_eq!(n, 50);
    drop(opened);

    // After close (checkpoint) the data is in the main file, still encrypted, and a
    // plain file copy is just as opaque.
    close_all(store, &[clinic.id]).await;
    assert_eq!(wal_len(&path), 0, "the close left pages in the WAL");
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 50 * 20 * CANARY.len() / 2);
    assert!(!contains(&bytes, CANARY.as_bytes()), "canary in the file");
    assert!(!contains(&bytes, b"SQLite format 3"), "plaintext header");
    assert!(!contains(&bytes, b"CREATE TABLE"), "plaintext schema");
    let file_copy = t.dir.path().join("file-copy.db");
    std::fs::copy(&path, &file_copy).unwrap();
    assert!(!contains(
        &std::fs::read(&file_copy).unwrap(),
        CANARY.as_bytes()
    ));

    // And the data is really there.
    assert_eq!(
        get_setting(store, clinic.id, "note-7").await.as_deref(),
        Some(CANARY.repeat(20).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_is_encrypted_too() {
    let t = TestPlatform::new().await;
    t.clinic("Zanzibar Canary Dermatology").await;
    let control = t.data_dir().join("control.db");
    for file in [control.clone(), sibling(&control, "-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(!contains(&bytes, b"Zanzibar"), "{}", file.display());
            assert!(!contains(&bytes, b"zanzibar-canary"), "{}", file.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_clinics_key_does_not_open_a_file() {
    let t = TestPlatform::new().await;
    let a = t.clinic("Alpha").await;
    let b = t.clinic("Beta").await;
    put_setting(t.store(), a.id, "k", CANARY).await;
    close_all(t.store(), &[a.id, b.id]).await;
    let path_a = t.store().path_of(a.id);

    let key_a = data_key(&t, a.id).await;
    let key_b = data_key(&t, b.id).await;
    match db::open(&path_a, &key_b, false, Durability::Full).await {
        Err(DbError::WrongKey(p)) => assert_eq!(p, path_a),
        Err(e) => panic!("expected WrongKey, got {e}"),
        Ok(_) => panic!("clinic A's file opened with clinic B's key"),
    }
    let msg = db::open(&path_a, &key_b, false, Durability::Full)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains(&a.id.to_string()), "{msg}");
    assert!(msg.contains("key"), "{msg}");

    // The right key still opens it, so the failure above was the key and nothing else.
    let opened = db::open(&path_a, &key_a, false, Durability::Full)
        .await
        .unwrap();
    let v: String = first_value(&opened.conn, "SELECT value FROM settings WHERE key = 'k'").await;
    assert_eq!(v, CANARY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrapped_key_moved_onto_another_clinic_does_not_open() {
    let t = TestPlatform::new().await;
    let a = t.clinic("Alpha").await;
    let record = t.platform.control.tenant(a.id).await.unwrap().unwrap();
    // The clinic id is bound into the wrapping.
    assert!(
        master()
            .unwrap(ClinicId::new(), &record.wrapped_key)
            .is_err()
    );
    assert!(master().unwrap(a.id, &record.wrapped_key).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_with_another_master_key_names_the_clinic_it_cannot_open() {
    let t = TestPlatform::new().await;
    let a = t.clinic("Alpha").await;
    let b = t.clinic("Beta").await;
    close_all(t.store(), &[a.id, b.id]).await;

    let mut config = StoreConfig::new(t.data_dir());
    config.max_open = 4;
    let registry: Arc<dyn Registry> = t.platform.control.clone();
    let foreign = TenantStore::new(config, MasterKey::random(), registry).unwrap();
    match foreign.get(a.id).await {
        Err(TenantError::Unavailable { clinic, reason }) => {
            assert_eq!(clinic, a.id);
            assert!(reason.contains("master key"), "{reason}");
        }
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("opened with a foreign master key"),
    }
    let err = foreign.get(a.id).await.err().unwrap().to_string();
    assert!(err.contains(&a.id.to_string()), "{err}");
    assert_eq!(foreign.stats().open_handles, 0);

    // The clinic is reported as failing, and the right store still opens it (and clears
    // the mark).
    assert_eq!(t.failing_ids().await, vec![a.id]);
    t.store().get(a.id).await.unwrap();
    assert!(t.failing().await.is_empty());
}
