//! `ward verify`: clean data passes; a tampered audit log fails, naming clinic and row.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use ward_clinic::audit::{self, Action, Actor, Entry};
use ward_control::{AuthEvent, ClinicRecord, Platform};
use ward_core::{Role, SystemClock, parse_time};
use ward_tenancy::{MasterKey, Registry, StoreConfig, db};

const MASTER_HEX: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

fn ward(data: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .env("WARD_DATA_DIR", data)
        .env("WARD_MASTER_KEY", MASTER_HEX)
        .env("WARD_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn open(data: &Path) -> Platform {
    ward_testkit::open_platform(StoreConfig::new(data), MASTER_HEX, Arc::new(SystemClock)).await
}

/// Two clinics with 30 audit rows each, anchored; a few auth events.
async fn set_up(data: &Path) -> (ClinicRecord, ClinicRecord) {
    let platform = open(data).await;
    let mut clinics = Vec::new();
    for name in ["Acme", "Bravo"] {
        let clinic = ward_testkit::create_clinic(&platform, name).await;
        record_and_anchor(&platform, &clinic, 30).await;
        clinics.push(clinic);
    }
    for kind in ["signup", "login"] {
        platform
            .control
            .record_auth_event(AuthEvent {
                kind: kind.into(),
                email: Some("owner@example.com".into()),
                outcome: "ok".into(),
                ..AuthEvent::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(platform.tenants.shutdown(Duration::from_secs(10)).await, 0);
    let b = clinics.pop().unwrap();
    let a = clinics.pop().unwrap();
    (a, b)
}

/// An audit entry of a doctor, `n` seconds into the test day.
/// Writes the audit rows [`entry`] makes for 0 to `rows` - 1 into `clinic`, then anchors
/// its head.
pub(crate) async fn record_and_anchor(platform: &Platform, clinic: &ClinicRecord, rows: i64) {
    let tenant = platform.tenants.get(clinic.id).await.unwrap();
    let head = tenant
        .with(|conn| {
            audit::in_transaction(&conn, |tx| {
                for n in 0..rows {
                    audit::record(&tx, &entry(n))?;
                }
                Ok::<_, audit::AuditError>(())
            })
            .unwrap();
            audit::head(&conn).unwrap().unwrap()
        })
        .await;
    drop(tenant);
    platform
        .control
        .anchor(clinic.id, head.seq, &head.hash)
        .await
        .unwrap();
}

pub(crate) fn entry(n: i64) -> Entry {
    let at = parse_time("2026-03-01T09:00:00.000Z").unwrap() + TimeDelta::seconds(n);
    Entry::new(
        at,
        Actor::User {
            id: "0192f5c4-0000-7000-8000-000000000001".into(),
            name: "Dr Ada Lovelace".into(),
            role: Role::Doctor,
        },
        if n % 2 == 0 {
            Action::View
        } else {
            Action::Update
        },
    )
    .entity("patient", format!("patient-{}", n % 7))
    .ip("192.0.2.10")
}

/// `ward verify` fails on attachment 7: its object does not open or does not match.
fn assert_attachment_7_refused(data: &Path) {
    let out = ward(data, &["verify"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("attachment 7 does not open with its key or does not match its digest"),
        "{text}"
    );
}

/// Runs `sql` on the clinic's file as someone holding its key, with the append-only
/// triggers dropped and put back afterwards.
async fn tamper(data: &Path, clinic: &ClinicRecord, sql: &str) {
    let key = {
        let platform = open(data).await;
        let wrapped = platform
            .control
            .tenant(clinic.id)
            .await
            .unwrap()
            .unwrap()
            .wrapped_key;
        MasterKey::from_hex(MASTER_HEX)
            .unwrap()
            .unwrap(clinic.id, &wrapped)
            .unwrap()
    };
    let path = data.join("clinics").join(clinic.id.file_name());
    let opened = db::open(&path, &key, false, db::Durability::Full)
        .await
        .unwrap();
    let conn = opened.conn;
    let mut rows = conn
        .query(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'",
            (),
        )
        .await
        .unwrap();
    let mut triggers = Vec::new();
    while let Some(row) = rows.next().await.unwrap() {
        triggers.push(row.get::<String>(0).unwrap());
    }
    drop(rows);
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; DROP TRIGGER audit_log_append_only;",
    )
    .await
    .unwrap();
    conn.execute_batch(sql).await.unwrap();
    for t in triggers {
        conn.execute(&t, ()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_clean_data_and_pinpoints_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (acme, bravo) = set_up(data).await;

    let out = ward(data, &["verify"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("auth log: 2 events, chain intact"), "{text}");
    assert!(
        text.contains("2 clinic(s) verified, 0 with problems"),
        "{text}"
    );

    let out = ward(data, &["verify", "--json"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["clinics"][0]["audit"]["rows"], 30);
    assert_eq!(report["clinics"][0]["audit"]["anchor"]["seq"], 30);

    // Someone makes a doctor's view look like someone else's.
    tamper(
        data,
        &bravo,
        "UPDATE audit_log SET actor_name = 'Someone Else' WHERE seq = 17;",
    )
    .await;
    let out = ward(data, &["verify"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("clinic bravo ({})", bravo.id)) && text.contains("seq 17:"),
        "{text}"
    );
    assert!(
        text.contains("first bad audit sequence number: 17"),
        "{text}"
    );
    assert!(
        !text.contains("clinic acme") || text.contains(&format!("clinic acme ({}): ok", acme.id)),
        "{text}"
    );

    // One clinic at a time; the other is untouched.
    let out = ward(data, &["verify", "--clinic", "acme"]);
    assert!(out.status.success(), "{}", stdout(&out));

    // The last ten rows cut off: internally consistent, caught by the anchor.
    tamper(data, &acme, "DELETE FROM audit_log WHERE seq > 20;").await;
    let out = ward(
        data,
        &["verify", "--clinic", acme.id.to_string().as_str(), "--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problem = &report["clinics"][0]["audit"]["problems"][0];
    assert_eq!(problem["kind"], "shorter_than_anchor", "{report:#}");
    assert_eq!(problem["seq"], 21, "{report:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_an_attachment_whose_object_is_missing_or_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (acme, _) = set_up(data).await;
    tamper(
        data,
        &acme,
        "PRAGMA foreign_keys = OFF; \
         INSERT INTO attachments (id, patient_id, kind, title, content_type, size, sha256, object_name, file_key, uploaded_at, uploaded_by_id, uploaded_by_name) \
         VALUES (7, 1, 'photo', 'x', 'image/png', 3, 'ab', 'a/0123456789abcdef', zeroblob(32), '2026-03-01T09:00:00.000Z', 'u1', 'Dr. Rao');",
    )
    .await;
    let out = ward(data, &["verify"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "clinic acme ({}): PROBLEM: attachment 7 has no object",
            acme.id
        )),
        "{text}"
    );
    // An object is there but it is not the file: it does not open with the row's key.
    let objects = data.join("attachments").join("a");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(objects.join("0123456789abcdef"), b"sealed").unwrap();
    assert_attachment_7_refused(data);
    // The real file, stored as an upload stores it: the clinic passes, the file read
    // back whole.
    let store = ward_web::attachments::AttachmentStore::from_url(
        &format!("file://{}", data.join("attachments").display()),
        25,
    )
    .unwrap();
    let file = b"%PDF-1.4\n% verify me\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
    let stored = store.put_bytes(file.to_vec()).await.unwrap();
    tamper(
        data,
        &acme,
        &format!(
            "UPDATE attachments SET object_name = '{}', file_key = X'{}', sha256 = '{}', size = {} WHERE id = 7;",
            stored.object_name,
            hex::encode(stored.key),
            stored.sha256,
            stored.size
        ),
    )
    .await;
    let out = ward(data, &["verify", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let acme_report = report["clinics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["slug"] == "acme")
        .unwrap();
    assert_eq!(acme_report["attachments"]["checked"], 1);
    assert_eq!(acme_report["attachments"]["digests_checked"], 1);
    // One byte of the stored object changed: caught.
    let object = data.join("attachments").join(&stored.object_name);
    let mut bytes = std::fs::read(&object).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();
    assert_attachment_7_refused(data);
}
