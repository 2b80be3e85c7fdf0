//! A real SQLCipher file replicated to a folder and restored from it.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::path::Path;
use std::time::Duration;

use ward_replica::{DbStatus, Replicator, Target, restore_to};
use ward_tenancy::db::{self, Durability};
use ward_tenancy::keys::DataKey;

/// The test S3 server's bucket (started by scripts/s3-test-server), with a fresh prefix.
fn s3_target() -> Option<Target> {
    let Ok(endpoint) = std::env::var("WARD_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs the S3 tests: start scripts/s3-test-server"
        );
        return None;
    };
    Some(s3_target_through(&endpoint, "t"))
}

/// A target in the test S3 server's bucket under a fresh prefix starting `prefix`,
/// reached through `endpoint`.
fn s3_target_through(endpoint: &str, prefix: &str) -> Target {
    let bucket = std::env::var("WARD_TEST_S3_BUCKET").unwrap();
    let key = std::env::var("WARD_TEST_S3_KEY").unwrap();
    let secret = std::env::var("WARD_TEST_S3_SECRET").unwrap();
    let url = format!("s3://{bucket}/{prefix}-{}", uuid::Uuid::now_v7());
    Target::from_url_with(
        &url,
        &[
            ("aws_endpoint", endpoint),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", key.as_str()),
            ("aws_secret_access_key", secret.as_str()),
            ("aws_region", "us-east-1"),
        ],
    )
    .unwrap()
}

/// A replica in a new temporary folder: the folder (removed when dropped) and its target.
fn folder_target() -> (tempfile::TempDir, Target) {
    let replica = tempfile::tempdir().unwrap();
    let target = Target::from_url(&format!("file://{}", replica.path().display())).unwrap();
    (replica, target)
}

/// Declares the two tests of each scenario: `s3` runs it against the S3 test server
/// (and passes without one, outside CI), `folder` against a replica in a temporary
/// folder, whose path the scenario is also given.
macro_rules! on_s3_and_in_a_folder {
    ($($scenario:ident { s3: $s3:ident, folder: $folder:ident, })*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $s3() {
                let Some(target) = s3_target() else { return };
                $scenario(target, None).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $folder() {
                let (replica, target) = folder_target();
                $scenario(target, Some(replica.path())).await;
            }
        )*
    };
}

on_s3_and_in_a_folder! {
    timeline {
        s3: restores_from_s3_hold_exactly_the_commits_made_by_each_chosen_moment,
        folder: restores_hold_exactly_the_commits_made_by_each_chosen_moment,
    }
    second_server_waits_for_the_first {
        s3: a_second_server_on_the_same_replica_waits_for_the_first_to_let_go,
        folder: a_second_server_on_the_same_replica_folder_waits_for_the_first_to_let_go,
    }
    compaction {
        s3: compaction_on_s3_joins_segments_and_every_moment_stays_restorable,
        folder: compaction_joins_segments_and_every_moment_stays_restorable,
    }
}

/// Adds a row to the table `t` with `pad` in it.
fn add_row(conn: &ward_tenancy::sql::Connection, pad: &str) {
    conn.execute_now(
        "INSERT INTO t (pad) VALUES (?1)",
        ward_tenancy::sql::params![pad],
    )
    .unwrap();
}

/// A started replicator over a new data directory, and one new clinic file in it with
/// a table `t`.
struct Setup {
    data: tempfile::TempDir,
    replicator: Replicator,
    key: DataKey,
    path: std::path::PathBuf,
    db_id: String,
    conn: ward_tenancy::sql::Connection,
}

fn setup(target: &Target) -> Setup {
    let data = tempfile::tempdir().unwrap();
    let replicator = Replicator::new(
        data.path(),
        target.clone(),
        Duration::from_secs(30 * 86_400),
    )
    .unwrap();
    replicator.start();
    let key = DataKey::random();
    let path = clinic_path(data.path());
    let db_id = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let conn = db::open_now(&path, &key, true, Durability::Full)
        .unwrap()
        .conn;
    conn.execute_batch_now("CREATE TABLE t (i INTEGER PRIMARY KEY, pad TEXT)")
        .unwrap();
    Setup {
        data,
        replicator,
        key,
        path,
        db_id,
        conn,
    }
}

fn clinic_path(data: &Path) -> std::path::PathBuf {
    let dir = data.join("clinics");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}.db", uuid::Uuid::now_v7()))
}

