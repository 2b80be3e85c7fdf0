//! Crypto-shredding end to end: after a purge, and once the documented bound has passed,
//! no file or object Ward keeps — the data directory, the backups, the replica, the
//! copies of the control plane — opens to the purged clinic's data or key with any key
//! Ward still has. Real parts on a controlled clock: a platform, a `file://` replica
//! streaming every database, local backups, and a pre-restore copy of `control.db` made
//! by a control-plane restore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use ward_control::backups::restore_control_plane;
use ward_control::lifecycle::{Purger, retention_days};
use ward_control::{BackupConfig, Backups, ControlPlane, Platform, Scope};
use ward_core::{Actor, ClinicId, ClinicStatus, ManualClock};
use ward_replica::{Replicator, Target};
use ward_tenancy::{DataKey, MasterKey, StoreConfig};

use crate::export::fill;
use crate::lifecycle::readable;
use crate::support::{MASTER_HEX, close_by_owner, start};

/// The victim's canary patient (written by `fill`).
const CANARY: &str = "Zebediah Quillfeather";
/// The other clinic's patient.
const OTHER: &str = "Ottoline Brackwater";
/// `WARD_REPLICA_RETENTION`'s default.
const REPLICA_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// The bound docs/lifecycle.md gives for the defaults (the local backups' 35 days).
const BOUND_DAYS: i64 = 35;

/// Ward's parts over one data directory.
struct Ward {
    platform: Platform,
    backups: Backups,
}

async fn open(data: &Path, clock: &ManualClock) -> Ward {
    let platform =
        ward_testkit::open_platform(StoreConfig::new(data), MASTER_HEX, Arc::new(clock.clone()))
            .await;
    let backups = ward_testkit::backups(&platform, data.join("backups"));
    Ward { platform, backups }
}

