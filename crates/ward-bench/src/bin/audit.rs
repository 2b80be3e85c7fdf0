//! Measures the audit trail: what a page pays to note a view, how fast rows are written,
//! how fast the viewer's filters are over a million rows, and how long `verify_chain`
//! takes over them. A measurement, not a test: `scripts/bench-audit` runs it in release.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::TimeDelta;
use clap::Parser;
use ward_clinic::audit::{self, Action, Actor, Diff, Entry, Filter, ReadAuditConfig, ReadAuditor};
use ward_control::{MasterKeySource, Platform};
use ward_core::{Role, SystemClock, parse_time};
use ward_tenancy::StoreConfig;

#[derive(Debug, Parser)]
struct Args {
    /// Rows in the viewer's table (fewer for a quick run).
    #[arg(long, env = "AUDIT_BENCH_ROWS", default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1_000..))]
    rows: i64,
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

const BATCH: i64 = 10_000;

fn entry(n: i64) -> Entry {
    let start = parse_time("2025-01-01T00:00:00.000Z").unwrap_or_default();
    let at = start + TimeDelta::seconds(n * 30);
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
async fn main() -> anyhow::Result<()> {
    // The memory settings `ward serve` runs with, so the figures are the server's.
    ward_tenancy::memory::small_pages()?;
    let args = Args::parse();
    let total = args.rows;
    let dir = tempfile::tempdir()?;
    let platform = Platform::open(
        StoreConfig::new(dir.path()),
        MasterKeySource::Configured("42".repeat(32)),
        Arc::new(SystemClock),
    )
    .await?;
    let clinic = platform
        .control
        .create_clinic(
            "Bench",
            None,
            &platform.tenants,
            &ward_core::Actor::Operator,
        )
        .await?;

    // 1. The request path: note_view is a validation and a channel send.
    let auditor = ReadAuditor::start(platform.tenants.clone(), ReadAuditConfig::default());
    let notes = 200_000.min(total / 2);
    let entries: Vec<Entry> = (0..notes).map(|n| entry(n * 100)).collect();
    let started = Instant::now();
    for e in entries {
        auditor.note_view(clinic.id, e)?;
    }
    let per_note = started.elapsed() / notes as u32;
    let started = Instant::now();
    let flushed = auditor.flush().await;
    let flush_time = started.elapsed();
    say(format_args!(
        "note_view (request path):        {per_note:?} per view"
    ));
    say(format_args!(
        "read auditor: {} views written in {flush_time:?} ({:.0} rows/s)",
        flushed.written,
        flushed.written as f64 / flush_time.as_secs_f64()
    ));

    let tenant = platform.tenants.get(clinic.id).await?;
    tenant
        .with(|conn| {
            // 2. A change and its audit row, one transaction each (the fsync dominates).
            let n = 200;
            let started = Instant::now();
            for i in 0..n {
                audit::in_transaction(&conn, |tx| audit::record(&tx, &entry(notes + i)))?;
            }
            say(format_args!(
                "record in its own transaction:   {:?} per row (synchronous=FULL)",
                started.elapsed() / n as u32
            ));

            // 3. Fill to a million rows, 10,000 per transaction.
            let started = Instant::now();
            let mut next = audit::head(&conn)?.map_or(0, |h| h.seq);
            while next < total {
                let end = (next + BATCH).min(total);
                audit::in_transaction(&conn, |tx| {
                    for i in next..end {
                        audit::record(&tx, &entry(i))?;
                    }
                    Ok::<_, audit::AuditError>(())
                })?;
                next = end;
            }
            let fill = started.elapsed();
            say(format_args!(
                "record in batches of {BATCH}:    {:?} per row",
                fill / (total - notes - 200).max(1) as u32
            ));

            // 4. The viewer's filters, newest first, 50 per page.
            let mid = parse_time("2025-06-01T00:00:00.000Z").context("a fixed time")?;
            let week = Some(mid + TimeDelta::days(7));
            let actor = |a: &str| Some(a.to_owned());
            let patient = |p: &str| Some(("patient".to_owned(), p.to_owned()));
            let queries: [(&str, Filter, Option<i64>); 9] = [
                ("newest", Filter::default(), None),
                ("newest, deep page", Filter::default(), Some(total / 2)),
                (
                    "by actor",
                    Filter {
                        actor_id: actor("user-07"),
                        ..Filter::default()
                    },
                    None,
                ),
                (
                    "by patient",
                    Filter {
                        entity: patient("patient-04242"),
                        ..Filter::default()
                    },
                    None,
                ),
                (
                    "by action (rare)",
                    Filter {
                        action: Some(Action::Export),
                        ..Filter::default()
                    },
                    None,
                ),
                (
                    "by action, deep page",
                    Filter {
                        action: Some(Action::Print),
                        ..Filter::default()
                    },
                    Some(total / 2),
                ),
                (
                    "a week",
                    Filter {
                        from: Some(mid),
                        until: week,
                        ..Filter::default()
                    },
                    None,
                ),
                (
                    "actor + action + week",
                    Filter {
                        actor_id: actor("user-03"),
                        action: Some(Action::Update),
                        from: Some(mid),
                        until: week,
                        ..Filter::default()
                    },
                    None,
                ),
                (
                    "patient + action",
                    Filter {
                        entity: patient("patient-00001"),
                        action: Some(Action::View),
                        ..Filter::default()
                    },
                    None,
                ),
            ];
            for (name, filter, before) in queries {
                let mut best = Duration::MAX;
                let mut rows = 0;
                for _ in 0..5 {
                    let started = Instant::now();
                    rows = audit::search(&conn, &filter, before, 50)?.len();
                    best = best.min(started.elapsed());
                }
                say(format_args!("viewer {name:<22} {best:>10?} ({rows} rows)"));
            }

            // 5. Verifying a million rows.
            let head = audit::head(&conn)?;
            let started = Instant::now();
            let report = audit::verify_chain(&conn, head)?;
            anyhow::ensure!(report.is_clean(), "the audit chain does not verify");
            say(format_args!(
                "verify_chain over {} rows:  {:?}",
                report.rows,
                started.elapsed()
            ));
            Ok::<_, anyhow::Error>(())
        })
        .await?;
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
    say(format_args!(
        "clinic file with {} audit rows: {} MiB",
        total,
        size / (1024 * 1024)
    ));
    platform.tenants.shutdown(Duration::from_secs(30)).await;
    Ok(())
}
