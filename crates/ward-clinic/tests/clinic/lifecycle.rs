//! Closing, reopening and purging a clinic on a controlled clock.

use std::path::Path;
use std::sync::Arc;

use chrono::TimeDelta;
use ward_control::lifecycle::{Purger, Transition, retention_days};
use ward_control::{ClinicRecord, Platform};
use ward_core::{Actor, ClinicStatus, ManualClock};
use ward_tenancy::StoreConfig;

use crate::export::fill;
use crate::support::{MASTER_HEX, close_by_owner, start};

/// Who the lifecycle steps of these tests are taken by.
const OPERATOR: &Actor = &Actor::Operator;

const CANARY: &[u8] = b"Zebediah Quillfeather";

struct Setup {
    dir: tempfile::TempDir,
    clock: ManualClock,
    platform: Platform,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let platform = ward_testkit::open_platform(
        StoreConfig::new(dir.path()),
        MASTER_HEX,
        Arc::new(clock.clone()),
    )
    .await;
    Setup {
        dir,
        clock,
        platform,
    }
}

impl Setup {
    /// Registers clinic `name`, as the operator.
    async fn clinic(&self, name: &str) -> ClinicRecord {
        ward_testkit::create_clinic(&self.platform, name).await
    }

    /// Fills clinic `c` with `patients` patients and their records.
    async fn fill(&self, c: &ClinicRecord, patients: i64) {
        let tenant = self.platform.tenants.get(c.id).await.unwrap();
        tenant.with(|conn| fill(&conn, patients)).await;
    }

    fn purger(&self) -> Purger {
        Purger::new(
            self.platform.control.clone(),
            self.platform.tenants.clone(),
            self.dir.path().join("backups"),
            self.dir.path().join("exports"),
            retention_days(90),
        )
    }
}

