//! The replica's numbers, printed beside their targets: how long a commit takes to be
//! stored with many clinics writing, and how long a large clinic takes to restore to a
//! chosen second. Measurements, not tests.
//!
//! Run it with `scripts/bench-replica`, which starts a local S3 server (SeaweedFS) for it;
//! `--help` lists the knobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use ward_bench::Samples;
use ward_replica::{Replicator, restore_to};
use ward_tenancy::db::{self, Durability};
use ward_tenancy::keys::DataKey;
use ward_tenancy::sql::params;

/// Measures replication.
#[derive(Debug, Parser)]
#[command(name = "replica")]
struct Opts {
    /// Clinics writing at once.
    #[arg(long, default_value_t = 1_000)]
    clinics: usize,
    /// Seconds of writing.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Commits per second across all clinics.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Size of the clinic restored to a chosen second, in MiB.
    #[arg(long, default_value_t = 100)]
    restore_mib: u64,
    /// Simulated days of the storage run (0: skip it).
    #[arg(long, default_value_t = 30)]
    storage_days: u64,
    /// Seconds one simulated day lasts: the replica's retention (30 days) and its
    /// snapshot age (half of it) are scaled by the same factor, so what is kept is what
    /// 30 real days would keep.
    #[arg(long, default_value_t = 2.0)]
    day_secs: f64,
    /// Size of the clinic of the storage run, in MiB.
    #[arg(long, default_value_t = 100)]
    storage_mib: u64,
    /// MiB of rows changed on each working day (Monday to Friday) of the storage run.
    #[arg(long, default_value_t = 2)]
    change_mib: u64,
    /// Scratch folder (removed afterwards).
    #[arg(long, default_value = "bench-out/replica")]
    dir: PathBuf,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // The memory settings `ward serve` runs with, so the figures are the server's.
    ward_tenancy::memory::small_pages()?;
    let opts = Opts::parse();
    let _ = std::fs::remove_dir_all(&opts.dir);
    let data = opts.dir.join("data");
    std::fs::create_dir_all(data.join("clinics"))?;
    let target = ward_bench::bench_replica(&opts.dir)?;
    let replicator = Replicator::new(&data, target.clone(), Duration::from_secs(30 * 86_400))?;
    replicator.start();
    println!("replica target: {}", target.url);

    // Clinics, each with its first generation stored.
    let started = Instant::now();
    let mut conns = Vec::with_capacity(opts.clinics);
    for _ in 0..opts.clinics {
        let path = data
            .join("clinics")
            .join(format!("{}.db", uuid::Uuid::now_v7()));
        let opened = db::open_now(&path, &DataKey::random(), true, Durability::Full)?;
        opened
            .conn
            .execute_batch_now("CREATE TABLE t (i INTEGER PRIMARY KEY, body TEXT)")?;
        conns.push(opened.conn);
    }
    println!(
        "{} clinics created and replicated in {:.1} s",
        opts.clinics,
        started.elapsed().as_secs_f64()
    );
    let _ = replicator.take_lag_samples();

    // Writes spread over every clinic at the chosen rate.
    let conns = Arc::new(conns);
    let per_thread = opts.rate / 4;
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let conns = conns.clone();
        writers.push(std::thread::spawn(move || {
            let gap = Duration::from_secs_f64(1.0 / per_thread.max(1) as f64);
            let mut n = 0u64;
            let mut next = Instant::now();
            while Instant::now() < deadline {
                let i = ((n * 4 + w) as usize * 7919) % conns.len();
                let _ = conns[i].execute_now(
                    "INSERT INTO t (body) VALUES (?1)",
                    params![format!("visit note {n} {}", "x".repeat(300))],
                );
                n += 1;
                next += gap;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            n
        }));
    }
    let commits: u64 = writers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lags = Samples::with_capacity(commits as usize);
    for l in replicator.take_lag_samples() {
        lags.push(Duration::from_millis(u64::from(l)));
    }
    println!();
    println!("| what | target | measured |");
    println!("| --- | --- | --- |");
    println!(
        "| replication lag, commit -> stored, {} clinics, {} commits in {} s | p99 <= 1 s | p50 {:.0} ms, p99 {:.0} ms ({} commits shipped) |",
        opts.clinics,
        commits,
        opts.seconds,
        ms(lags.p50()),
        ms(lags.p99()),
        lags.len()
    );
    drop(conns);

