//! Backup benchmark: backup and restore time of a large clinic (the restore time is the
//! recovery time objective), a scheduled pass over many clinics of which a few changed,
//! and the disk the retention tiers use. Run it through `scripts/bench-backup`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike as _, TimeDelta, Timelike as _, Weekday};
use clap::Parser;
use rand::seq::SliceRandom as _;
use ward_control::backups::retention_plan;
use ward_control::{BackupConfig, Backups, MasterKeySource, Platform, RestoreTarget, Scope};
use ward_core::{Actor, ClinicId, SystemClock, parse_time};
use ward_tenancy::StoreConfig;

const MASTER_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Backup benchmark: one large clinic, a pass over many, the disk retention uses.
#[derive(Debug, Parser)]
struct Args {
    /// Size of the large clinic, MiB.
    #[arg(long, default_value_t = 100)]
    size_mib: u64,
    /// Clinics in the scheduled pass.
    #[arg(long, default_value_t = 10_000)]
    clinics: usize,
    /// Of those, how many changed since their last backup.
    #[arg(long, default_value_t = 500)]
    changed: usize,
    /// Backups running at once.
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Where the data and backups go (put it on the disk to measure); a temporary
    /// folder by default.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

async fn open(
    root: &std::path::Path,
    max_open: u64,
    parallel: usize,
) -> anyhow::Result<(Platform, Backups)> {
    let mut store = StoreConfig::new(root.join("data"));
    store.max_open = max_open;
    let platform = Platform::open(
        store,
        MasterKeySource::Configured(MASTER_HEX.into()),
        Arc::new(SystemClock),
    )
    .await?;
    let mut config = BackupConfig::new(root.join("backups"));
    config.parallel = parallel;
    let backups = Backups::new(platform.control.clone(), platform.tenants.clone(), config);
    Ok((platform, backups))
}

async fn exec(platform: &Platform, id: ClinicId, sql: String) -> anyhow::Result<()> {
    platform
        .tenants
        .get(id)
        .await?
        .with(|conn| conn.execute_batch(&sql).map(|_| ()))
        .await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // The memory settings `ward serve` runs with, so the figures are the server's.
    ward_tenancy::memory::small_pages()?;
    let mut a = Args::parse();
    a.changed = a.changed.min(a.clinics);
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    say(format_args!(
        "# Ward backup benchmark ({} cores, parallel {})",
        std::thread::available_parallelism().map_or(0, usize::from),
        a.parallel
    ));
    large_clinic(&a, &tmp.path().join("large")).await?;
    many_clinics(&a, &tmp.path().join("many")).await?;
    retention_disk();
    Ok(())
}

/// Backup and restore of one clinic of `size_mib`.
async fn large_clinic(a: &Args, root: &std::path::Path) -> anyhow::Result<()> {
    let (platform, backups) = open(root, 100, a.parallel).await?;
    let clinic = platform
        .control
        .create_clinic("Large Clinic", None, &platform.tenants, &Actor::Operator)
        .await?;
    let id = clinic.id;
    // Three quarters in 8 KiB documents, a quarter in many small rows with an index,
    // like attachments plus visit notes.
    let docs = a.size_mib * 1024 * 3 / 4 / 8;
    let notes = a.size_mib * 1024 * 1024 / 4 / 300;
    let started = Instant::now();
    exec(
        &platform,
        id,
        format!(
            "CREATE TABLE docs (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE notes (id INTEGER PRIMARY KEY, patient INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE INDEX notes_by_patient ON notes (patient);
             BEGIN;
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {docs})
               INSERT INTO docs (body) SELECT randomblob(8192) FROM c;
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {notes})
               INSERT INTO notes (patient, body) SELECT abs(random()) % 5000, hex(randomblob(120)) FROM c;
             COMMIT;
             PRAGMA wal_checkpoint(TRUNCATE);"
        ),
    )
    .await?;
    let size = std::fs::metadata(platform.tenants.path_of(id))?.len();
    say(format_args!(
        "\n## One clinic of {} ({} to fill)",
        mib(size),
        secs(started.elapsed())
    ));

    let snap_path = root.join("snapshot-only.db");
    let t = Instant::now();
    platform.tenants.snapshot(id, &snap_path).await?;
    let snapshot_only = t.elapsed();

    let t = Instant::now();
    let record = backups.backup(Scope::Clinic(id), "bench").await?;
    let backup_total = t.elapsed();
    anyhow::ensure!(
        record.is_good(),
        "the backup did not verify: {:?}",
        record.verify_error
    );

    exec(
        &platform,
        id,
        "INSERT INTO notes (patient, body) VALUES (1, 'after')".into(),
    )
    .await?;
    let (backups_ref, backup_id) = (&backups, record.id);
    let restore_from_backup = move |dry_run: bool| async move {
        let t = Instant::now();
        let report = backups_ref
            .restore_clinic(
                id,
                RestoreTarget::Backup(backup_id),
                "benchmark",
                &Actor::Operator,
                dry_run,
                &mut |_| {},
                &mut |_| Ok(()),
            )
            .await?;
        anyhow::Ok((report, t.elapsed()))
    };
    let (report, restore) = restore_from_backup(false).await?;
    let (_, dry_run) = restore_from_backup(true).await?;
    say(format_args!("| step | time |\n| --- | --- |"));
    say(format_args!(
        "| snapshot only (VACUUM INTO, fsync, rename) | {} |",
        secs(snapshot_only)
    ));
    say(format_args!(
        "| backup = snapshot + verification (copy, integrity check) | {} |",
        secs(backup_total)
    ));
    say(format_args!(
        "| restore, end to end (RTO; target <= 10 s) | {} |",
        secs(restore)
    ));
    say(format_args!("| restore --dry-run | {} |", secs(dry_run)));
    say(format_args!(
        "backup file {}; rows restored: {} notes, {} docs",
        mib(record.size),
        report.tables_restored.get("notes").copied().unwrap_or(0),
        report.tables_restored.get("docs").copied().unwrap_or(0)
    ));
    platform.tenants.shutdown(Duration::from_secs(30)).await;
    Ok(())
}