/// Whether the database file `path` opens under `key` and holds the canary patient.
pub(crate) fn readable(path: &Path, key: &ward_tenancy::DataKey) -> bool {
    let Ok(opened) = ward_tenancy::db::open_now(path, key, false, ward_tenancy::Durability::Full)
    else {
        return false;
    };
    let canary = String::from_utf8_lossy(CANARY).into_owned();
    opened
        .conn
        .first_row_now(
            "SELECT count(*) FROM patients WHERE full_name = ?1",
            [canary],
        )
        .ok()
        .flatten()
        .and_then(|r| r.get::<i64>(0).ok())
        == Some(1)
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn close_reopen_within_grace_then_purge_after_it() {
    let s = setup().await;
    let control = &s.platform.control;
    let c = s.clinic("Acme Clinic").await;
    let other = s.clinic("Other Clinic").await;
    s.fill(&c, 5).await;
    // Leftovers a purge must also remove: an export and a backup folder.
    let exports = s.dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    std::fs::write(exports.join(format!("{}-1.export", c.id)), b"sealed").unwrap();
    // A real encrypted snapshot where backups live, and a copy of it somewhere Ward does
    // not control (an old replica object, a stolen disk): before the purge both are
    // readable with the clinic's key, which is what makes the purge's claim testable.
    let backup_dir = s.dir.path().join("backups/clinics").join(c.id.to_string());
    std::fs::create_dir_all(&backup_dir).unwrap();
    let snapshot = backup_dir.join("x.db");
    s.platform.tenants.snapshot(c.id, &snapshot).await.unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy.db");
    std::fs::copy(&snapshot, &copy).unwrap();
    let clinic_key = s.platform.tenants.data_key(c.id).await.unwrap();
    assert!(
        readable(&copy, &clinic_key),
        "the copy is a real backup of the clinic"
    );
    std::fs::remove_file(elsewhere.path().join("copy.db-wal")).ok();
    std::fs::remove_file(elsewhere.path().join("copy.db-shm")).ok();

    let ninety = retention_days(90);
    let closed = control
        .transition_clinic(
            c.id,
            Transition::Close,
            &Actor::user("owner"),
            "moving",
            ninety,
        )
        .await
        .unwrap();
    assert_eq!(closed.status, ClinicStatus::Closed);
    // Closed twice: refused.
    assert!(
        control
            .transition_clinic(c.id, Transition::Close, OPERATOR, "", ninety)
            .await
            .is_err()
    );

    // Day 89: reopening works; nothing is due.
    s.clock.advance(TimeDelta::days(89));
    assert!(s.purger().run(OPERATOR, true).await.unwrap().is_empty());
    let reopened = control
        .transition_clinic(
            c.id,
            Transition::Reopen,
            OPERATOR,
            "changed their mind",
            ninety,
        )
        .await
        .unwrap();
    assert_eq!(reopened.status, ClinicStatus::Active);

    // Closed again; 91 days later the reopen is refused and the purge runs.
    close_by_owner(control, c.id).await;
    s.clock.advance(TimeDelta::days(91));
    let err = control
        .transition_clinic(c.id, Transition::Reopen, OPERATOR, "", ninety)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("grace period"), "{err}");
    let dry = s.purger().run(OPERATOR, true).await.unwrap();
    assert_eq!(dry.len(), 1);
    assert!(!dry[0].done);
    assert!(
        s.platform.tenants.path_of(c.id).exists(),
        "a dry run deletes nothing"
    );
    assert!(snapshot.exists(), "a dry run keeps the backups");

    let done = s.purger().run(OPERATOR, false).await.unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].done);
    let tomb = control.tombstone(c.id).await.unwrap();
    assert_eq!(tomb.status, ClinicStatus::Purged);
    assert!(!tomb.has_key, "the wrapped key is destroyed");
    assert_eq!(tomb.name, "Acme Clinic");
    assert_eq!(tomb.closed_by.as_deref(), Some("user:owner"));
    assert!(tomb.closed_at.is_some() && tomb.purged_at.is_some());
    let clinics = s.dir.path().join("clinics");
    let left: Vec<_> = std::fs::read_dir(&clinics)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&c.id.to_string()))
        .collect();
    assert!(left.is_empty(), "clinic files left: {left:?}");
    assert!(!backup_dir.exists());
    // The copy outside opens with no key Ward still has: the clinic's is gone, and
    // neither the control plane's nor another clinic's opens it.
    assert!(
        s.platform.tenants.data_key(c.id).await.is_err(),
        "Ward can no longer produce the clinic's key"
    );
    let master = ward_tenancy::MasterKey::from_hex(MASTER_HEX).unwrap();
    let keys_left = [
        ward_control::ControlPlane::key(&master),
        s.platform.tenants.data_key(other.id).await.unwrap(),
    ];
    for key in &keys_left {
        assert!(
            !readable(&copy, key),
            "a key Ward still has opened the copy"
        );
    }
    assert!(
        files_containing(s.dir.path(), CANARY).is_empty(),
        "the canary is in no file"
    );
    assert!(
        s.platform.tenants.get(c.id).await.is_err(),
        "the clinic cannot be opened"
    );
    // The other clinic is untouched; a second run has nothing to do.
    assert!(s.platform.tenants.path_of(other.id).exists());
    assert!(s.purger().run(OPERATOR, false).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_interrupted_after_the_key_went_completes_on_rerun() {
    let s = setup().await;
    let control = &s.platform.control;
    let c = s.clinic("Acme Clinic").await;
    s.fill(&c, 3).await;
    close_by_owner(control, c.id).await;
    s.clock.advance(TimeDelta::days(120));
    // The crash: step one (the key) committed, nothing else happened.
    control.destroy_clinic_key(c.id, OPERATOR).await.unwrap();
    s.platform.tenants.evict(c.id).await;
    assert!(s.platform.tenants.path_of(c.id).exists());
    assert!(!control.tombstone(c.id).await.unwrap().has_key);

    let done = s.purger().run(OPERATOR, false).await.unwrap();
    assert_eq!(done.len(), 1, "the re-run finishes the purge");
    assert!(!s.platform.tenants.path_of(c.id).exists());
    assert!(files_containing(s.dir.path(), CANARY).is_empty());
    assert!(s.purger().run(OPERATOR, false).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_and_resume_do_not_start_retention() {
    let s = setup().await;
    let control = &s.platform.control;
    let c = s.clinic("Acme Clinic").await;
    let r = retention_days(90);
    let x = control
        .transition_clinic(c.id, Transition::Suspend, OPERATOR, "unpaid", r)
        .await
        .unwrap();
    assert_eq!(x.status, ClinicStatus::Suspended);
    assert!(x.closed_at.is_none());
    s.clock.advance(TimeDelta::days(400));
    assert!(s.purger().run(OPERATOR, true).await.unwrap().is_empty());
    let x = control
        .transition_clinic(c.id, Transition::Resume, OPERATOR, "paid", r)
        .await
        .unwrap();
    assert_eq!(x.status, ClinicStatus::Active);
    assert!(
        control
            .transition_clinic(c.id, Transition::Reopen, OPERATOR, "", r)
            .await
            .is_err(),
        "an active clinic is not reopened"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_jobs_are_claimed_once_and_survive_a_stopped_worker() {
    let s = setup().await;
    let control = &s.platform.control;
    let c = s.clinic("Acme Clinic").await;
    let id = control
        .enqueue_job("export", Some(c.id), r#"{"user_id":"u1"}"#)
        .await
        .unwrap();
    assert!(control.claim_job("other").await.unwrap().is_none());
    let job = control.claim_job("export").await.unwrap().unwrap();
    assert_eq!((job.id, job.clinic_id, job.attempts), (id, Some(c.id), 1));
    assert!(
        control.claim_job("export").await.unwrap().is_none(),
        "claimed once"
    );
    // The worker stopped mid-job: a new worker puts it back and runs it again.
    assert_eq!(control.requeue_running("export").await.unwrap(), 1);
    let again = control.claim_job("export").await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (id, 2));
    control.finish_job(id, None).await.unwrap();
    assert_eq!(control.requeue_running("export").await.unwrap(), 0);
    assert!(control.claim_job("export").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_restore_copies_of_the_control_plane_do_not_outlive_the_backups() {
    let s = setup().await;
    let now = ward_core::Clock::now(&s.clock);
    let name = |age: TimeDelta| {
        format!(
            "control.db.pre-restore-{}",
            (now - age).format("%Y%m%dT%H%M%S%.3fZ")
        )
    };
    let old = s.dir.path().join(name(TimeDelta::days(36)));
    let recent = s.dir.path().join(name(TimeDelta::days(2)));
    std::fs::write(&old, b"an old copy").unwrap();
    std::fs::write(&recent, b"a recent copy").unwrap();
    // A dry run touches nothing.
    s.purger().run(OPERATOR, true).await.unwrap();
    assert!(old.exists());
    s.purger().run(OPERATOR, false).await.unwrap();
    assert!(
        !old.exists(),
        "a copy older than the backups' retention is deleted"
    );
    assert!(recent.exists(), "a recent copy is kept to undo a restore");
    assert!(
        s.dir.path().join("control.db").exists(),
        "the live file is untouched"
    );
}
