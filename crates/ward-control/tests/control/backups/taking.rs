use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::TimeDelta;
use ward_control::Scope;

use super::{CANARY, Env, dump_file, exec, files_under};

#[tokio::test(flavor = "multi_thread")]
async fn a_pass_backs_up_only_what_changed_and_verifies_every_backup() {
    let env = Env::new().await;
    let a = env.clinic("Alpha Clinic").await;
    let b = env.clinic("Beta Clinic").await;
    let c = env.clinic("Gamma Clinic").await;

    let first = env.pass(false).await;
    assert_eq!(first.considered, 4, "three clinics and the control plane");
    assert_eq!(first.changed, 4);
    assert_eq!(first.backed_up, 4);
    assert!(first.failed.is_empty(), "{:?}", first.failed);

    // Nothing written to the clinics: only the control plane (whose catalog the pass
    // itself wrote to) is backed up again.
    env.clock.advance(TimeDelta::minutes(5));
    let idle = env.pass(false).await;
    assert_eq!(idle.changed, 1, "{idle:?}");
    assert_eq!(env.backups.config().dir, env.backup_dir());

    env.exec(b, "INSERT INTO notes (body) VALUES ('later')")
        .await;
    env.clock.advance(TimeDelta::minutes(5));
    let one = env.pass(false).await;
    assert_eq!(one.changed, 2, "{one:?}");
    assert_eq!(one.backed_up, 2);

    for (clinic, expected) in [(a, 1), (b, 2), (c, 1)] {
        let list = env
            .platform
            .control
            .list_backups(Scope::Clinic(clinic), false)
            .await
            .unwrap();
        assert_eq!(list.len(), expected);
        for backup in &list {
            assert!(backup.is_good(), "{backup:?}");
            assert!(backup.schema_version > 0);
            let file = env.backup_dir().join(&backup.file);
            assert_eq!(std::fs::metadata(&file).unwrap().len(), backup.size);
            assert!(file.with_extension("json").exists(), "manifest beside it");
            assert!(file.starts_with(env.backup_dir().join("clinics").join(clinic.to_string())));
        }
    }

    // A full pass takes every clinic regardless.
    let full = env.pass(true).await;
    assert_eq!(full.changed, 4);
    assert_eq!(full.backed_up, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_taken_while_a_writer_commits_are_all_consistent() {
    let env = Env::new().await;
    let id = env.clinic("Busy Clinic").await;
    env.exec(
        id,
        "CREATE TABLE pairs (n INTEGER NOT NULL, side TEXT NOT NULL);
         CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0);",
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let tenants = env.platform.tenants.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sql = format!(
                    "BEGIN; INSERT INTO pairs VALUES ({n}, 'a'); INSERT INTO pairs VALUES ({n}, 'b');
                     UPDATE counter SET n = n + 1; COMMIT;"
                );
                exec(&tenants, id, &sql).await;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let mut records = Vec::new();
    for _ in 0..6 {
        env.clock.advance(TimeDelta::seconds(1));
        records.push(
            env.backups
                .backup(Scope::Clinic(id), "operator")
                .await
                .unwrap(),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let commits = writer.await.unwrap();
    assert!(commits > 0);

    let key = env.key(id).await;
    let mut last = -1i64;
    for r in &records {
        assert!(r.is_good(), "integrity and content checks passed: {r:?}");
        let d = dump_file(&env.backup_dir().join(&r.file), &key).await;
        let counter: i64 = d["counter"][0]
            .trim_start_matches("Integer(")
            .trim_end_matches(')')
            .parse()
            .unwrap();
        assert_eq!(
            d["pairs"].len() as i64,
            2 * counter,
            "a backup holds whole transactions only"
        );
        assert!(counter >= last, "backups follow the commits");
        last = counter;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_backup_file_holds_a_canary_in_the_clear() {
    let env = Env::new().await;
    // In the clinic's data and, through the clinic's name, in the control plane.
    let id = env.clinic(&format!("Clinic {CANARY}")).await;
    env.exec(
        id,
        &format!("INSERT INTO notes (body) VALUES ('{CANARY} again')"),
    )
    .await;
    let summary = env.pass(true).await;
    assert_eq!(summary.backed_up, 2);
    assert!(
        env.backups
            .drill(None, None, &|_| {})
            .await
            .unwrap()
            .failed
            .is_empty()
    );

    let files = files_under(&env.backup_dir());
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|x| x == "db"))
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "{} holds the canary in the clear",
            f.display()
        );
    }
    // The canary is really in there: the backup decrypts to it.
    let newest = &env
        .platform
        .control
        .list_backups(Scope::Clinic(id), false)
        .await
        .unwrap()[0];
    let d = dump_file(&env.backup_dir().join(&newest.file), &env.key(id).await).await;
    assert!(d["notes"].iter().any(|r| r.contains(CANARY)));
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_two_days_of_everything_and_one_a_day_for_35_days() {
    let env = Env::new().await;
    let id = env.clinic("Old Clinic").await;
    let scope = Scope::Clinic(id);
    // Two backups a day for 40 days.
    for i in 0..80 {
        env.exec(id, &format!("INSERT INTO notes (body) VALUES ('day {i}')"))
            .await;
        env.backups.backup(scope, "schedule").await.unwrap();
        env.clock.advance(TimeDelta::hours(12));
    }
    env.clock.advance(TimeDelta::hours(-12));
    let now = env.clock_now();
    let removed = env.backups.apply_retention(scope).await.unwrap();
    assert!(removed > 0);

    let all = env
        .platform
        .control
        .list_backups(scope, true)
        .await
        .unwrap();
    assert_eq!(all.len(), 80);
    let kept: Vec<_> = all.iter().filter(|b| b.deleted_at.is_none()).collect();
    assert_eq!(all.len() - kept.len(), removed);
    for b in &all {
        let file = env.backup_dir().join(&b.file);
        assert_eq!(
            file.exists(),
            b.deleted_at.is_none(),
            "file follows the catalog"
        );
        if b.taken_at >= now - TimeDelta::hours(48) {
            assert!(
                b.deleted_at.is_none(),
                "everything of the last 48 hours stays"
            );
        }
    }
    let older: Vec<_> = kept
        .iter()
        .filter(|b| b.taken_at < now - TimeDelta::hours(48))
        .collect();
    let days: HashSet<_> = older.iter().map(|b| b.taken_at.date_naive()).collect();
    assert_eq!(days.len(), older.len(), "one a day beyond 48 hours");
    let oldest = older.iter().map(|b| b.taken_at).min().unwrap();
    assert_eq!(
        oldest.date_naive(),
        (now - TimeDelta::days(34)).date_naive()
    );
    // The newest of each day is the one kept.
    assert!(
        older
            .iter()
            .all(|b| b.taken_at.format("%H").to_string() == "12")
    );
    // 5 within 48 hours (now, -12 h, … -48 h) plus one for each other day of 35.
    assert_eq!(kept.len(), 5 + (35 - 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinic_locked_by_an_operator_is_skipped_not_failed() {
    let env = Env::new().await;
    let id = env.clinic("Locked Clinic").await;
    let lock = env.platform.tenants.lock(id, "purge").await.unwrap();
    let s = env.pass(true).await;
    assert_eq!(s.skipped_locked, 1);
    assert!(s.failed.is_empty());
    drop(lock);
    let s = env.pass(false).await;
    assert_eq!(s.backed_up, 2, "taken on the next pass: {s:?}");
}

impl Env {
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use ward_core::Clock as _;
        self.clock.now()
    }
}
