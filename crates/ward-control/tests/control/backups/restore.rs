use chrono::TimeDelta;
use ward_control::backups::{RestoreReport, restore_control_plane};
use ward_control::{BackupConfig, BackupRecord, ControlError, RestoreTarget, Scope, ServeGuard};
use ward_core::ClinicId;
use ward_tenancy::MasterKey;
use ward_tenancy::backup::RestoreStep;

use super::{Dump, Env, MASTER_HEX, dump_file, open};

async fn restore(
    env: &Env,
    id: ClinicId,
    target: RestoreTarget,
    dry_run: bool,
    stop_at: Option<RestoreStep>,
) -> Result<RestoreReport, ControlError> {
    env.backups
        .restore_clinic(
            id,
            target,
            "test restore",
            &ward_core::Actor::Operator,
            dry_run,
            &mut |_| {},
            &mut |s| {
                if Some(s) == stop_at {
                    Err("stopped by the test".into())
                } else {
                    Ok(())
                }
            },
        )
        .await
}

/// How [`restore`] with these arguments fails; it must.
async fn refused(
    env: &Env,
    id: ClinicId,
    target: RestoreTarget,
    dry_run: bool,
    stop_at: Option<RestoreStep>,
) -> ControlError {
    restore(env, id, target, dry_run, stop_at)
        .await
        .unwrap_err()
}

async fn backup(env: &Env, id: ClinicId) -> BackupRecord {
    let r = env
        .backups
        .backup(Scope::Clinic(id), "operator")
        .await
        .unwrap();
    assert!(r.is_good());
    r
}

/// A clinic backed up and then changed: the environment, the clinic, its backup and
/// the clinic's rows now.
/// A new "Acme Clinic" with one backup, and what the clinic held when it was taken.
async fn backed_up_acme() -> (Env, ClinicId, BackupRecord, Dump) {
    let env = Env::new().await;
    let id = env.clinic("Acme Clinic").await;
    let b = backup(&env, id).await;
    let state = env.dump(id).await;
    (env, id, b, state)
}

async fn changed_since_its_backup() -> (Env, ClinicId, BackupRecord, Dump) {
    let (env, id, b, _) = backed_up_acme().await;
    env.exec(id, "INSERT INTO notes (body) VALUES ('kept')")
        .await;
    let current = env.dump(id).await;
    (env, id, b, current)
}

