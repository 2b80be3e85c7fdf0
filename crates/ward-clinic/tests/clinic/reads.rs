//! Read auditing: views queued on the request path, written in batches, never lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ward_clinic::audit::{self, Action, ReadAuditConfig, ReadAuditor};
use ward_control::ClinicRecord;

use crate::support::{TestPlatform, doctor, start};

fn view(patient: usize) -> audit::Entry {
    audit::Entry::new(start(), doctor(), Action::View)
        .entity("patient", format!("patient-{patient}"))
        .ip("192.0.2.7")
}

fn count(conn: &ward_tenancy::Db) -> i64 {
    let mut rows = conn.query("SELECT count(*) FROM audit_log", ()).unwrap();
    rows.next().unwrap().unwrap().get(0).unwrap()
}

async fn rows_of(t: &TestPlatform, clinic: &ClinicRecord) -> i64 {
    t.with(clinic, |conn| count(&conn)).await
}

/// A platform with one clinic, "Acme", and a read auditor configured so over its clinics.
async fn audited_acme(config: ReadAuditConfig) -> (TestPlatform, ClinicRecord, ReadAuditor) {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Acme").await;
    let auditor = ReadAuditor::start(t.platform.tenants.clone(), config);
    (t, clinic, auditor)
}

#[tokio::test(flavor = "multi_thread")]
async fn noted_views_are_written_within_about_a_tenth_of_a_second() {
    let (t, clinic, auditor) = audited_acme(ReadAuditConfig::default()).await;
    let noted = Instant::now();
    for p in 0..5 {
        auditor.note_view(clinic.id, view(p)).unwrap();
    }
    // Poll the clinic until the rows are there (the writer has no other signal to wait on).
    let tenant = t.platform.tenants.get(clinic.id).await.unwrap();
    let written = loop {
        if tenant.with(|conn| count(&conn)).await == 5 {
            break noted.elapsed();
        }
        assert!(
            noted.elapsed() < Duration::from_secs(2),
            "views not written after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    eprintln!("5 views written {written:?} after being noted");
    // The writer books the commit just after it lands.
    while auditor.stats().written < 5 {
        assert!(noted.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        auditor.stats().batches,
        1,
        "five views noted together, one commit"
    );
    // 100 ms of batching plus one commit; generous for a loaded machine.
    assert!(written < Duration::from_millis(600), "{written:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_views_from_many_tasks_are_all_written_exactly_once() {
    let t = TestPlatform::new().await;
    let clinics = [
        t.clinic("Acme").await,
        t.clinic("Bravo").await,
        t.clinic("Charlie").await,
    ];
    let auditor = ReadAuditor::start(t.platform.tenants.clone(), ReadAuditConfig::default());
    let ids = Arc::new(clinics.iter().map(|c| c.id).collect::<Vec<_>>());
    const TASKS: usize = 50;
    const PER_TASK: usize = 200;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let auditor = auditor.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                let mut spent = Duration::ZERO;
                for i in 0..PER_TASK {
                    let entry = view(task * PER_TASK + i);
                    let clinic = ids[(task + i) % ids.len()];
                    let started = Instant::now();
                    auditor.note_view(clinic, entry).unwrap();
                    spent += started.elapsed();
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                spent
            })
        })
        .collect();
    let mut spent = Duration::ZERO;
    for task in tasks {
        spent += task.await.unwrap();
    }
    let per_note = spent / (TASKS * PER_TASK) as u32;
    eprintln!("note_view: {per_note:?} per call on the request path");
    let outcome = auditor.flush().await;
    assert_eq!(outcome.pending, 0);
    assert_eq!(auditor.stats().noted, 10_000);
    assert_eq!(auditor.stats().written, 10_000);

    let mut total = 0;
    for clinic in &clinics {
        let report = t
            .with(clinic, |conn| audit::verify_chain(&conn, None).unwrap())
            .await;
        assert!(report.is_clean(), "{report:?}");
        total += report.rows;
    }
    assert_eq!(total, 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn flush_writes_what_is_still_queued() {
    let (t, clinic, auditor) = audited_acme(ReadAuditConfig {
        // Nothing would be written for a minute without the flush.
        max_delay: Duration::from_secs(60),
        ..ReadAuditConfig::default()
    })
    .await;
    for p in 0..25 {
        auditor.note_view(clinic.id, view(p)).unwrap();
    }
    let outcome = auditor.flush().await;
    assert_eq!((outcome.written, outcome.pending), (25, 0));
    assert_eq!(rows_of(&t, &clinic).await, 25);
    // The views' own commit does not wait for the disk, but the connection is back to
    // full durability for every other write.
    let synchronous = t
        .with(&clinic, |conn| {
            let mut rows = conn.query("PRAGMA synchronous", ())?;
            rows.next()?.unwrap().get::<i64>(0)
        })
        .await
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous=FULL after a batch of views");
}

#[tokio::test(flavor = "multi_thread")]
async fn views_of_an_unavailable_clinic_wait_and_are_not_dropped() {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Acme").await;
    let other = t.clinic("Bravo").await;
    let config = ReadAuditConfig {
        retry_after: Duration::from_millis(20),
        flush_attempts: 2,
        ..ReadAuditConfig::default()
    };
    let auditor = ReadAuditor::start(t.platform.tenants.clone(), config);
    let lock = t.platform.tenants.lock(clinic.id, "restore").await.unwrap();
    for p in 0..10 {
        auditor.note_view(clinic.id, view(p)).unwrap();
        auditor.note_view(other.id, view(p)).unwrap();
    }
    let outcome = auditor.flush().await;
    assert_eq!(
        (outcome.written, outcome.pending),
        (10, 10),
        "the available clinic is written, the locked one kept"
    );
    assert!(auditor.stats().failed_writes >= 2);

    drop(lock);
    // The worker may write them on its own before the flush does: either way none is
    // left waiting and every one is in the log.
    let outcome = auditor.flush().await;
    assert_eq!(outcome.pending, 0);
    assert!(outcome.written <= 10, "{}", outcome.written);
    assert_eq!(rows_of(&t, &clinic).await, 10);
    assert_eq!(rows_of(&t, &other).await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_the_log_would_refuse_is_refused_when_noted() {
    let (t, clinic, auditor) = audited_acme(ReadAuditConfig::default()).await;
    let mut bad = view(1);
    bad.entity_type = None;
    assert!(auditor.note_view(clinic.id, bad).is_err());
    auditor.note_view(clinic.id, view(2)).unwrap();
    assert_eq!(auditor.flush().await.pending, 0);
    assert_eq!(rows_of(&t, &clinic).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_noted_through_its_handle_is_written_without_opening_the_clinic_again() {
    let (t, clinic, auditor) = audited_acme(ReadAuditConfig::default()).await;
    let store = t.platform.tenants.clone();
    let tenant = store.get(clinic.id).await.unwrap();
    auditor.note_view_in(&tenant, view(1)).unwrap();
    // The request ends and the clinic leaves the cache before the batch is due.
    drop(tenant);
    store.evict(clinic.id).await;
    let opens = store.stats().opens;
    let flushed = auditor.flush().await;
    assert_eq!((flushed.written, flushed.pending), (1, 0));
    assert_eq!(
        store.stats().opens,
        opens,
        "writing the view opened the clinic again"
    );
    // The row is in the clinic's own log.
    assert_eq!(rows_of(&t, &clinic).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_handle_is_not_used_once_an_operator_has_locked_the_clinic() {
    let (t, clinic, auditor) = audited_acme(ReadAuditConfig {
        flush_attempts: 1,
        ..ReadAuditConfig::default()
    })
    .await;
    let store = t.platform.tenants.clone();
    let tenant = store.get(clinic.id).await.unwrap();
    auditor.note_view_in(&tenant, view(1)).unwrap();
    drop(tenant);
    let lock = store.lock(clinic.id, "test").await.unwrap();
    // Under the lock the view waits (the store refuses the clinic) instead of going
    // through the handle the request had.
    let flushed = auditor.flush().await;
    assert_eq!((flushed.written, flushed.pending), (0, 1));
    // Closing happens on a blocking thread: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.stats().open_handles > 0 {
        assert!(Instant::now() < deadline, "the held handle was kept open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(lock);
    let flushed = auditor.flush().await;
    assert_eq!((flushed.written, flushed.pending), (1, 0));
    assert_eq!(rows_of(&t, &clinic).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clinic_whose_write_is_held_up_does_not_hold_up_the_others() {
    let t = TestPlatform::new().await;
    let mut clinics = Vec::new();
    for name in ["Busy", "Bern", "Cork", "Dax", "Enna", "Faro"] {
        clinics.push(t.clinic(name).await);
    }
    let auditor = ReadAuditor::start(
        t.platform.tenants.clone(),
        ReadAuditConfig {
            max_delay: Duration::from_millis(10),
            parallel: 2,
            ..ReadAuditConfig::default()
        },
    );
    // Something holds the first clinic's connection (a long page, a slow disk) until told.
    let busy = t.platform.tenants.get(clinics[0].id).await.unwrap();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (holding, is_holding) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn({
        let busy = busy.clone();
        async move {
            busy.with(move |_conn| {
                let _ = holding.send(());
                held.recv_timeout(Duration::from_secs(20)).ok()
            })
            .await
        }
    });
    is_holding.await.unwrap();
    // Its view is the oldest, so its write starts first and cannot finish.
    auditor.note_view_in(&busy, view(0)).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    for (i, clinic) in clinics.iter().enumerate().skip(1) {
        auditor.note_view(clinic.id, view(i)).unwrap();
    }
    // Every other clinic's view is written while the first one's is still waiting.
    let deadline = Instant::now() + Duration::from_secs(5);
    for clinic in &clinics[1..] {
        while rows_of(&t, clinic).await == 0 {
            assert!(
                Instant::now() < deadline,
                "{}'s view waited behind a clinic that could not be written",
                clinic.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(auditor.stats().written, 5);
    release.send(()).unwrap();
    holder.await.unwrap();
    let flushed = auditor.flush().await;
    assert_eq!(flushed.pending, 0);
    assert_eq!(rows_of(&t, &clinics[0]).await, 1);
    assert_eq!(auditor.stats().written, 6);
}
