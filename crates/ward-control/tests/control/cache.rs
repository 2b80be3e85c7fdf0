//! The bounded handle cache: cap, reopening, single open, idle eviction, shutdown.

use std::sync::Arc;
use std::time::Duration;

use ward_tenancy::TenantError;

use crate::support::{
    TestPlatform, close_all, eventually, get_setting, put_setting, settle, wal_len,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_cap_holds_under_churn_and_evicted_clinics_reopen_with_their_data() {
    const CAP: u64 = 8;
    let t = TestPlatform::with(|c| c.max_open = CAP).await;
    let store = t.store();
    let mut ids = Vec::new();
    for i in 0..40 {
        let c = t.clinic(&format!("Clinic {i}")).await;
        put_setting(store, c.id, "owner", &format!("owner of clinic {i}")).await;
        ids.push(c.id);
    }
    store.run_pending().await;
    assert!(store.stats().cached <= CAP, "{:?}", store.stats());

    // Churn: several passes in different orders, checking each clinic's own data.
    for round in 0..3 {
        for (i, id) in ids.iter().enumerate().rev().step_by(round + 1) {
            assert_eq!(
                get_setting(store, *id, "owner").await.as_deref(),
                Some(format!("owner of clinic {i}").as_str())
            );
        }
        store.run_pending().await;
        let stats = store.stats();
        assert!(stats.cached <= CAP, "round {round}: {stats:?}");
    }
    settle(store, "the evicted handles are closed", |s| {
        s.stats().open_handles as u64 <= CAP
    })
    .await;
    let stats = store.stats();
    assert!(stats.opens > 40, "evicted clinics were reopened: {stats:?}");

    // Clinics no longer open have nothing left in their WAL: eviction closed them
    // cleanly, checkpoint included.
    let closed: Vec<_> = ids.iter().filter(|id| !store.is_open(**id)).collect();
    assert!(closed.len() >= 40 - CAP as usize, "{} closed", closed.len());
    for id in closed {
        assert_eq!(
            wal_len(&store.path_of(*id)),
            0,
            "clinic {id} closed with a WAL"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_clinic_stays_open_while_clinics_used_once_pass_through() {
    const CAP: u64 = 4;
    let t = TestPlatform::with(|c| c.max_open = CAP).await;
    let store = t.store();
    let busy = t.clinic("Busy").await;
    put_setting(store, busy.id, "owner", "the busy one").await;
    let mut others = Vec::new();
    for i in 0..24 {
        others.push(t.clinic(&format!("Once {i}")).await.id);
    }
    let mut all = others.clone();
    all.push(busy.id);
    close_all(store, &all).await;
    for _ in 0..20 {
        get_setting(store, busy.id, "owner").await;
    }
    let first = Arc::downgrade(&store.get(busy.id).await.unwrap());

    // Between two uses of the busy clinic, more clinics than the cache holds are used
    // once each: least-recently-used eviction would close the busy one every time.
    for group in others.chunks(8) {
        for id in group {
            let got = get_setting(store, *id, "owner").await;
            assert_eq!(got, None, "a new clinic has no owner setting");
        }
        store.run_pending().await;
        assert_eq!(
            get_setting(store, busy.id, "owner").await.as_deref(),
            Some("the busy one")
        );
        assert!(store.stats().cached <= CAP, "{:?}", store.stats());
    }
    let now = store.get(busy.id).await.unwrap();
    let kept = first.upgrade().is_some_and(|h| Arc::ptr_eq(&h, &now));
    assert!(kept, "the busy clinic was closed and opened again");
    // The clinics used once were opened for their page and closed after it.
    settle(store, "the passing handles are closed", |s| {
        s.stats().open_handles as u64 <= CAP
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_first_uses_open_a_clinic_once() {
    let t = TestPlatform::new().await;
    let clinic = t.clinic("Busy").await;
    let store = t.store().clone();
    close_all(&store, &[clinic.id]).await;
    let before = store.stats().opens;

    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.get(clinic.id).await.unwrap()
            })
        })
        .collect();
    let mut handles = Vec::new();
    for task in tasks {
        handles.push(task.await.unwrap());
    }
    assert_eq!(store.stats().opens - before, 1, "{:?}", store.stats());
    assert!(handles.iter().all(|h| Arc::ptr_eq(h, &handles[0])));
    assert_eq!(store.stats().open_handles, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_clinic_is_closed_and_its_wal_removed() {
    let t = TestPlatform::with(|c| c.idle_timeout = Duration::from_millis(200)).await;
    let clinic = t.clinic("Sleepy").await;
    let store = t.store();
    put_setting(store, clinic.id, "k", "v").await;
    let path = store.path_of(clinic.id);
    assert!(wal_len(&path) > 0, "the write is in the WAL");
    assert!(store.is_open(clinic.id));
    assert_eq!(store.stats().open_handles, 1);

    // Idleness is measured by the cache's own clock: real time has to pass.
    tokio::time::sleep(Duration::from_millis(400)).await;
    settle(store, "the idle handle is closed", |s| {
        s.stats().cached == 0 && s.stats().open_handles == 0
    })
    .await;
    assert!(!store.is_open(clinic.id));
    assert_eq!(wal_len(&path), 0, "closing did not checkpoint the WAL");
    assert_eq!(
        get_setting(store, clinic.id, "k").await.as_deref(),
        Some("v")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_every_handle_and_refuses_new_work() {
    let t = TestPlatform::new().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = t.clinic(&format!("Clinic {i}")).await;
        put_setting(t.store(), c.id, "k", "v").await;
        ids.push(c.id);
    }
    let store = t.store().clone();
    assert_eq!(store.stats().open_handles, 5);

    // A handle still in use is waited for, not torn away.
    let held = store.get(ids[0]).await.unwrap();
    let shutdown = tokio::spawn({
        let store = store.clone();
        async move { store.shutdown(Duration::from_secs(10)).await }
    });
    eventually("the unused handles are closed", || {
        store.stats().open_handles == 1
    })
    .await;
    assert!(!shutdown.is_finished());
    assert!(matches!(
        store.get(ids[1]).await,
        Err(TenantError::ShuttingDown)
    ));
    drop(held);
    assert_eq!(shutdown.await.unwrap(), 0);
    assert_eq!(store.stats().open_handles, 0);
    for id in &ids {
        assert!(!store.is_open(*id));
        assert_eq!(wal_len(&store.path_of(*id)), 0);
    }
    assert!(matches!(
        store.get(ids[0]).await,
        Err(TenantError::ShuttingDown)
    ));
    assert!(matches!(
        store.migrate_clinic(ids[0]).await,
        Err(TenantError::ShuttingDown)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_reports_handles_still_in_use_at_its_deadline() {
    let t = TestPlatform::new().await;
    let c = t.clinic("Stuck").await;
    let held = t.store().get(c.id).await.unwrap();
    assert_eq!(t.store().shutdown(Duration::from_millis(50)).await, 1);
    drop(held);
    let store = t.store();
    eventually("the last handle is closed", || {
        store.stats().open_handles == 0
    })
    .await;
}

/// Descriptors open in this process right now.
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn under_churn_past_the_cap_no_request_meets_emfile() {
    // Each test runs in a process of its own (nextest), so lowering this process's
    // open-file limit touches no other test.
    const BUDGET: u64 = 24;
    const CAP: u64 = 20;
    let t = TestPlatform::with(|c| {
        c.max_open = CAP;
        c.max_handles = Some(BUDGET);
    })
    .await;
    let store = t.store().clone();
    let mut ids = Vec::new();
    for i in 0..80 {
        let c = t.clinic(&format!("Clinic {i}")).await;
        put_setting(&store, c.id, "owner", &format!("owner of clinic {i}")).await;
        ids.push((c.id, i));
    }
    // Room for what is open now, the budget's handles at four descriptors each, and a
    // little for the runtime: one handle past the budget would not fit for long.
    let limit = open_fds() + BUDGET * 4 + 16;
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(limit, hard).unwrap();

    // 64 requests at once, each holding its clinic a moment after its query (as a page
    // still rendering, or views waiting for the audit writer, keep a handle past its
    // eviction): far more handles wanted at once than the budget holds.
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for worker in 0..64usize {
        let (store, ids, peak) = (store.clone(), ids.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for round in 0..25usize {
                let (id, i) = ids[(worker * 31 + round * 17) % ids.len()];
                let tenant = match store.get(id).await {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(e.to_string());
                        continue;
                    }
                };
                let owner = tenant
                    .with(|c| {
                        c.query("SELECT value FROM settings WHERE key = 'owner'", ())?
                            .next()?
                            .map(|r| r.get::<String>(0))
                            .transpose()
                    })
                    .await;
                match owner {
                    Ok(Some(o)) if o == format!("owner of clinic {i}") => {}
                    other => errors.push(format!("{other:?}")),
                }
                peak.fetch_max(
                    store.stats().open_handles,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis((round % 4) as u64)).await;
                drop(tenant);
            }
            errors
        }));
    }
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    assert_eq!(errors, Vec::<String>::new(), "requests failed");
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed) as u64;
    assert!(
        peak <= BUDGET,
        "{peak} handles were open at once, over the budget of {BUDGET}"
    );
    // The budget was what held: more handles than the cache cap were open at once.
    assert!(
        peak > CAP,
        "peak {peak}: the churn never went past the cache cap"
    );
    assert!(store.stats().opens > 80, "{:?}", store.stats());
}