    // An empty machine: every clinic rebuilt from the replica, one after another.
    let ids: Vec<String> = std::fs::read_dir(data.join("clinics"))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".db")
                .map(str::to_owned)
        })
        .collect();
    let rebuild_dir = opts.dir.join("rebuilt");
    std::fs::create_dir_all(&rebuild_dir)?;
    let started = Instant::now();
    let mut first = None;
    for id in &ids {
        restore_to(&target, id, None, &rebuild_dir.join(format!("{id}.db"))).await?;
        first.get_or_insert_with(|| started.elapsed());
    }
    let all = started.elapsed();
    println!(
        "| an empty machine: first clinic back / all {} clinics rebuilt | <= 60 s to first page (10,000 clinics) | first {:.0} ms, all {:.1} s ({:.1} ms a clinic; 10,000 would take about {:.0} s) |",
        ids.len(),
        ms(first.unwrap_or_default()),
        all.as_secs_f64(),
        ms(all) / ids.len().max(1) as f64,
        all.as_secs_f64() / ids.len().max(1) as f64 * 10_000.0
    );

    // A large clinic, restored to a second between two rounds of changes.
    let key = DataKey::random();
    let (path, id, conn) = new_clinic(&data, &key)?;
    let rows = rows_of(opts.restore_mib);
    for chunk in 0..rows.div_ceil(500) {
        conn.execute_batch_now("BEGIN")?;
        for j in 0..500 {
            let body: Vec<u8> = (0..4000)
                .map(|k| ((chunk * 500 + j) as u8) ^ (k as u8))
                .collect();
            conn.execute_now("INSERT INTO t (body) VALUES (?1)", params![body])?;
        }
        conn.execute_batch_now("COMMIT")?;
    }
    replicator.sync(&id).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let chosen = ward_replica::now_ms();
    let expected: i64 = conn
        .first_row_now("SELECT count(*) FROM t", ())?
        .context("a count")?
        .get(0)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.execute_now("DELETE FROM t WHERE i % 3 = 0", ())?;
    replicator.sync(&id).await?;
    let size = std::fs::metadata(&path)?.len();
    let out = opts.dir.join("restored.db");
    let started = Instant::now();
    let report = restore_to(&target, &id, Some(chosen), &out).await?;
    let took = started.elapsed();
    let restored = db::open_now(&out, &key, false, Durability::Full)?;
    let got: i64 = restored
        .conn
        .first_row_now("SELECT count(*) FROM t", ())?
        .context("a count")?
        .get(0)?;
    anyhow::ensure!(got == expected, "restored {got} rows, expected {expected}");
    println!(
        "| restore of a {:.0} MiB clinic to a chosen second | <= 10 s | {:.2} s ({} segments, {:.0} MiB read; rows match) |",
        size as f64 / 1048576.0,
        took.as_secs_f64(),
        report.segments,
        report.bytes as f64 / 1048576.0
    );
    drop(restored);
    drop(conn);
    replicator.stop();
    if opts.storage_days > 0 {
        storage(&opts).await?;
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(())
}

/// A new clinic database in `data/clinics` with one empty table `t` of blobs: its path,
/// its id (the file's stem) and the connection.
fn new_clinic(
    data: &Path,
    key: &DataKey,
) -> anyhow::Result<(PathBuf, String, ward_tenancy::sql::Connection)> {
    let id = uuid::Uuid::now_v7().to_string();
    let path = data.join("clinics").join(format!("{id}.db"));
    let conn = db::open_now(&path, key, true, Durability::Full)?.conn;
    conn.execute_batch_now("CREATE TABLE t (i INTEGER PRIMARY KEY, body BLOB)")?;
    Ok((path, id, conn))
}

/// Rows of 4,000 bytes: `mib` MiB of them.
fn rows_of(mib: u64) -> u64 {
    mib * 1024 * 1024 / 4000
}

/// The storage run: a clinic of `storage_mib` MiB replicated for `storage_days` simulated
/// days, `change_mib` MiB of its rows rewritten on each working day, with the replica's
/// retention and snapshot age scaled to the simulated day; then what the replica holds.
#[expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]
async fn storage(opts: &Opts) -> anyhow::Result<()> {
    let dir = opts.dir.join("storage");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("clinics"))?;
    let target = ward_bench::bench_replica(&dir)?;
    let day = Duration::from_secs_f64(opts.day_secs);
    let replicator = Replicator::new(&data, target.clone(), day * 30)?;
    let (path, id, conn) = new_clinic(&data, &DataKey::random())?;
    let rows = rows_of(opts.storage_mib);
    for _ in 0..rows.div_ceil(500) {
        conn.execute_batch_now("BEGIN")?;
        for _ in 0..500 {
            conn.execute_now("INSERT INTO t (body) VALUES (randomblob(4000))", ())?;
        }
        conn.execute_batch_now("COMMIT")?;
    }
    replicator.start();
    replicator.sync(&id).await?;
    let size = std::fs::metadata(&path)?.len();
    let per_day = rows_of(opts.change_mib);
    let mut changed: u64 = 0;
    let mut next = 1u64;
    let started = Instant::now();
    for d in 0..opts.storage_days {
        let day_start = Instant::now();
        if d % 7 < 5 {
            // A working day: the day's changes in commits of 50 rows, spread out.
            for c in 0..per_day.div_ceil(50) {
                conn.execute_batch_now("BEGIN")?;
                for _ in 0..50.min(per_day - c * 50) {
                    conn.execute_now(
                        "UPDATE t SET body = randomblob(4000) WHERE i = ?1",
                        params![((next - 1) % rows + 1) as i64],
                    )?;
                    next += 1;
                }
                conn.execute_batch_now("COMMIT")?;
            }
            changed += per_day * 4000;
        }
        replicator.sync(&id).await?;
        if let Some(rest) = day.checked_sub(day_start.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    replicator.sync(&id).await?;
    let gone = replicator.apply_retention().await?;
    let (objects, bytes) = ward_replica::stored(&target, &id).await?;
    let limit = 3 * size + changed;
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "| storage for {} days of a {:.0} MiB clinic, {} MiB changed each working day | <= 3x size + changed pages ({:.0} MiB) | {:.0} MiB in {} objects ({:.2}x the clinic; {:.0} MiB changed in all; {} generations removed by retention; simulated in {:.0} s, a day = {:.1} s) {} |",
        opts.storage_days,
        mib(size),
        opts.change_mib,
        mib(limit),
        mib(bytes),
        objects,
        bytes as f64 / size as f64,
        mib(changed),
        gone,
        started.elapsed().as_secs_f64(),
        opts.day_secs,
        if bytes <= limit { "within" } else { "OVER" }
    );
    drop(conn);
    replicator.stop();
    Ok(())
}
