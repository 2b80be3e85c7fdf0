//! One clinic's slow database work does not hold up another clinic.

use std::time::{Duration, Instant};

use crate::support::TestPlatform;

/// A query that keeps SQLite busy for a good fraction of a second.
const SLOW: &str = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < ?1) SELECT sum(i) FROM r";

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_slow_query_in_one_clinic_does_not_delay_another() {
    let t = TestPlatform::new().await;
    let a = t.clinic("Slow").await;
    let b = t.clinic("Quick").await;
    let store = t.store().clone();

    // Size the slow query on this machine so it takes about half a second.
    // B is closed, so its request includes a real open, as a first page view would.
    store.evict(b.id).await;
    store.run_pending().await;
    crate::support::eventually("clinic B is closed", || store.stats().open_handles == 1).await;

    let probe = 200_000_i64;
    let started = Instant::now();
    let tenant_a = store.get(a.id).await.unwrap();
    tenant_a
        .with(|c| c.query(SLOW, [probe])?.next().map(|_| ()))
        .await
        .unwrap();
    let per_row = started.elapsed().as_secs_f64() / probe as f64;
    let rows = ((0.5 / per_row) as i64).clamp(probe, 200_000_000);

    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let slow = tokio::spawn({
        let store = store.clone();
        async move {
            let tenant = store.get(a.id).await.unwrap();
            let began = Instant::now();
            tenant
                .with(|c| {
                    let _ = started_tx.send(());
                    c.query(SLOW, [rows])?.next().map(|_| ())
                })
                .await
                .unwrap();
            began.elapsed()
        }
    });
    started_rx.await.unwrap();

    // Clinic B's work runs on the runtime's only worker while A's query occupies a thread.
    let quick = tokio::spawn({
        let store = store.clone();
        async move {
            let began = Instant::now();
            let tenant = store.get(b.id).await.unwrap();
            tenant
                .with(|c| c.execute("INSERT INTO settings (key, value) VALUES ('k', 'v')", ()))
                .await
                .unwrap();
            began.elapsed()
        }
    });
    let quick_took = quick.await.unwrap();
    let slow_still_running = !slow.is_finished();
    let slow_took = slow.await.unwrap();

    assert!(
        slow_took >= Duration::from_millis(150),
        "the slow query was not slow enough to show anything ({slow_took:?})"
    );
    assert!(
        slow_still_running,
        "clinic B finished only after clinic A ({quick_took:?} vs {slow_took:?})"
    );
    assert!(
        quick_took * 4 < slow_took,
        "clinic B waited for clinic A: {quick_took:?} vs {slow_took:?}"
    );
}
