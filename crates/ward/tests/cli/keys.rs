//! `ward keys rotate-master` through the real binary: crashes at every stage, a second
//! run that finishes, the server and the replica under the new key, the old key refused.

use std::path::Path;

use crate::replica::replica_env;
use crate::support::{MASTER_HEX, PASSWORD, Run, Server, Visitor, Ward, run, sign_up_and_confirm};

const NEW_HEX: &str = "7f3e1d2c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Signs up the owner `email` of a new clinic `clinic` as a new visitor and
/// confirms the address; the clinic's home page.
fn sign_up(ward: &Ward, server: &Server, clinic: &str, email: &str) -> String {
    sign_up_and_confirm(ward, server, &mut Visitor::new(server), clinic, email)
}

/// `ward keys rotate-master` to `new` (64 hex), crashing before `crash_at` if given.
fn rotate(ward: &Ward, new: Option<&str>, crash_at: Option<&str>) -> Run {
    let mut cmd = ward.cmd();
    cmd.args(["keys", "rotate-master"]);
    if let Some(hex) = new {
        cmd.env("WARD_NEW_MASTER_KEY", hex);
    }
    if let Some(step) = crash_at {
        cmd.env("WARD_TEST_CRASH_AT", step);
    }
    run(&mut cmd)
}

fn crashed(out: &Run) {
    assert!(!out.status.success(), "did not stop: {out:#?}");
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}