fn count(path: &Path, key: &DataKey) -> i64 {
    let opened = db::open_now(path, key, false, Durability::Full).unwrap();
    let n = db::first_row(&opened.conn, "SELECT count(*) FROM t", ())
        .unwrap()
        .unwrap()
        .get::<i64>(0)
        .unwrap();
    let problems: String = opened
        .conn
        .first_row_now("PRAGMA integrity_check", ())
        .unwrap()
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(problems, "ok");
    n
}

/// Writes in rounds, then restores to the moment after each round.
async fn timeline(target: Target, folder: Option<&Path>) {
    let s = setup(&target);
    // Four rounds of writes, 300 ms apart; the moments between rounds are remembered.
    let mut marks = Vec::new();
    for round in 0..4i64 {
        for i in 0..(50 + round * 400) {
            add_row(
                &s.conn,
                &format!("round {round} row {i} {}", "x".repeat(200)),
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        marks.push((ward_replica::now_ms(), count(&s.path, &s.key)));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The WAL passed the checkpoint threshold at least once: the stream went on.
    let wal_len = std::fs::metadata(format!("{}-wal", s.path.display()))
        .unwrap()
        .len();
    assert!(
        wal_len < 8 << 20,
        "the WAL was never checkpointed ({wal_len} bytes): {:?}",
        s.replicator.status()
    );
    s.replicator.sync(&s.db_id).await.unwrap();
    for (i, (at, expected)) in marks.iter().enumerate() {
        let out = s.data.path().join(format!("restored-{i}.db"));
        let report = restore_to(&target, &s.db_id, Some(*at), &out)
            .await
            .unwrap();
        assert!(report.last_commit_ms <= *at);
        assert_eq!(count(&out, &s.key), *expected, "restore to mark {i}");
    }
    // Closing ships and checkpoints: the WAL is empty and the latest restore is whole.
    drop(s.conn);
    let wal_len = std::fs::metadata(format!("{}-wal", s.path.display()))
        .unwrap()
        .len();
    assert_eq!(wal_len, 0);
    let out = s.data.path().join("latest.db");
    restore_to(&target, &s.db_id, None, &out).await.unwrap();
    assert_eq!(count(&out, &s.key), marks.last().unwrap().1);
    // No page of the replica is plaintext, though the rows are in it (restored above).
    if let Some(folder) = folder {
        let files = walk(folder);
        assert!(files.len() > 3, "{files:?}");
        for entry in files {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(9).any(|w| w == b"round 3 r"),
                "{}",
                entry.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_missing_segment_stops_the_restore_with_its_name() {
    let (replica, target) = folder_target();
    let s = setup(&target);
    for i in 0..5 {
        add_row(&s.conn, &format!("{i}"));
        s.replicator.sync(&s.db_id).await.unwrap();
    }
    drop(s.conn);
    let mut segments: Vec<_> = walk(replica.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 5, "{segments:?}");
    // A flipped byte in the third segment.
    let mut bytes = std::fs::read(&segments[2]).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x40;
    std::fs::write(&segments[2], &bytes).unwrap();
    let err = restore_to(&target, &s.db_id, None, &s.data.path().join("a.db"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("000000000002.seg"), "{err}");
    // A missing one.
    std::fs::remove_file(&segments[2]).unwrap();
    let err = restore_to(&target, &s.db_id, None, &s.data.path().join("b.db"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("segment 2 is missing"), "{err}");
}

/// How the replicator sees database `db`.
fn status_of(replicator: &Replicator, db: &str) -> DbStatus {
    replicator
        .status()
        .into_iter()
        .find(|s| s.db == db)
        .unwrap()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A TCP proxy in front of the test S3 server that can be cut off and restored.
struct Proxy {
    addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !up2.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut open = open2.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, up, open }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::Release);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_down_writes_go_on_lag_shows_and_the_backlog_drains_after() {
    let Some(_) = s3_target() else { return };
    let endpoint = std::env::var("WARD_TEST_S3_ENDPOINT").unwrap();
    let upstream = endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(upstream);
    let via = format!("http://{}", proxy.addr);
    let target = s3_target_through(&via, "outage");
    let s = setup(&target);
    s.replicator.sync(&s.db_id).await.unwrap();

    proxy.set_up(false);
    let started = std::time::Instant::now();
    for i in 0..40 {
        add_row(&s.conn, &format!("{i}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "writes waited for the store"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = status_of(&s.replicator, &s.db_id);
    assert!(status.lag_ms > 1000, "{status:?}");
    assert!(status.error.is_some(), "{status:?}");

    proxy.set_up(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = status_of(&s.replicator, &s.db_id);
        if status.lag_ms == 0 && status.error.is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog never drained: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = s.data.path().join("after.db");
    restore_to(&target, &s.db_id, None, &out).await.unwrap();
    assert_eq!(count(&out, &s.key), 40);
    drop(s.conn);
}

/// Two servers on one replica (its folder, where it has one, is not looked at).
async fn second_server_waits_for_the_first(target: Target, _folder: Option<&Path>) {
    let first = setup(&target);
    let second = setup(&target);
    // The first took the lease; the second writes locally but ships nothing.
    assert_eq!(first.replicator.lease_error(), None);
    let why = second.replicator.lease_error().unwrap_or_default();
    assert!(why.contains("another server"), "{why:?}");
    add_row(&second.conn, "x");
    assert!(second.replicator.sync(&second.db_id).await.is_err());
    assert!(
        ward_replica::generations(&target, &second.db_id)
            .await
            .unwrap()
            .is_empty(),
        "the second server shipped while the first held the replica"
    );
    add_row(&first.conn, "y");
    first.replicator.sync(&first.db_id).await.unwrap();
    // Once the first lets go, the second takes over and ships its backlog.
    first.replicator.release().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while second.replicator.lease_error().is_some()
        || ward_replica::generations(&target, &second.db_id)
            .await
            .unwrap()
            .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the second server never took over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A generation is listed once it is begun; what the second wrote is in the replica
    // once its sync succeeds.
    second.replicator.sync(&second.db_id).await.unwrap();
    let out = second.data.path().join("after.db");
    restore_to(&target, &second.db_id, None, &out)
        .await
        .unwrap();
    assert_eq!(count(&out, &second.key), 1);
    drop(second.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_a_controlled_clock_deletes_superseded_and_undescribed_generations() {
    use chrono::TimeDelta;
    use ward_core::{Clock, ManualClock};

    let (replica, target) = folder_target();
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(ward_core::parse_time("2026-03-01T09:00:00Z").unwrap());
    let ms = |c: &ManualClock| c.now().timestamp_millis();
    let t0 = ms(&clock);
    let replicator = Replicator::new(
        data.path(),
        target.clone(),
        Duration::from_secs(30 * 86_400),
    )
    .unwrap()
    .with_clock(std::sync::Arc::new(clock.clone()));
    let key = DataKey::random();
    let path = clinic_path(data.path());
    let db_id = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let opened = db::open_now(&path, &key, true, Durability::Full).unwrap();
    opened
        .conn
        .execute_batch_now("CREATE TABLE t (i INTEGER PRIMARY KEY, pad TEXT)")
        .unwrap();
    let insert = || {
        add_row(&opened.conn, "row");
    };
    insert();
    replicator.sync(&db_id).await.unwrap();
    let gens = ward_replica::generations(&target, &db_id).await.unwrap();
    assert_eq!(gens.len(), 1);
    assert_eq!(
        gens[0].meta.created_at_ms, t0,
        "the generation's time is the replicator's clock"
    );
    let first = gens[0].name.clone();

    // A month later the next write starts a new generation.
    clock.advance(TimeDelta::days(31));
    insert();
    replicator.sync(&db_id).await.unwrap();
    let gens = ward_replica::generations(&target, &db_id).await.unwrap();
    assert_eq!(gens.len(), 2);
    let second = gens[1].name.clone();
    assert_eq!(gens[1].meta.created_at_ms, ms(&clock));

    // Folders without a description: one left by a deletion cut short (old), one whose
    // snapshot is being written now.
    let folder = |name: &str| replica.path().join(&db_id).join(name);
    // Objects left in a generation's folder (a folder target may keep it empty).
    let objects = |name: &str| {
        let dir = folder(name);
        if dir.exists() { walk(&dir).len() } else { 0 }
    };
    let cut_short = ward_replica::segment::new_generation(t0 - 86_400_000);
    let writing = ward_replica::segment::new_generation(ms(&clock));
    for name in [&cut_short, &writing] {
        std::fs::create_dir_all(folder(name)).unwrap();
        std::fs::write(folder(name).join("snapshot.db"), b"encrypted bytes").unwrap();
    }
    assert_eq!(
        replicator.apply_retention().await.unwrap(),
        1,
        "only the old undescribed folder goes: the first generation is needed within the retention"
    );
    assert_eq!(objects(&cut_short), 0);
    assert!(objects(&writing) > 0 && objects(&first) > 0);
    let out = data.path().join("early.db");
    restore_to(&target, &db_id, Some(t0 + 1), &out)
        .await
        .unwrap();
    assert_eq!(
        count(&out, &key),
        1,
        "a moment of the first generation restores"
    );

    // Another month: the first generation's successor is older than the retention, and
    // so is the folder that was being written (it never got its description).
    clock.advance(TimeDelta::days(31));
    assert_eq!(replicator.apply_retention().await.unwrap(), 2);
    assert_eq!(objects(&first), 0, "the superseded generation is gone");
    assert_eq!(objects(&writing), 0);
    assert!(folder(&second).join("meta.json").exists());
    let err = restore_to(&target, &db_id, Some(t0 + 1), &data.path().join("gone.db"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("oldest copy"), "{err}");
    let out = data.path().join("latest.db");
    restore_to(&target, &db_id, None, &out).await.unwrap();
    assert_eq!(count(&out, &key), 2);
    // Nothing more to do.
    assert_eq!(replicator.apply_retention().await.unwrap(), 0);
}

/// Ships one segment per commit, compacts, and restores to the moment after each.
async fn compaction(target: Target, folder: Option<&Path>) {
    let s = setup(&target);
    let mut marks = Vec::new();
    for i in 0..40 {
        add_row(&s.conn, &format!("row {i}"));
        s.replicator.sync(&s.db_id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
        marks.push((ward_replica::now_ms(), i + 1));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let restores_all = |round: &'static str| {
        let (target, marks, s) = (&target, &marks, &s);
        async move {
            let mut segments_read = 0;
            for (i, (at, expected)) in marks.iter().enumerate() {
                let out = s.data.path().join(format!("{round}-{i}.db"));
                let report = restore_to(target, &s.db_id, Some(*at), &out).await.unwrap();
                assert_eq!(
                    count(&out, &s.key),
                    *expected,
                    "{round}: restore to mark {i}"
                );
                segments_read = segments_read.max(report.segments);
            }
            segments_read
        }
    };
    let (objects_before, _) = ward_replica::stored(&target, &s.db_id).await.unwrap();
    let shipped = restores_all("shipped").await;
    assert!(shipped >= 40, "a segment per commit: {shipped}");

    let first = s.replicator.compact().await.unwrap();
    assert!(first.written >= 1 && first.joined >= 40, "{first:?}");
    assert_eq!(
        first.deleted, 0,
        "nothing is deleted in the pass that joins"
    );
    // Both the joined objects and what they join are there; a restore reads the former.
    let read = restores_all("joined").await;
    assert!(read <= 3, "a restore read {read} objects after compaction");

    let second = s.replicator.compact().await.unwrap();
    assert_eq!(
        (second.written, second.deleted),
        (0, first.joined),
        "{second:?}"
    );
    let (objects_after, _) = ward_replica::stored(&target, &s.db_id).await.unwrap();
    assert!(
        objects_after + 30 <= objects_before,
        "{objects_before} objects before, {objects_after} after"
    );
    assert!(restores_all("cleaned").await <= 3);

    // The stream goes on after the joined object.
    add_row(&s.conn, "after");
    s.replicator.sync(&s.db_id).await.unwrap();
    let out = s.data.path().join("latest.db");
    restore_to(&target, &s.db_id, None, &out).await.unwrap();
    assert_eq!(count(&out, &s.key), 41);

    // A flipped byte in a joined object stops the restore with its name.
    if let Some(folder) = folder {
        let joined = walk(folder)
            .into_iter()
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.ends_with(".seg") && name.contains('-')
            })
            .unwrap();
        let mut bytes = std::fs::read(&joined).unwrap();
        let at = bytes.len() - 100;
        bytes[at] ^= 0x01;
        std::fs::write(&joined, &bytes).unwrap();
        let err = restore_to(&target, &s.db_id, None, &s.data.path().join("bad.db"))
            .await
            .unwrap_err();
        let name = joined.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.to_string().contains(&name), "{err}");
    }
}