/// A scheduled pass over `clinics` clinics of which `changed` changed.
async fn many_clinics(a: &Args, root: &std::path::Path) -> anyhow::Result<()> {
    let (platform, backups) = open(root, 1_000, a.parallel).await?;
    let t = Instant::now();
    let mut ids = Vec::with_capacity(a.clinics);
    for i in 0..a.clinics {
        let c = platform
            .control
            .create_clinic(
                &format!("Clinic {i}"),
                None,
                &platform.tenants,
                &Actor::Operator,
            )
            .await?;
        ids.push(c.id);
    }
    // Close them all, as an idle server's cache would.
    for id in &ids {
        platform.tenants.evict(*id).await;
    }
    let created = t.elapsed();
    say(format_args!(
        "\n## A pass over {} clinics ({} to create)",
        a.clinics,
        secs(created)
    ));
    let t = Instant::now();
    let first = backups.pass(true, "bench", &|_| {}).await?;
    let first_time = t.elapsed();
    anyhow::ensure!(first.failed.is_empty(), "{:?}", first.failed.first());

    let t = Instant::now();
    let idle = backups.pass(false, "bench", &|_| {}).await?;
    let idle_time = t.elapsed();

    let mut changed = ids.clone();
    changed.shuffle(&mut rand::thread_rng());
    changed.truncate(a.changed);
    for id in &changed {
        exec(&platform, *id, "INSERT INTO settings (key, value) VALUES ('touched', 'yes') ON CONFLICT (key) DO UPDATE SET value = 'again'".into()).await?;
    }
    let t = Instant::now();
    let pass = backups.pass(false, "bench", &|_| {}).await?;
    let pass_time = t.elapsed();
    let expected: HashSet<_> = changed.iter().collect();
    say(format_args!(
        "| pass | clinics backed up | time | per backed-up clinic |\n| --- | --- | --- | --- |"
    ));
    say(format_args!(
        "| first, full ({} + control plane) | {} | {} | {:.1} ms |",
        a.clinics,
        first.backed_up,
        secs(first_time),
        first_time.as_secs_f64() * 1000.0 / first.backed_up.max(1) as f64
    ));
    say(format_args!(
        "| no clinic changed (the control plane did) | {} | {} | |",
        idle.backed_up,
        secs(idle_time),
    ));
    say(format_args!(
        "| {} changed | {} | {} | {:.1} ms |",
        expected.len(),
        pass.backed_up,
        secs(pass_time),
        pass_time.as_secs_f64() * 1000.0 / pass.backed_up.max(1) as f64
    ));
    say(format_args!(
        "an empty clinic's backup is {}; the backup folder holds {} after three passes",
        mib(first.bytes / first.backed_up.max(1)),
        mib(dir_size(&root.join("backups")))
    ));
    platform.tenants.shutdown(Duration::from_secs(30)).await;
    Ok(())
}

/// How many backups the default tiers keep per clinic, for two ways of working.
fn retention_disk() {
    let start = parse_time("2026-01-01T00:00:00Z").unwrap_or_default();
    let keep_all = TimeDelta::hours(48);
    let days = 57;
    let say_case = |name: &str, changed_at: &dyn Fn(chrono::DateTime<chrono::Utc>) -> bool| {
        let mut backups = Vec::new();
        let mut t = start;
        // Ends on a Friday evening (2026-01-01 is a Thursday).
        let end = start + TimeDelta::days(days) + TimeDelta::hours(18);
        while t < end {
            // A backup every 5 minutes when the clinic changed, and the daily full pass.
            let daily = t.hour() == 3 && t.minute() == 0;
            if changed_at(t) || daily {
                backups.push((uuid::Uuid::now_v7(), t, true));
            }
            t += TimeDelta::minutes(5);
        }
        let doomed: HashSet<_> = retention_plan(&backups, end, keep_all, 35)
            .into_iter()
            .collect();
        let kept = backups.len() - doomed.len();
        say(format_args!(
            "| {name} | {kept} | {} | {} |",
            mib(kept as u64 * 1024 * 1024),
            mib(kept as u64 * 100 * 1024 * 1024)
        ));
    };
    say("\n## Disk used by the retention tiers (defaults: all of 48 h, one a day for 35 days)");
    say(
        "| clinic works | backups kept | for a 1 MiB clinic | for a 100 MiB clinic |\n| --- | --- | --- | --- |",
    );
    say_case("08:00-18:00 on weekdays, changing all day", &|t| {
        !matches!(t.weekday(), Weekday::Sat | Weekday::Sun) && (8..18).contains(&t.hour())
    });
    say_case("around the clock", &|_| true);
    say_case("never (daily pass only)", &|_| false);
}
