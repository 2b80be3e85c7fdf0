//! The continuous replica through the real binary: a server killed mid-write, and an
//! empty machine rebuilt from what it shipped.

use std::time::{Duration, Instant};

use crate::support::{Server, Visitor, Ward, sign_up_and_confirm};

/// The replica settings of one test: the test S3 server (scripts/s3-test-server) under a
/// fresh prefix, or a folder when it is not running outside CI.
pub fn replica_env(folder: &std::path::Path) -> Vec<(String, String)> {
    let Ok(endpoint) = std::env::var("WARD_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs the replica tests against S3: start scripts/s3-test-server"
        );
        return vec![(
            "WARD_REPLICA_URL".into(),
            format!("file://{}", folder.display()),
        )];
    };
    let var = |k: &str| std::env::var(k).unwrap();
    vec![
        (
            "WARD_REPLICA_URL".into(),
            format!(
                "s3://{}/kill-{}",
                var("WARD_TEST_S3_BUCKET"),
                uuid::Uuid::now_v7()
            ),
        ),
        ("AWS_ENDPOINT_URL".into(), endpoint),
        ("AWS_ACCESS_KEY_ID".into(), var("WARD_TEST_S3_KEY")),
        ("AWS_SECRET_ACCESS_KEY".into(), var("WARD_TEST_S3_SECRET")),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

/// Signs up a clinic named `name` through the public form and confirms the address
/// from the mail (only then is the clinic made); true when acknowledged.
fn sign_up(ward: &Ward, server: &Server, name: &str, email: &str) -> bool {
    let mut visitor = Visitor::new(server);
    let home = sign_up_and_confirm(ward, server, &mut visitor, name, email);
    home.starts_with("/c/")
}

/// A small PDF (ASCII, so pages can carry it as text) whose text is `marker`.
fn pdf(marker: &str) -> String {
    format!(
        "%PDF-1.4\n% {marker}\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )
}

/// The object names clinic `slug`'s attachment rows give, read from its database.
fn attachment_objects(ward: &Ward, slug: &str) -> Vec<String> {
    crate::support::in_process(ward, async |platform, _| {
        let clinic = platform
            .control
            .find_clinic(&slug.parse().unwrap())
            .await
            .unwrap();
        let tenant = platform.tenants.get(clinic.id).await.unwrap();
        tenant
            .with(|conn| {
                conn.rows("SELECT object_name FROM attachments ORDER BY id", (), |r| {
                    r.get::<String>(0)
                })
            })
            .await
            .unwrap()
    })
}

/// Signs up a clinic, registers a patient and uploads `file` (a PDF) to them through
/// the pages: the attachment's address, and the owner's email.
fn clinic_with_a_file(ward: &Ward, server: &Server, file: &str) -> (String, String) {
    let email = "files-owner@example.com";
    let mut owner = Visitor::new(server);
    let home = sign_up_and_confirm(ward, server, &mut owner, "Files Clinic", email);
    let base = home.trim_end_matches('/').to_owned();
    let (status, head) = owner.submit(
        &format!("{base}/patients/new"),
        &format!("{base}/patients/new"),
        &[
            ("full_name", "Quentin Filesworth"),
            ("sex", "male"),
            ("phone", "98450 55555"),
        ],
    );
    assert_eq!(status, 303, "{head}");
    let patient = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_owned();
    let (_, page) = owner.get(&patient);
    let form = page.find("enctype=\"multipart/form-data\"").unwrap();
    let start = page[..form].rfind("action=\"").unwrap() + "action=\"".len();
    let action = page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&");
    let (status, head) = owner.post_multipart(
        &action,
        &[("title", "Blood count"), ("kind", "lab_report")],
        ("cbc.pdf", "application/pdf", file.as_bytes()),
    );
    assert_eq!(status, 303, "{head}");
    let (_, page) = owner.get(&patient);
    let at = page.find(&format!("{patient}/attachments/")).unwrap();
    let href = page[at..at + page[at..].find('"').unwrap()].to_owned();
    let (status, body) = owner.get(&href);
    assert_eq!((status, body.as_str()), (200, file), "served as uploaded");
    (href, email.to_owned())
}

#[test]
fn a_server_killed_mid_write_loses_nothing_acknowledged_a_second_before() {
    let folder = tempfile::tempdir().unwrap();
    let mut env = replica_env(folder.path());
    // Passwords must verify on the rebuilt machine too (docs/replication.md).
    env.push(("WARD_PEPPER".into(), "5e".repeat(32)));
    let ward = Ward::with_env(env.clone());
    let server = Server::start(&ward);
    // A clinic's file goes where the replica goes (no WARD_ATTACHMENT_URL is set), so
    // it outlives the machine.
    let file = pdf("Quentin blood count 4711");
    let (attachment, owner_email) = clinic_with_a_file(&ward, &server, &file);
    assert!(
        !ward.data_dir().join("attachments").exists(),
        "the file is not on the machine's disk"
    );
    // Confirmed signups write the control plane and create a clinic file each; every one
    // that was answered is an acknowledged write.
    let mut acked: Vec<(String, Instant)> = Vec::new();
    for i in 0..14 {
        let name = format!("Replica Clinic {i:02}");
        if sign_up(&ward, &server, &name, &format!("owner{i}@example.com")) {
            acked.push((name, Instant::now()));
        }
    }
    assert!(acked.len() >= 10, "signups were refused: {}", acked.len());
    std::thread::sleep(Duration::from_millis(1200));
    // Killed with a write just acknowledged.
    let last = format!("Replica Clinic {:02}", 99);
    if sign_up(&ward, &server, &last, "owner99@example.com") {
        acked.push((last, Instant::now()));
    }
    let killed_at = Instant::now();
    server.kill();

    // An empty machine, the same replica and master key.
    let fresh = Ward::with_env(env.clone());
    let out = fresh.run(&["restore", "--everything", "--reason", "the volume died"]);
    let stdout = out.ok();
    assert!(stdout.contains("rebuilt the control plane"), "{stdout}");
    let names: Vec<String> = fresh
        .list()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut checked = 0;
    for (name, at) in &acked {
        if killed_at.duration_since(*at) > Duration::from_secs(1) {
            assert!(names.contains(name), "{name} is lost: {names:?}");
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} writes were old enough to count"
    );
    assert!(names.len() >= acked.len() - 2, "{names:?}");
    // Every restored clinic opens, checks out, and its audit chain verifies.
    let verify = fresh.run(&["verify"]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    // The replica drill rebuilds every clinic again and checks it.
    let drill = fresh.run(&["verify", "--replica", "--sample", "5"]);
    assert_eq!(drill.status.code(), Some(0), "{drill:?}");
    assert!(drill.stdout.contains("5 of 5 clinics rebuilt"), "{drill:?}");
    // A copy as of now, beside the live clinic, under its own key.
    let now = ward_core::Clock::now(&ward_core::SystemClock)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let copy = fresh.run(&[
        "restore",
        "--clinic",
        "replica-clinic-00",
        "--at",
        &now,
        "--as-new",
        "Inspection Copy",
        "--reason",
        "look at yesterday's state",
    ]);
    assert_eq!(copy.status.code(), Some(0), "{copy:?}");
    let listed = fresh.list();
    let copy = listed
        .iter()
        .find(|c| c["name"] == "Inspection Copy")
        .unwrap_or_else(|| panic!("no copy in {listed:?}"));
    let slug = copy["slug"].as_str().unwrap().to_owned();
    let checked = fresh.run(&["verify", "--clinic", &slug]);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
    // A copy of a clinic with a file gets objects of its own: nothing done to the copy
    // can remove the live clinic's file (which is served below).
    let copy = fresh.run(&[
        "restore",
        "--clinic",
        "files-clinic",
        "--at",
        &now,
        "--as-new",
        "Files Copy",
        "--reason",
        "look at the files",
    ]);
    assert!(copy.stdout.contains("with 1 files copied"), "{copy:?}");
    let original = attachment_objects(&fresh, "files-clinic");
    let copied = attachment_objects(&fresh, "files-copy");
    assert_eq!((original.len(), copied.len()), (1, 1));
    assert_ne!(original, copied, "the copy names its own object");
    let checked = fresh.run(&["verify", "--clinic", "files-copy", "--json"]);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
    let report: serde_json::Value = serde_json::from_str(&checked.stdout).unwrap();
    assert_eq!(
        report["clinics"][0]["attachments"]["checked"], 1,
        "the copy's object is in the store: {report}"
    );
    // The rebuilt machine's status names the replica and its lag.
    let status: serde_json::Value =
        serde_json::from_str(&fresh.run(&["status", "--json"]).stdout).unwrap();
    assert!(
        status["replica"]["target"]
            .as_str()
            .is_some_and(|t| t.contains("kill-") || t.starts_with("file://")),
        "{status}"
    );
    assert!(status["replica"]["worst_lag_ms"].is_i64(), "{status}");
    let replica: serde_json::Value =
        serde_json::from_str(&fresh.run(&["replica", "status", "--json"]).stdout).unwrap();
    assert!(
        replica["databases"]
            .as_array()
            .is_some_and(|d| d.len() >= names.len()),
        "{replica}"
    );
    // A server started on another empty machine rebuilds it by itself: the control plane
    // first, then every clinic in the background.
    let expected = fresh.list().len();
    let third = Ward::with_env(env);
    let rebuilt = Server::start(&third);
    assert_eq!(rebuilt.get("/login").0, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let files = third.files_ending(".db").len();
        if files > expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{files} files of {expected} clinics + control"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let restored_list: Vec<serde_json::Value> =
        serde_json::from_str(&third.run(&["clinics", "list", "--json"]).ok()).unwrap();
    assert_eq!(restored_list.len(), expected);
    rebuilt.kill();
    // And it serves again, the clinic's file included, byte for byte.
    let server = Server::start(&fresh);
    assert_eq!(server.get("/healthz").0, 200);
    let (status, body) = server.get("/login");
    assert_eq!(status, 200, "{body}");
    let mut owner = Visitor::new(&server);
    assert!(owner.sign_in(&owner_email, crate::support::PASSWORD));
    let (status, body) = owner.get(&attachment);
    assert_eq!(
        (status, body.as_str()),
        (200, file.as_str()),
        "the rebuilt machine serves the file"
    );
}