fn leftovers(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.data_dir().join("clinics"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restoring") || n.ends_with(".lock"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn restoring_to_a_backup_time_brings_back_exactly_that_state() {
    let env = Env::new().await;
    let id = env.clinic("Acme Clinic").await;
    let other = env.clinic("Other Clinic").await;
    env.exec(id, "INSERT INTO notes (body) VALUES ('before the backup')")
        .await;
    let then = env.dump(id).await;
    let b1 = backup(&env, id).await;
    let other_before = env.dump(other).await;

    env.clock.advance(TimeDelta::hours(1));
    env.exec(
        id,
        "INSERT INTO notes (body) VALUES ('after the backup');
         UPDATE settings SET value = 'changed' WHERE key = 'letterhead';
         DELETE FROM notes WHERE body = 'before the backup';
         CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (1), (2);",
    )
    .await;
    let later = env.dump(id).await;
    assert_ne!(later, then);
    // A newer backup exists, but the restore asks for the moment of the first.
    env.clock.advance(TimeDelta::minutes(5));
    backup(&env, id).await;
    env.clock.advance(TimeDelta::hours(1));

    let report = restore(&env, id, RestoreTarget::At(b1.taken_at), false, None)
        .await
        .unwrap();
    assert_eq!(report.backup.id, b1.id);
    assert!(!report.dry_run);
    assert_eq!(env.dump(id).await, then, "every table exactly as it was");
    assert_eq!(report.tables_before.as_ref().unwrap()["extra"], 2);
    assert!(!report.tables_after.as_ref().unwrap().contains_key("extra"));
    assert_eq!(report.tables_after.as_ref(), Some(&report.tables_restored));

    // The replaced file holds the later writes.
    let pre = report.pre_restore.unwrap();
    assert!(
        pre.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{id}.db.pre-restore-"))
    );
    assert_eq!(dump_file(&pre, &env.key(id).await).await, later);
    // Other clinics untouched; nothing left behind; the clinic is usable.
    assert_eq!(env.dump(other).await, other_before);
    assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));
    env.exec(id, "INSERT INTO notes (body) VALUES ('after the restore')")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_backup_is_detected_and_never_restored_from() {
    let (env, id, good, good_state) = backed_up_acme().await;

    let corrupt = |r: &BackupRecord| {
        let path = env.backup_dir().join(&r.file);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid..mid + 64].fill(0);
        std::fs::write(&path, bytes).unwrap();
    };

    // Damaged after it was taken: the drill finds it and marks it.
    env.clock.advance(TimeDelta::minutes(5));
    env.exec(id, "INSERT INTO notes (body) VALUES ('second')")
        .await;
    let second = backup(&env, id).await;
    corrupt(&second);
    let drill = env.backups.drill(None, Some(id), &|_| {}).await.unwrap();
    assert_eq!(drill.failed.len(), 1);
    assert_eq!(drill.failed[0].backup_id, Some(second.id));
    let marked = env
        .platform
        .control
        .backup_by_id(second.id)
        .await
        .unwrap()
        .unwrap();
    assert!(marked.verify_error.is_some() && !marked.is_good());
    let overview = env.platform.control.backup_overview().await.unwrap();
    assert_eq!(overview.drill_failed, 1);
    assert!(overview.attention.iter().any(|a| a.scope == id.to_string()));

    // Damaged and not yet found: the restore's own check finds it and falls back.
    env.clock.advance(TimeDelta::minutes(5));
    env.exec(id, "INSERT INTO notes (body) VALUES ('third')")
        .await;
    let third = backup(&env, id).await;
    corrupt(&third);

    env.clock.advance(TimeDelta::minutes(5));
    let report = restore(&env, id, RestoreTarget::At(env.clock_now()), false, None)
        .await
        .unwrap();
    assert_eq!(
        report.backup.id, good.id,
        "neither damaged backup is chosen"
    );
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].backup_id, Some(third.id));
    assert_eq!(env.dump(id).await, good_state);

    for bad in [&second, &third] {
        let err = refused(&env, id, RestoreTarget::Backup(bad.id), false, None).await;
        assert!(err.to_string().contains("failed its check"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_stopped_at_any_step_leaves_a_whole_unlocked_clinic() {
    let (env, id, b, backed_up) = backed_up_acme().await;
    let steps = [
        RestoreStep::Prepare,
        RestoreStep::Exclusive,
        RestoreStep::Checkpoint,
        RestoreStep::KeepOld,
        RestoreStep::ClearSidecars,
        RestoreStep::Rename,
        RestoreStep::Migrate,
    ];
    for (i, step) in steps.into_iter().enumerate() {
        env.exec(
            id,
            &format!("INSERT INTO notes (body) VALUES ('write {i}')"),
        )
        .await;
        let current = env.dump(id).await;
        let err = refused(&env, id, RestoreTarget::Backup(b.id), false, Some(step)).await;
        assert!(err.to_string().contains("stopped by the test"), "{err}");
        assert!(
            !env.platform.tenants.is_locked(id),
            "lock released after {step:?}"
        );
        let now = env.dump(id).await;
        if step == RestoreStep::Migrate {
            assert_eq!(now, backed_up, "the switch had happened: the new state");
        } else {
            assert_eq!(now, current, "stopped before the switch: the old state");
        }
        assert!(
            leftovers(&env).is_empty(),
            "{step:?}: {:?}",
            leftovers(&env)
        );
    }
    // And a restore run to the end afterwards works.
    restore(&env, id, RestoreTarget::Backup(b.id), false, None)
        .await
        .unwrap();
    assert_eq!(env.dump(id).await, backed_up);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_is_refused_while_another_operator_holds_the_clinic() {
    let (env, id, b, current) = changed_since_its_backup().await;
    let lock = env.platform.tenants.lock(id, "purge").await.unwrap();
    let err = refused(&env, id, RestoreTarget::Backup(b.id), false, None).await;
    assert!(matches!(err, ControlError::Busy(_)), "{err}");
    drop(lock);
    assert_eq!(env.dump(id).await, current);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_checks_the_backup_and_changes_nothing() {
    let (env, id, b, current) = changed_since_its_backup().await;
    let report = restore(&env, id, RestoreTarget::At(env.clock_now()), true, None)
        .await
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.backup.id, b.id);
    assert_eq!(report.tables_restored["notes"], 1);
    assert!(report.pre_restore.is_none());
    assert_eq!(env.dump(id).await, current);
    let names: Vec<_> = std::fs::read_dir(env.data_dir().join("clinics"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("pre-restore") || n.contains("restoring"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // Nothing before the first backup.
    let err = refused(
        &env,
        id,
        RestoreTarget::At(b.taken_at - TimeDelta::seconds(1)),
        true,
        None,
    )
    .await;
    assert!(err.to_string().contains("no usable backup"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_restore_waits_for_serve_and_brings_the_registry_back() {
    let env = Env::new().await;
    let kept = env.clinic("Kept Clinic").await;
    let s = env.pass(true).await;
    assert!(s.failed.is_empty());
    let control_backup = env
        .platform
        .control
        .list_backups(Scope::Control, false)
        .await
        .unwrap()[0]
        .clone();
    env.clock.advance(TimeDelta::minutes(5));
    env.clinic("Later Clinic").await;
    env.exec(kept, "INSERT INTO notes (body) VALUES ('after')")
        .await;
    backup(&env, kept).await;

    let master = MasterKey::from_hex(MASTER_HEX).unwrap();
    let data = env.data_dir();
    let config = BackupConfig::new(env.backup_dir());
    let test_clock = env.clock.clone();
    let run = |dry_run| {
        let (data, config, master) = (data.clone(), config.clone(), master.clone());
        let clock = std::sync::Arc::new(test_clock.clone());
        async move {
            restore_control_plane(
                &data,
                config,
                &master,
                control_backup.id,
                "test",
                &ward_core::Actor::Operator,
                dry_run,
                clock,
                &mut |_| Ok(()),
            )
            .await
        }
    };

    let serve = ServeGuard::acquire(&data).unwrap().unwrap();
    let err = run(false).await.unwrap_err();
    assert!(err.to_string().contains("ward serve"), "{err}");
    drop(serve);

    // This process still has the control plane open, like another command would.
    let err = run(false).await.unwrap_err();
    assert!(err.to_string().contains("another ward command"), "{err}");
    assert!(
        run(true).await.unwrap().dry_run,
        "a dry run needs no exclusive access"
    );

    let Env {
        dir,
        clock,
        platform,
        backups,
    } = env;
    drop(backups);
    drop(platform);
    let report = run(false).await.unwrap();
    assert!(report.pre_restore.is_some());
    assert!(
        report.adopted >= 2,
        "the control backup itself and the later clinic backup: {}",
        report.adopted
    );

    let (platform, _backups) = open(dir.path(), &clock).await;
    let names: Vec<String> = platform
        .control
        .list_clinics()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["Kept Clinic".to_owned()]);
    let list = platform
        .control
        .list_backups(Scope::Clinic(kept), false)
        .await
        .unwrap();
    assert_eq!(
        list.len(),
        2,
        "the backup taken after the control backup was adopted"
    );
    // The kept clinic's data is untouched by a control-plane restore.
    platform.tenants.get(kept).await.unwrap();
}