fn names(ward: &Ward) -> Vec<String> {
    let mut names: Vec<String> = ward
        .list()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

fn leftovers(data: &Path) -> Vec<String> {
    std::fs::read_dir(data)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rotating") || n.contains("pre-rotate") || n.ends_with(".next"))
        .collect()
}

#[test]
fn a_rotation_survives_crashes_and_afterwards_only_the_new_key_opens() {
    let mut ward = Ward::new();
    let server = Server::start(&ward);
    let home = sign_up(&ward, &server, "Rotation Clinic", "ada@example.com");
    assert!(home.starts_with("/c/"), "{home}");
    let (status, _) = server.terminate();
    assert!(status.success());
    for i in 0..5 {
        ward.create(&format!("Clinic {i}"));
    }
    let before = names(&ward);
    assert_eq!(before.len(), 6);

    // Refused while the server runs, and while another rotation holds the lock.
    let server = Server::start(&ward);
    let refused = rotate(&ward, Some(NEW_HEX), None).final_error();
    assert!(refused.contains("ward serve"), "{refused}");
    server.terminate();
    // Another rotation's lock: an exclusive `flock` on keys.lock, held here.
    let holder = std::fs::File::create(ward.data_dir().join("keys.lock")).unwrap();
    holder.try_lock().unwrap();
    let refused = rotate(&ward, Some(NEW_HEX), None).final_error();
    drop(holder);
    assert!(refused.contains("another key rotation"), "{refused}");
    let same = rotate(&ward, Some(MASTER_HEX), None).final_error();
    assert!(same.contains("is the current one"), "{same}");

    // Stopped half-way through re-wrapping, and again just before the switch: the old
    // key still opens everything.
    for step in ["rewrap-half", "rekey", "rename"] {
        crashed(&rotate(&ward, Some(NEW_HEX), Some(step)));
        assert_eq!(names(&ward), before, "after a crash at {step}");
        ward.run(&["verify"]).ok();
    }
    // Stopped right after the switch: now the control plane is under the new key, and a
    // second run (still given the old key as current) finishes.
    crashed(&rotate(&ward, Some(NEW_HEX), Some("reopen")));
    let old = ward.run(&["clinics", "list"]).final_error();
    assert!(old.contains("does not open with its key"), "{old}");
    let finished = rotate(&ward, Some(NEW_HEX), None);
    let out = finished.stdout.clone();
    assert!(
        finished
            .stderr
            .contains("WARD_MASTER_KEY still holds the old key"),
        "{finished:#?}"
    );
    finished.ok();
    assert!(out.contains("6 clinic keys re-wrapped"), "{out}");
    assert!(out.contains("finishing an earlier run"), "{out}");
    assert!(
        leftovers(&ward.data_dir()).is_empty(),
        "{:?}",
        leftovers(&ward.data_dir())
    );

    // With the old key: a clear error, from the commands and from the server.
    let listed = ward.run(&["clinics", "list"]).final_error();
    assert!(listed.contains("does not open with its key"), "{listed}");
    let serve = ward.run(&["serve", "--addr", "127.0.0.1:0"]);
    assert!(!serve.stderr.contains("panicked"), "{serve:#?}");
    let serve = serve.final_error();
    assert!(serve.contains("does not open with its key"), "{serve}");

    // With the new key: everything, including the clinic's pages.
    ward.set_env("WARD_MASTER_KEY", NEW_HEX);
    assert_eq!(names(&ward), before);
    ward.run(&["verify"]).ok();
    let server = Server::start(&ward);
    let mut visitor = Visitor::new(&server);
    assert!(visitor.sign_in("ada@example.com", PASSWORD));
    let (status, body) = visitor.get(&home);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Rotation Clinic"), "{body}");
    server.terminate();
}

#[test]
fn with_master_key_file_the_new_key_replaces_it_and_the_old_is_kept() {
    let mut ward = Ward::new();
    ward.set_env("WARD_MASTER_KEY", "");
    ward.create("File Clinic A");
    ward.create("File Clinic B");
    let key_path = ward.data_dir().join("master.key");
    let old_key = std::fs::read_to_string(&key_path).unwrap();
    let status = ward.run(&["keys", "status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let old_fp = status["fingerprint"].as_str().unwrap().to_owned();

    // A generated key, stopped after the switch but before it is installed: the new key
    // waits in master.key.next, the status says so, and a second run finishes.
    crashed(&rotate(&ward, None, Some("install-key")));
    let next = ward.data_dir().join("master.key.next");
    assert!(next.exists());
    let status = ward.run(&["keys", "status"]).ok();
    assert!(status.contains("unfinished rotation"), "{status}");
    let meanwhile = ward.run(&["clinics", "list"]).final_error();
    assert!(meanwhile.contains("rotation is unfinished"), "{meanwhile}");
    // Another new key is refused while that one is unfinished.
    let refused = rotate(&ward, Some(NEW_HEX), None).final_error();
    assert!(refused.contains("unfinished rotation"), "{refused}");
    let out = rotate(&ward, None, None);
    assert!(out.stderr.contains("master.key.old-"), "{out:#?}");
    out.ok();

    let new_key = std::fs::read_to_string(&key_path).unwrap();
    assert_ne!(new_key.trim(), old_key.trim());
    assert!(!next.exists());
    let kept: Vec<_> = std::fs::read_dir(ward.data_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("master.key.old-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), old_key);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kept[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(names(&ward), ["File Clinic A", "File Clinic B"]);
    ward.run(&["verify"]).ok();
    let status = ward.run(&["keys", "status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_ne!(status["fingerprint"].as_str().unwrap(), old_fp);
    // The old key, given explicitly, no longer opens the control plane.
    ward.set_env("WARD_MASTER_KEY", old_key.trim());
    let old = ward.run(&["clinics", "list"]).final_error();
    assert!(old.contains("does not open with its key"), "{old}");
}

#[test]
fn the_replica_continues_after_a_rotation_and_rebuilds_under_the_new_key() {
    let folder = tempfile::tempdir().unwrap();
    let env = replica_env(folder.path());
    let mut ward = Ward::with_env(env.clone());
    let server = Server::start(&ward);
    sign_up(&ward, &server, "Before Rotation", "a@example.com");
    server.terminate();

    rotate(&ward, Some(NEW_HEX), None).ok();
    ward.set_env("WARD_MASTER_KEY", NEW_HEX);
    let server = Server::start(&ward);
    sign_up(&ward, &server, "After Rotation", "b@example.com");
    server.terminate();

    // An empty machine rebuilt from the replica with the new key has both clinics.
    let mut fresh = Ward::with_env(env.clone());
    fresh.set_env("WARD_MASTER_KEY", NEW_HEX);
    let out = fresh
        .run(&["restore", "--everything", "--reason", "the volume died"])
        .ok();
    assert!(out.contains("rebuilt the control plane"), "{out}");
    assert_eq!(names(&fresh), ["After Rotation", "Before Rotation"]);
    fresh.run(&["verify"]).ok();

    // With the old key the latest state does not open.
    let old = Ward::with_env(env);
    let refused = old.run(&["restore", "--everything", "--reason", "the volume died"]);
    assert!(!refused.status.success(), "{refused:#?}");
    assert!(!refused.stderr.contains("panicked"), "{refused:#?}");
}

#[test]
fn after_a_pepper_rotation_passwords_work_and_are_rehashed_at_sign_in() {
    let ward = Ward::new();
    let server = Server::start(&ward);
    for (name, email) in [
        ("Pepper A", "ada@example.com"),
        ("Pepper B", "bob@example.com"),
    ] {
        sign_up(&ward, &server, name, email);
    }
    let refused = ward.run(&["keys", "rotate-pepper"]).final_error();
    assert!(refused.contains("ward serve"), "{refused}");
    server.terminate();

    ward.run(&["keys", "rotate-pepper"]).ok();
    let again = ward.run(&["keys", "rotate-pepper"]).final_error();
    assert!(again.contains("pepper.key.previous"), "{again}");

    let older = |ward: &Ward| {
        let out = ward.run(&["keys", "status", "--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["hashes_current_pepper"].as_u64(),
            v["hashes_older_pepper"].as_u64(),
        )
    };
    assert_eq!(older(&ward), (Some(0), Some(2)));

    // Both still sign in under the new pepper; Ada's sign-in re-hashes her password.
    let server = Server::start(&ward);
    assert!(Visitor::new(&server).sign_in("ada@example.com", PASSWORD));
    assert!(!Visitor::new(&server).sign_in("ada@example.com", "not the password at all"));
    server.terminate();
    assert_eq!(older(&ward), (Some(1), Some(1)));

    // One more rotation drops the first pepper: Ada's re-hashed password still works,
    // Bob's (not signed in since the first rotation) no longer does.
    ward.run(&["keys", "rotate-pepper", "--force"]).ok();
    let server = Server::start(&ward);
    assert!(Visitor::new(&server).sign_in("ada@example.com", PASSWORD));
    assert!(!Visitor::new(&server).sign_in("bob@example.com", PASSWORD));
    server.terminate();
}
