//! Measures the audit trail: what a page pays to note a view, how fast rows are written,
//! how fast the viewer's filters are over a million rows, and how long `verify_chain`
//! takes over them. A measurement, not a test: `scripts/bench-audit` runs it in release.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark program: it reports on stdout and stops on the first failure"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use libsql::Connection;
use ward_clinic::audit::{self, Action, Actor, Diff, Entry, ReadAuditConfig, ReadAuditor};
use ward_control::{MasterKeySource, Platform};
use ward_core::{Role, SystemClock, format_time, parse_time};
use ward_tenancy::StoreConfig;

/// Rows in the viewer's table; `AUDIT_BENCH_ROWS` overrides (a quick run).
fn rows() -> i64 {
    std::env::var("AUDIT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}
const BATCH: i64 = 10_000;

fn entry(n: i64) -> Entry {
    let at = parse_time("2025-01-01T00:00:00.000Z").unwrap() + TimeDelta::seconds(n * 30);
    let user = n % 20;
    let actor = Actor::User {
        id: format!("user-{user:02}"),
        name: format!("Staff member {user}"),
        role: if user == 0 { Role::Owner } else { Role::Doctor },
    };
    let patient = format!("patient-{:05}", (n * 7_919) % 10_000);
    let action = match n % 100 {
        0..70 => Action::View,
        70..85 => Action::Update,
        85..93 => Action::Create,
        93..98 => Action::Print,
        _ => Action::Export,
    };
    let mut e = Entry::new(at, actor, action)
        .entity("patient", patient)
        .ip("192.0.2.10");
    if action == Action::Update {
        e = e.diff(Diff::new().field("phone", "555-0100", format!("555-{:04}", n % 10_000)));
    }
    e
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::open(
        StoreConfig::new(dir.path()),
        MasterKeySource::Configured("42".repeat(32)),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let clinic = platform
        .control
        .create_clinic("Bench", None, &platform.tenants, "bench")
        .await
        .unwrap();

    // 1. The request path: note_view is a validation and a channel send.
    let auditor = ReadAuditor::start(platform.tenants.clone(), ReadAuditConfig::default());
    let notes = 200_000.min(rows() / 2);
    let entries: Vec<Entry> = (0..notes).map(|n| entry(n * 100)).collect();
    let started = Instant::now();
    for e in entries {
        auditor.note_view(clinic.id, e).unwrap();
    }
    let per_note = started.elapsed() / notes as u32;
    let started = Instant::now();
    let flushed = auditor.flush().await;
    let flush_time = started.elapsed();
    println!("note_view (request path):        {per_note:?} per view");
    println!(
        "read auditor: {} views written in {flush_time:?} ({:.0} rows/s)",
        flushed.written,
        flushed.written as f64 / flush_time.as_secs_f64()
    );

    let tenant = platform.tenants.get(clinic.id).await.unwrap();
    tenant
        .with(|conn| async move {
            // 2. A change and its audit row, one transaction each (the fsync dominates).
            let n = 200;
            let started = Instant::now();
            for i in 0..n {
                audit::in_transaction(&conn, |tx| async move {
                    audit::record(&tx, &entry(notes + i)).await
                })
                .await
                .unwrap();
            }
            println!(
                "record in its own transaction:   {:?} per row (synchronous=FULL)",
                started.elapsed() / n as u32
            );

            // 3. Fill to a million rows, 10,000 per transaction.
            let started = Instant::now();
            let mut next = audit::head(&conn).await.unwrap().map_or(0, |h| h.seq);
            let total = rows();
            while next < total {
                let end = (next + BATCH).min(total);
                audit::in_transaction(&conn, |tx| async move {
                    for i in next..end {
                        audit::record(&tx, &entry(i)).await?;
                    }
                    Ok::<_, audit::AuditError>(())
                })
                .await
                .unwrap();
                next = end;
            }
            let fill = started.elapsed();
            println!(
                "record in batches of {BATCH}:    {:?} per row",
                fill / (total - notes - 200).max(1) as u32
            );

            // 4. The viewer's filters, newest first, 50 per page.
            let mid = format_time(parse_time("2025-06-01T00:00:00.000Z").unwrap());
            let late = format_time(parse_time("2025-06-08T00:00:00.000Z").unwrap());
            let queries: [(&str, &str, Vec<libsql::Value>); 8] = [
                ("newest", "ORDER BY seq DESC LIMIT 50", vec![]),
                ("by actor", "WHERE actor_id = ?1 ORDER BY seq DESC LIMIT 50", vec!["user-07".into()]),
                (
                    "by patient",
                    "WHERE entity_type = 'patient' AND entity_id = ?1 ORDER BY seq DESC LIMIT 50",
                    vec!["patient-04242".into()],
                ),
                ("by action (rare)", "WHERE action = 'export' ORDER BY seq DESC LIMIT 50", vec![]),
                (
                    "by action, deep page",
                    "WHERE action = 'print' AND seq < ?1 ORDER BY seq DESC LIMIT 50",
                    vec![500_000.into()],
                ),
                (
                    "date range (a week)",
                    "WHERE at >= ?1 AND at < ?2 ORDER BY seq DESC LIMIT 50",
                    vec![mid.clone().into(), late.clone().into()],
                ),
                (
                    "actor + action + week",
                    "WHERE actor_id = ?1 AND action = 'update' AND at >= ?2 AND at < ?3 ORDER BY seq DESC LIMIT 50",
                    vec!["user-03".into(), mid.clone().into(), late.clone().into()],
                ),
                (
                    "patient + action",
                    "WHERE entity_type = 'patient' AND entity_id = ?1 AND action = 'view' ORDER BY seq DESC LIMIT 50",
                    vec!["patient-00001".into()],
                ),
            ];
            for (name, tail, params) in queries {
                let sql = format!("SELECT seq, at, actor_name, action, entity_id, diff FROM audit_log {tail}");
                let plan = plan(&conn, &sql, params.clone()).await;
                let (time, rows) = time_query(&conn, &sql, params).await;
                println!("viewer {name:<22} {time:>10?} ({rows} rows)  [{plan}]");
            }

            // 5. Verifying a million rows.
            let head = audit::head(&conn).await.unwrap();
            let started = Instant::now();
            let report = audit::verify_chain(&conn, head).await.unwrap();
            assert!(report.is_clean());
            println!(
                "verify_chain over {} rows:  {:?}",
                report.rows,
                started.elapsed()
            );
        })
        .await;
    drop(tenant);
    let size = std::fs::metadata(platform.tenants.path_of(clinic.id))
        .map(|m| m.len())
        .unwrap_or(0)
        + std::fs::metadata(format!(
            "{}-wal",
            platform.tenants.path_of(clinic.id).display()
        ))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "clinic file with {} audit rows: {} MiB",
        rows(),
        size / (1024 * 1024)
    );
    platform.tenants.shutdown(Duration::from_secs(30)).await;
}

async fn time_query(conn: &Connection, sql: &str, params: Vec<libsql::Value>) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let mut rows = conn.query(sql, params.clone()).await.unwrap();
        count = 0;
        while rows.next().await.unwrap().is_some() {
            count += 1;
        }
        best = best.min(started.elapsed());
    }
    (best, count)
}

async fn plan(conn: &Connection, sql: &str, params: Vec<libsql::Value>) -> String {
    let mut rows = conn
        .query(&format!("EXPLAIN QUERY PLAN {sql}"), params)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.unwrap() {
        out.push(row.get::<String>(3).unwrap());
    }
    out.join("; ")
}
