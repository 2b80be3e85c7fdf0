//! The backup commands through the real `ward` binary, including a restore killed at
//! every step.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use ward_control::{Platform, Scope};
use ward_core::{ClinicId, SystemClock};
use ward_tenancy::StoreConfig;

const MASTER_HEX: &str = "11223344556677889900aabbccddeeff11223344556677889900aabbccddeeff";

struct Data {
    dir: tempfile::TempDir,
}

impl Data {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn ward(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
        c.env("WARD_DATA_DIR", self.path())
            .env("WARD_MASTER_KEY", MASTER_HEX)
            .env("WARD_LOG", "warn")
            .env_remove("WARD_TEST_CRASH_AT");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.ward().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ward {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    async fn platform(&self) -> Platform {
        ward_testkit::open_platform(
            StoreConfig::new(self.path()),
            MASTER_HEX,
            Arc::new(SystemClock),
        )
        .await
    }

    /// Runs `sql` on the clinic in this process, then closes everything again so the
    /// next command has the files to itself.
    async fn exec(&self, id: ClinicId, sql: &str) {
        let p = self.platform().await;
        ward_testkit::exec(&p.tenants, id, sql).await;
        p.tenants.shutdown(std::time::Duration::from_secs(5)).await;
    }

    /// Gives the clinic a `notes` table holding one note, `body`.
    async fn create_notes(&self, id: ClinicId, body: &str) {
        let sql = format!(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('{body}');"
        );
        self.exec(id, &sql).await;
    }

    async fn notes(&self, id: ClinicId) -> Vec<String> {
        let p = self.platform().await;
        let out = select(&p, id, "SELECT body FROM notes ORDER BY id", |r| {
            r.get::<String>(0).unwrap()
        })
        .await;
        assert!(!p.tenants.is_locked(id));
        p.tenants.shutdown(std::time::Duration::from_secs(5)).await;
        out
    }

    fn create_clinic(&self, slug: &str) -> ClinicId {
        let out = self.ok(&[
            "clinics", "create", "--name", slug, "--slug", slug, "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        ClinicId::parse(v["id"].as_str().unwrap()).unwrap()
    }

    fn backups(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["backups", "list", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_list_restore_and_drill_through_the_command_line() {
    let data = Data::new();
    let id = data.create_clinic("acme");
    data.create_notes(id, "one").await;

    let summary: serde_json::Value =
        serde_json::from_str(&data.ok(&["backup", "--all", "--json"])).unwrap();
    assert_eq!(summary["backed_up"], 2, "{summary}");
    let list = data.backups(&["--clinic", "acme"]);
    assert_eq!(list.len(), 1);
    let taken_at = list[0]["taken_at"].as_str().unwrap().to_owned();
    assert!(list[0]["verified_at"].is_string());
    assert!(
        data.ok(&["backups", "list", "--clinic", "acme"])
            .contains("verified")
    );

    data.exec(id, "INSERT INTO notes (body) VALUES ('two')")
        .await;
    let dry = data.ok(&[
        "restore",
        "--clinic",
        "acme",
        "--at",
        &taken_at,
        "--from",
        "backups",
        "--reason",
        "check",
        "--dry-run",
    ]);
    assert!(dry.contains("dry run"), "{dry}");
    assert_eq!(data.notes(id).await, ["one", "two"]);

    let out = data.ok(&[
        "restore", "--clinic", "acme", "--at", &taken_at, "--from", "backups", "--reason", "test",
    ]);
    assert!(out.contains("restored acme"), "{out}");
    assert!(out.contains("notes"), "rows per table: {out}");
    assert_eq!(data.notes(id).await, ["one"]);

    let drill: serde_json::Value =
        serde_json::from_str(&data.ok(&["verify", "--backups", "--json"])).unwrap();
    assert_eq!(drill["passed"], 2, "{drill}");

    // Nothing to restore before the first backup: a clear failure, exit status 1.
    let out = data.run(&[
        "restore",
        "--clinic",
        "acme",
        "--at",
        "2000-01-01T00:00:00Z",
        "--from",
        "backups",
        "--reason",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usable backup"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_killed_at_any_step_leaves_a_usable_clinic_old_or_new() {
    let data = Data::new();
    let id = data.create_clinic("acme");
    data.create_notes(id, "backed up").await;
    data.ok(&["backup", "--clinic", "acme"]);
    let backup_id = data.backups(&["--clinic", "acme"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let steps = [
        "prepare",
        "exclusive",
        "checkpoint",
        "keep_old",
        "clear_sidecars",
        "rename",
        "migrate",
    ];
    for (i, step) in steps.iter().enumerate() {
        data.exec(
            id,
            &format!("INSERT INTO notes (body) VALUES ('write {i}')"),
        )
        .await;
        let before = data.notes(id).await;
        let out = data
            .ward()
            .env("WARD_TEST_CRASH_AT", step)
            .args(restore_acme(&backup_id, "crash test"))
            .output()
            .unwrap();
        assert!(
            out.status.code().is_none(),
            "{step}: the process died by a signal"
        );
        let after = data.notes(id).await;
        if *step == "migrate" {
            assert_eq!(
                after,
                ["backed up"],
                "killed after the switch: the new state"
            );
        } else {
            assert_eq!(after, before, "killed at {step}: the old state");
        }
    }
    // A full restore still works afterwards, stale lock and leftovers notwithstanding.
    data.ok(&restore_acme(&backup_id, "final"));
    assert_eq!(data.notes(id).await, ["backed up"]);
}

/// The arguments that restore the clinic `acme` from the backup `backup`, for `reason`.
fn restore_acme<'a>(backup: &'a str, reason: &'a str) -> [&'a str; 7] {
    [
        "restore", "--clinic", "acme", "--backup", backup, "--reason", reason,
    ]
}

/// The arguments that restore the control plane from the backup `backup`.
fn restore_control_plane(backup: &str) -> [&str; 6] {
    [
        "restore",
        "--control-plane",
        "--backup",
        backup,
        "--reason",
        "test",
    ]
}

/// `ward serve` on port 0, its operator listener too; returns the child and the
/// operator listener's address once it listens.
fn serve(data: &Data) -> (std::process::Child, String) {
    let mut child = data
        .ward()
        .env("WARD_LOG", "info")
        .env("WARD_BACKUP_INTERVAL", "0")
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(["--operator-addr", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if line.contains("operator listener") {
            let at = line.find("addr=").unwrap() + 5;
            break line[at..].split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_restore_is_refused_while_serve_runs() {
    let data = Data::new();
    data.create_clinic("acme");
    data.ok(&["backup", "--all"]);
    let control = data.backups(&["--control-plane"]);
    let id = control[0]["id"].as_str().unwrap().to_owned();

    let (mut server, addr) = serve(&data);
    let status = get(&addr, "/status");
    assert!(status.contains("backups: all backups"), "{status}");
    assert!(status.contains("with a verified backup: "), "{status}");
    let out = data.run(&restore_control_plane(&id));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ward serve") && err.contains("running"),
        "{err}"
    );
    server.kill().unwrap();
    server.wait().unwrap();

    let out = data.ok(&restore_control_plane(&id));
    assert!(out.contains("restored control-plane backup"), "{out}");
    assert!(Path::new(&data.path()).join("control.db").exists());
    let p = data.platform().await;
    assert_eq!(p.control.list_clinics().await.unwrap().len(), 1);
    assert!(
        !p.control
            .list_backups(Scope::Control, false)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Every row `sql` selects from the clinic, each made into a value by `row`.
async fn select<T: Send>(
    p: &Platform,
    id: ClinicId,
    sql: &str,
    row: impl Fn(&ward_tenancy::sql::Row) -> T + Send,
) -> Vec<T> {
    p.tenants
        .get(id)
        .await
        .unwrap()
        .with(|conn| {
            let mut rows = conn.query(sql, ()).unwrap();
            let mut out = Vec::new();
            while let Some(r) = rows.next().unwrap() {
                out.push(row(&r));
            }
            out
        })
        .await
}

/// Appends one audit row to the clinic and anchors the new head, as `ward serve` would.
async fn audit_and_anchor(data: &Data, id: ClinicId, detail: &str) {
    use ward_clinic::audit::{self, Action, Actor, Entry};
    let p = data.platform().await;
    let detail = detail.to_owned();
    let recorded = p
        .tenants
        .get(id)
        .await
        .unwrap()
        .with(|conn| {
            audit::in_transaction(&conn, |tx| {
                let entry = Entry::new(
                    ward_core::Clock::now(&SystemClock),
                    Actor::System {
                        name: "test".into(),
                    },
                    Action::Update,
                )
                .entity("settings", "clinic")
                .detail(&detail);
                audit::record(&tx, &entry)
            })
            .unwrap()
        })
        .await;
    p.control
        .anchor(id, recorded.seq, &recorded.hash)
        .await
        .unwrap();
    p.tenants.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_writes_its_audit_row_and_verify_stays_clean() {
    let data = Data::new();
    let id = data.create_clinic("acme");
    audit_and_anchor(&data, id, "before the backup").await;
    data.ok(&["backup", "--clinic", "acme"]);
    let backup = data.backups(&["--clinic", "acme"]);
    let backup_id = backup[0]["id"].as_str().unwrap().to_owned();
    assert!(
        backup[0]["chain_head"]["seq"].as_i64().is_some(),
        "the catalog records the chain head: {backup:?}"
    );
    // The anchor moves past what the backup holds; the restore must reset it.
    audit_and_anchor(&data, id, "after the backup").await;

    data.ok(&restore_acme(&backup_id, "wrong edit"));

    let p = data.platform().await;
    let sql = "SELECT action, actor_kind, actor_name, reason, detail FROM audit_log ORDER BY seq";
    let rows = select(&p, id, sql, |r| {
        (
            r.get::<String>(0).unwrap(),
            r.get::<String>(1).unwrap(),
            r.get::<Option<String>>(2).unwrap(),
            r.get::<Option<String>>(3).unwrap(),
            r.get::<Option<String>>(4).unwrap(),
        )
    })
    .await;
    p.tenants.shutdown(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        rows.len(),
        2,
        "the later row is gone, the restore row added: {rows:?}"
    );
    let (action, kind, _, reason, detail) = &rows[1];
    assert_eq!(action, "restore");
    assert_eq!(kind, "operator");
    assert_eq!(reason.as_deref(), Some("wrong edit"));
    assert!(
        detail.as_deref().unwrap().contains(&backup_id),
        "{detail:?}"
    );

    let out = data.run(&["verify", "--json"]);
    assert!(
        out.status.success(),
        "ward verify after a restore: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