impl Ward {
    /// What `ward serve` does in a day: the scheduled and the daily backup jobs (with
    /// their retention), the daily purge (which also prunes old pre-restore copies of the
    /// control plane) and the deletion of purged clinics' replica objects, shipping, and
    /// the replica's retention pass. `replica_up: false` is a day the store could not be
    /// reached for the deletion.
    async fn day(&self, data: &Path, replicator: &Replicator, replica_up: bool) {
        self.backups.run_daily_if_due(&|_| {}).await.unwrap();
        let pass = self.backups.pass(false, "schedule", &|_| {}).await.unwrap();
        assert!(pass.failed.is_empty(), "{:?}", pass.failed);
        let items = Purger::new(
            self.platform.control.clone(),
            self.platform.tenants.clone(),
            data.join("backups"),
            data.join("exports"),
            retention_days(90),
        )
        .run(&Actor::Schedule, false)
        .await
        .unwrap();
        // What `ward serve`'s daily purge does after it (crates/ward, `drop_purged`).
        if items.iter().any(|i| i.done) {
            replicator.fresh_generation_soon("control");
        }
        if replica_up {
            let purged: Vec<String> = self
                .platform
                .control
                .list_clinics()
                .await
                .unwrap()
                .into_iter()
                .filter(|c| c.status == ClinicStatus::Purged)
                .map(|c| c.id.to_string())
                .collect();
            let done = ward_replica::delete_purged(replicator.target(), data, &purged)
                .await
                .unwrap();
            assert!(done.failed.is_empty(), "{:?}", done.failed);
        }
        let failed = replicator.sync_all().await;
        assert!(failed.is_empty(), "{failed:?}");
        replicator.apply_retention().await.unwrap();
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// What opening one copy with one key showed.
#[derive(Default)]
struct Opened {
    canary: bool,
    /// Every wrapped key the copy holds, by clinic id.
    wrapped: Vec<(String, Vec<u8>)>,
}

/// Opens the copy `path` (a scratch file: opening may write beside it) with `key`.
fn look(path: &Path, key: &DataKey) -> Option<Opened> {
    let opened =
        ward_tenancy::db::open_now(path, key, false, ward_tenancy::Durability::Full).ok()?;
    let conn = &opened.conn;
    // A wrong key can open the header lazily; the first real read tells.
    conn.first_row_now("SELECT count(*) FROM sqlite_master", ())
        .ok()?;
    let canary = conn
        .first_row_now(
            "SELECT count(*) FROM patients WHERE full_name = ?1",
            [CANARY.to_owned()],
        )
        .ok()
        .flatten()
        .and_then(|r| r.get::<i64>(0).ok())
        .is_some_and(|n| n > 0);
    let mut wrapped = Vec::new();
    let _ = conn.for_each_row::<ward_tenancy::sql::Error>(
        "SELECT id, wrapped_key FROM clinics WHERE wrapped_key IS NOT NULL",
        (),
        |row| {
            wrapped.push((row.get::<String>(0)?, row.get::<Vec<u8>>(1)?));
            Ok(())
        },
    );
    Some(Opened { canary, wrapped })
}

/// Every copy Ward keeps as a database file of its own in `scratch`, by where it came
/// from: each file under `dirs` (copied with its `-wal`, so nothing live is touched),
/// and every generation of every database in the replica, rebuilt by the replica's own
/// restore code at its snapshot, at each moment a commit in it was made, and at its end.
async fn copies(dirs: &[&Path], target: &Target, scratch: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        scratch.join(format!("copy-{n}.db"))
    };
    for dir in dirs {
        for file in walk(dir) {
            let name = file.to_string_lossy().into_owned();
            if name.ends_with("-wal") || name.ends_with("-shm") {
                continue;
            }
            let copy = next();
            std::fs::copy(&file, &copy).unwrap();
            let wal = PathBuf::from(format!("{name}-wal"));
            if wal.exists() {
                std::fs::copy(&wal, format!("{}-wal", copy.display())).unwrap();
            }
            out.push((name, copy));
        }
    }
    for db in ward_replica::databases(target).await.unwrap() {
        for generation in ward_replica::generations(target, &db).await.unwrap() {
            let mut moments = vec![Some(generation.meta.created_at_ms), None];
            let prefix = format!("{db}/{}/wal", generation.name);
            let segments =
                std::path::PathBuf::from(target.url.trim_start_matches("file://")).join(&prefix);
            for seg in walk(&segments) {
                let bytes = std::fs::read(&seg).unwrap();
                let (header, _) =
                    ward_replica::segment::decode(&seg.to_string_lossy(), &bytes).unwrap();
                moments.extend(header.commits.iter().map(|c| Some(c.at_ms)));
            }
            moments.sort();
            moments.dedup();
            for at in moments {
                let copy = next();
                ward_replica::restore_generation(target, &db, &generation, at, &copy)
                    .await
                    .unwrap();
                out.push((
                    format!("replica {db}/{} restored to {at:?}", generation.name),
                    copy,
                ));
            }
        }
    }
    out
}

/// Every copy that yields the victim's canary or the victim's wrapped key with a key
/// Ward has: the control key, `live` clinic keys, and every wrapped key any copy that
/// opens still holds, unwrapped with the master key (until no new key turns up).
async fn leaks(
    dirs: &[&Path],
    target: &Target,
    live: &[(ClinicId, DataKey)],
    victim: ClinicId,
    wrapped_key: &[u8],
) -> Vec<String> {
    let scratch = tempfile::tempdir().unwrap();
    let copies = copies(dirs, target, scratch.path()).await;
    assert!(copies.len() > 10, "the copies were found: {}", copies.len());
    let master = MasterKey::from_hex(MASTER_HEX).unwrap();
    let mut keys: BTreeMap<String, DataKey> = BTreeMap::new();
    keys.insert("control".into(), ControlPlane::key(&master));
    for (id, key) in live {
        keys.insert(id.to_string(), key.clone());
    }
    let mut found = std::collections::BTreeSet::new();
    let mut tried = std::collections::HashSet::new();
    let mut scanned = std::collections::HashSet::new();
    loop {
        // Beneath the rows first (opening a copy may checkpoint it): every page and WAL
        // frame, decrypted with each key, searched for the victim's wrapped key.
        for (name, copy) in &copies {
            for (key_name, key) in &keys {
                if scanned.insert((copy.clone(), key_name.clone()))
                    && ward_tenancy::forensic::pages_hold(copy, key, wrapped_key).unwrap()
                {
                    found.insert(format!(
                        "{name}: the bytes of the victim's wrapped key, decrypted with {key_name}'s key"
                    ));
                }
            }
        }
        let mut new_keys = Vec::new();
        for (name, copy) in &copies {
            for (key_name, key) in &keys {
                if !tried.insert((copy.clone(), key_name.clone())) {
                    continue;
                }
                let Some(seen) = look(copy, key) else {
                    continue;
                };
                if seen.canary {
                    found.insert(format!("{name}: the canary, opened with {key_name}'s key"));
                }
                for (id, wrapped) in seen.wrapped {
                    if id == victim.to_string() {
                        found.insert(format!("{name}: the victim's wrapped key"));
                    }
                    let clinic = ClinicId::parse(&id).unwrap();
                    if !keys.contains_key(&id)
                        && let Ok(k) = master.unwrap(clinic, &wrapped)
                    {
                        new_keys.push((id, k));
                    }
                }
            }
        }
        if new_keys.is_empty() {
            break;
        }
        keys.extend(new_keys);
    }
    found.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_purge_no_copy_ward_keeps_opens_to_the_clinic_once_the_bound_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let replica = dir.path().join("replica");
    let clock = ManualClock::new(start());
    let target = Target::from_url(&format!("file://{}", replica.display())).unwrap();
    // Made before the platform opens, so every connection it opens streams.
    let replicator = Replicator::new(&data, target.clone(), REPLICA_RETENTION)
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let ward = open(&data, &clock).await;
    let control = ward.platform.control.clone();
    let victim = ward_testkit::create_clinic(&ward.platform, "Acme Clinic").await;
    let other = ward_testkit::create_clinic(&ward.platform, "Other Clinic").await;
    let tenant = ward.platform.tenants.get(victim.id).await.unwrap();
    tenant.with(|conn| fill(&conn, 3)).await;
    drop(tenant);
    let tenant = ward.platform.tenants.get(other.id).await.unwrap();
    tenant
        .with(|conn| {
            conn.execute(
                "INSERT INTO patients (id, number, full_name, sex, phone, phone_digits, address, email, notes, created_at, updated_at) \
                 VALUES (1, 1, ?1, 'male', '', '', '', '', '', '2026-03-01T09:00:00.000Z', '2026-03-01T09:00:00.000Z')",
                [OTHER.to_owned()],
            )
            .unwrap()
        })
        .await;
    drop(tenant);
    ward.day(&data, &replicator, true).await;

    // A control-plane restore (ward serve stopped) leaves `control.db.pre-restore-<time>`.
    clock.advance(TimeDelta::hours(1));
    let newest_control = control.list_backups(Scope::Control, false).await.unwrap()[0].id;
    drop(control);
    drop(ward);
    let report = restore_control_plane(
        &data,
        BackupConfig::new(data.join("backups")),
        &MasterKey::from_hex(MASTER_HEX).unwrap(),
        newest_control,
        "test",
        &Actor::Operator,
        false,
        Arc::new(clock.clone()),
        &mut |_| Ok(()),
    )
    .await
    .unwrap();
    let pre_restore = report.pre_restore.unwrap();
    let ward = open(&data, &clock).await;
    let control = ward.platform.control.clone();
    clock.advance(TimeDelta::days(1));
    ward.day(&data, &replicator, true).await;

    // The check can see a leak. By hand first: the pre-restore copy holds the victim's
    // wrapped key, the master key unwraps it, and it opens a copy of the victim's clinic
    // to the canary.
    let master = MasterKey::from_hex(MASTER_HEX).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("control-copy.db");
    std::fs::copy(&pre_restore, &copy).unwrap();
    let seen = look(&copy, &ControlPlane::key(&master)).unwrap();
    let wrapped = seen
        .wrapped
        .iter()
        .find(|(id, _)| *id == victim.id.to_string())
        .map(|(_, w)| w.clone())
        .expect("the pre-restore copy holds the victim's wrapped key");
    let unwrapped = master.unwrap(victim.id, &wrapped).unwrap();
    let backup = control
        .list_backups(Scope::Clinic(victim.id), false)
        .await
        .unwrap()[0]
        .file
        .clone();
    let clinic_copy = scratch.path().join("clinic-copy.db");
    std::fs::copy(data.join("backups").join(backup), &clinic_copy).unwrap();
    assert!(
        readable(&clinic_copy, &unwrapped),
        "the unwrapped key opens the victim's backup to the canary"
    );
    // Then the same through the whole check, without the victim's live key: the wrapped
    // keys in the control copies are found, unwrapped, and open the victim's copies.
    let other_key = ward.platform.tenants.data_key(other.id).await.unwrap();
    let live = [(other.id, other_key.clone())];
    let before = leaks(&[&data, &replica], &target, &live, victim.id, &wrapped).await;
    let victim_id = victim.id.to_string();
    let expected = [
        ("wrapped key", "pre-restore".to_owned()),
        ("wrapped key", "/backups/control/".to_owned()),
        ("wrapped key", "replica control/".to_owned()),
        ("wrapped key", "/control.db".to_owned()),
        ("the bytes", "/control.db".to_owned()),
        ("the bytes", "/backups/control/".to_owned()),
        ("the canary", format!("/backups/clinics/{victim_id}/")),
        ("the canary", format!("replica {victim_id}/")),
        ("the canary", format!("/clinics/{victim_id}.db")),
    ];
    for (kind, place) in &expected {
        assert!(
            before
                .iter()
                .any(|l| l.contains(kind) && l.contains(place.as_str())),
            "before the purge the check finds {kind} in {place}: {before:#?}"
        );
    }

    // Closed, the grace passes, the daily purge runs. That day the replica cannot be
    // reached for deleting the victim's objects: the next day's run deletes them.
    close_by_owner(&control, victim.id).await;
    clock.advance(TimeDelta::days(91));
    ward.day(&data, &replicator, false).await;
    assert!(!control.tombstone(victim.id).await.unwrap().has_key);
    let victim_objects = replica.join(victim.id.to_string());
    assert!(
        !walk(&victim_objects).is_empty(),
        "the deletion of the victim's replica objects failed on the purge day"
    );
    let purged_at = ward_core::Clock::now(&clock);
    clock.advance(TimeDelta::days(1));
    ward.day(&data, &replicator, true).await;
    assert!(
        walk(&victim_objects).is_empty(),
        "the next daily run deleted the victim's replica objects"
    );

    // Inside the bound, copies of the control plane still hold the victim's wrapped key:
    // the check is real.
    while ward_core::Clock::now(&clock) < purged_at + TimeDelta::days(30) {
        clock.advance(TimeDelta::days(1));
        ward.day(&data, &replicator, true).await;
    }
    let live = [(other.id, other_key.clone())];
    let inside = leaks(&[&data, &replica], &target, &live, victim.id, &wrapped).await;
    for place in ["replica control/", "/backups/control/"] {
        assert!(
            inside
                .iter()
                .any(|l| l.contains("wrapped key") && l.contains(place)),
            "30 days after the purge {place} still holds the victim's key: {inside:#?}"
        );
    }
    assert!(
        !inside.iter().any(|l| l.contains("the canary")),
        "no copy of the victim's clinic is left to open: {inside:#?}"
    );

    // Past the bound, every daily job run each day: nothing yields the victim.
    while ward_core::Clock::now(&clock) <= purged_at + TimeDelta::days(BOUND_DAYS) {
        clock.advance(TimeDelta::days(1));
        ward.day(&data, &replicator, true).await;
    }
    let after = leaks(&[&data, &replica], &target, &live, victim.id, &wrapped).await;
    assert!(
        after.is_empty(),
        "copies still yield the victim: {after:#?}"
    );

    // The other clinic still opens, live and from the replica.
    let tenant = ward.platform.tenants.get(other.id).await.unwrap();
    let name: String = tenant
        .with(|conn| {
            conn.first_row_now("SELECT full_name FROM patients WHERE id = 1", ())
                .unwrap()
                .unwrap()
                .get(0)
                .unwrap()
        })
        .await;
    assert_eq!(name, OTHER);
    drop(tenant);
    let rebuilt = scratch.path().join("other.db");
    ward_replica::restore_to(&target, &other.id.to_string(), None, &rebuilt)
        .await
        .unwrap();
    let opened =
        ward_tenancy::db::open_now(&rebuilt, &other_key, false, ward_tenancy::Durability::Full)
            .unwrap();
    let n: i64 = opened
        .conn
        .first_row_now(
            "SELECT count(*) FROM patients WHERE full_name = ?1",
            [OTHER.to_owned()],
        )
        .unwrap()
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(n, 1, "the other clinic's replica restores and opens");
}
