//! No statement on a Ward connection can reach a second file or load code.

use ward_tenancy::DataKey;
use ward_tenancy::db::{self, Durability};
use ward_tenancy::sql::Connection;

use crate::support::{TestPlatform, first_value, get_setting, master, put_setting};

/// The label the control plane's key is derived with. Changing it would make every
/// existing control.db unreadable, so it is pinned here.
const CONTROL_KEY_LABEL: &str = "ward control plane database v1";

/// Runs every forbidden statement on `conn` and checks each is refused by the
/// authorizer, leaving no file behind in `scratch`.
async fn assert_guarded(conn: &Connection, scratch: &std::path::Path) {
    let target = scratch.join("other.db");
    let attempts = [
        format!("ATTACH DATABASE '{}' AS other", target.display()),
        format!("ATTACH '{}' AS other KEY ''", target.display()),
        "ATTACH DATABASE ':memory:' AS mem".to_owned(),
        "ATTACH DATABASE 'file::memory:?cache=shared' AS mem".to_owned(),
        format!("ATTACH 'file:{}?mode=rwc' AS other", target.display()),
        "DETACH DATABASE main".to_owned(),
        "DETACH DATABASE other".to_owned(),
        "SELECT load_extension('/nonexistent/evil.so')".to_owned(),
        "SELECT load_extension('/nonexistent/evil.so', 'sqlite3_evil_init')".to_owned(),
        "SELECT LOAD_EXTENSION('libc.so.6')".to_owned(),
        // VACUUM INTO writes a copy to any path it is given; it attaches internally.
        format!("VACUUM INTO '{}'", target.display()),
    ];
    for sql in &attempts {
        let err = match conn.execute(sql, ()).await {
            Ok(_) => panic!("{sql:?} was allowed"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("not authorized") || err.contains("authorization denied"),
            "{sql:?} failed otherwise: {err}"
        );
    }
    // The same through a batch and a query.
    assert!(
        conn.execute_batch(&format!(
            "SELECT 1; ATTACH DATABASE '{}' AS other;",
            target.display()
        ))
        .await
        .is_err()
    );
    assert!(conn.query("SELECT load_extension('x')", ()).await.is_err());
    assert!(!target.exists(), "ATTACH created a file");
    // The connection is still usable afterwards.
    let n: i64 = first_value(conn, "SELECT 41 + 1").await;
    assert_eq!(n, 42);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinic_connection_refuses_attach_detach_and_extensions() {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Guarded").await;
    let tenant = t.store().get(clinic.id).await.unwrap();
    let scratch = t.dir.path().to_owned();
    tenant
        .with_async(|c| async move { assert_guarded(&c, &scratch).await })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_connection_refuses_attach_detach_and_extensions() {
    let t = TestPlatform::new().await;
    t.clinic("Guarded").await;
    // Opened exactly as the control plane opens its pool: the same function, the key
    // derived from the master key with the control plane's label.
    let key = DataKey::from_bytes(master().derive(CONTROL_KEY_LABEL));
    let control = db::open(
        &t.data_dir().join("control.db"),
        &key,
        false,
        Durability::Full,
    )
    .await
    .unwrap();
    let n: i64 = first_value(&control.conn, "SELECT count(*) FROM clinics").await;
    assert_eq!(n, 1);
    assert_guarded(&control.conn, t.dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_connection_is_configured_for_durability_and_integrity() {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Pragmas").await;
    let tenant = t.store().get(clinic.id).await.unwrap();
    let (journal, fk, sync, busy) = tenant
        .with(|c| {
            let one = |sql: &'static str| {
                let c = c.clone();
                {
                    let mut rows = c.query(sql, ()).unwrap();
                    rows.next().unwrap().unwrap().get_value(0).unwrap()
                }
            };
            (
                one("PRAGMA journal_mode"),
                one("PRAGMA foreign_keys"),
                one("PRAGMA synchronous"),
                one("PRAGMA busy_timeout"),
            )
        })
        .await;
    assert_eq!(journal, ward_tenancy::sql::Value::Text("wal".into()));
    assert_eq!(fk, ward_tenancy::sql::Value::Integer(1));
    // 2 = FULL: an acknowledged commit survives power loss.
    assert_eq!(sync, ward_tenancy::sql::Value::Integer(2));
    assert_eq!(busy, ward_tenancy::sql::Value::Integer(5_000));
}

/// The read path that stays on the async worker cannot write: SQL that would is refused
/// and changes nothing, and the connection writes normally again afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_on_the_worker_cannot_write_and_leaves_the_connection_writable() {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Read Only Clinic").await;
    put_setting(t.store(), clinic.id, "phone", "before").await;
    let tenant = t.store().get(clinic.id).await.unwrap();
    let refused = tenant
        .read(|db| {
            let phone = db.row("SELECT value FROM settings WHERE key = 'phone'", (), |r| {
                r.get::<String>(0)
            })?;
            assert_eq!(phone.as_deref(), Some("before"));
            db.execute(
                "UPDATE settings SET value = 'after' WHERE key = 'phone'",
                (),
            )?;
            Ok::<_, ward_tenancy::sql::Error>(())
        })
        .await;
    let err = refused
        .expect_err("a write inside a read was allowed")
        .to_string();
    assert!(err.contains("tried to write"), "{err}");
    drop(tenant);
    assert_eq!(
        get_setting(t.store(), clinic.id, "phone").await.as_deref(),
        Some("before")
    );
    put_setting(t.store(), clinic.id, "phone", "after").await;
    assert_eq!(
        get_setting(t.store(), clinic.id, "phone").await.as_deref(),
        Some("after")
    );
}
