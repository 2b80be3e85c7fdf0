//! The tenancy engine's numbers, printed in one run: what an open costs (plaintext,
//! encrypted, and Ward's full cold open), a cached lookup, creating and migrating many
//! clinics, disk per clinic and memory per open handle. Measurements, not tests: the
//! targets are printed beside the figures.
//!
//! Run it with `scripts/bench-tenancy` (release build); `--help` lists the knobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::StreamExt as _;
use ward_bench::{Samples, dir_size, open_fds, rss_bytes, us};
use ward_control::{MasterKeySource, Platform};
use ward_core::{Actor, ClinicId, SystemClock};
use ward_tenancy::db::{self, Durability};
use ward_tenancy::sql::Connection;
use ward_tenancy::{MasterKey, Migration, Registry, StoreConfig, TenantStore};

/// Measures the tenancy engine.
#[derive(Debug, Parser)]
#[command(name = "tenancy")]
struct Opts {
    /// Clinics to create (and then migrate).
    #[arg(long, default_value_t = 10_000)]
    clinics: usize,
    /// Samples per open measurement.
    #[arg(long, default_value_t = 1_000)]
    iterations: usize,
    /// Samples of the cached lookup.
    #[arg(long, default_value_t = 100_000)]
    lookups: usize,
    /// Handles held open for the memory figure.
    #[arg(long, default_value_t = 1_000)]
    open_handles: usize,
    /// Clinic files held open while one more is opened, for the miss figure.
    #[arg(long, default_value_t = 4_000)]
    miss_open: usize,
    /// Clinics created and migrated at once (`ward migrate --parallel`'s default).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Where the scratch data directory goes (a fresh folder inside it, removed after).
    #[arg(long, default_value = "bench-out")]
    dir: PathBuf,
    /// Keep the scratch data directory.
    #[arg(long)]
    keep: bool,
    /// Only measure memory with --open-handles clinics of this data directory open (the
    /// full run uses it to measure in a fresh process).
    #[arg(long, hide = true)]
    rss_of: Option<PathBuf>,
}

const MASTER_HEX: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";
const QUERY: &str = "SELECT value FROM settings WHERE key = 'greeting'";
const EXTRA_MIGRATION: &str =
    "CREATE TABLE bench_extra (id INTEGER PRIMARY KEY, note TEXT NOT NULL) STRICT;";

#[expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

fn line(what: &str, s: &mut Samples, note: &str) {
    say(format_args!(
        "{what:<44} p50 {:>9.1} us   p99 {:>9.1} us   {note}",
        us(s.p50()),
        us(s.p99())
    ));
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> anyhow::Result<()> {
    // The memory settings `ward serve` runs with, so the figures are the server's.
    ward_tenancy::memory::small_pages()?;
    let opts = Opts::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(opts))
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    if let Some(data) = &opts.rss_of {
        rlimit::increase_nofile_limit((opts.open_handles as u64) * 3 + 1024)?;
        return hold_open(data, opts.open_handles).await;
    }
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("tenancy-")
        .tempdir_in(&opts.dir)?;
    let wanted_fds = (opts.open_handles.max(opts.miss_open) as u64) * 3 + 1024;
    let got_fds = rlimit::increase_nofile_limit(wanted_fds)?;
    if got_fds < wanted_fds {
        bail!("the open-file limit is {got_fds}; {wanted_fds} are needed for --open-handles");
    }
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    say(format_args!(
        "Ward tenancy benchmark: {cpus} CPUs, {} clinics, {} samples per open figure, data in {}",
        opts.clinics,
        opts.iterations,
        scratch.path().display()
    ));
    say("");

    opens(scratch.path(), &opts).await?;
    say("");
    miss_among_open(scratch.path(), &opts)?;
    say("");
    many_clinics(scratch.path(), &opts).await?;

    if opts.keep {
        let kept = scratch.keep();
        say(format_args!("\nkept {}", kept.display()));
    }
    Ok(())
}

/// A file opened with nothing but rusqlite (plaintext, or SQLCipher with a raw key), for
/// comparison with Ward's configured open of the same engine. It carries the whole
/// migrated clinic schema, as a clinic file does: the first query of an open parses it.
struct BareFile {
    path: PathBuf,
    key: Option<[u8; 32]>,
}

impl BareFile {
    /// Creates the file in WAL mode (as clinic files are) with one settings row.
    fn create(path: PathBuf, key: Option<[u8; 32]>) -> anyhow::Result<Self> {
        let file = Self { path, key };
        let conn = file.open()?;
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        for m in ward_tenancy::migrations::TENANT {
            conn.execute_batch(m.sql)?;
        }
        conn.execute_batch(
            "INSERT OR REPLACE INTO settings (key, value) VALUES ('greeting', 'hello');",
        )?;
        Ok(file)
    }

    fn open(&self) -> anyhow::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(&self.path)?;
        if let Some(key) = self.key {
            conn.execute_batch(&format!("PRAGMA key = \"x'{}'\"", hex::encode(key)))?;
        }
        // Like Ward's own connections, keep the WAL and shared-memory files across close,
        // so both sides pay the same file-system costs and the ratio is the engine's.
        let mut persist: std::ffi::c_int = 1;
        conn.file_control(
            Some(rusqlite::MAIN_DB),
            rusqlite::FileControl::PersistWal(&mut persist),
        )?;
        conn.execute_batch("PRAGMA journal_size_limit = 4194304")?;
        Ok(conn)
    }

    /// One timed open and first query; the close is not timed.
    fn time_open(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let conn = self.open()?;
        let _: String = conn.query_row(QUERY, [], |r| r.get(0))?;
        let took = started.elapsed();
        drop(conn);
        Ok(took)
    }
}

fn query_once(conn: &Connection) -> anyhow::Result<()> {
    let row = conn
        .first_row_now(QUERY, ())?
        .context("the settings row is missing")?;
    let _: String = row.get(0)?;
    Ok(())
}

async fn open_platform(
    data: &Path,
    configure: impl FnOnce(&mut StoreConfig),
) -> anyhow::Result<Platform> {
    let mut config = StoreConfig::new(data);
    configure(&mut config);
    Ok(Platform::open(
        config,
        MasterKeySource::Configured(MASTER_HEX.to_owned()),
        Arc::new(SystemClock),
    )
    .await?)
}

async fn wait_closed(store: &TenantStore, at_most: usize) {
    while store.stats().open_handles > at_most {
        store.run_pending().await;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn put_greeting(store: &TenantStore, id: ClinicId) -> anyhow::Result<()> {
    store
        .get(id)
        .await?
        .with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES ('greeting', 'hello')",
                (),
            )
        })
        .await?;
    Ok(())
}

/// Ward's own open of an encrypted, migrated clinic, through the store and in parts.
/// Open costs, all measured in the same loop so that the machine's background load
/// falls on each alike: bare plaintext, bare encrypted, Ward's cold open through the store,
/// and its two parts (the control-plane lookup, the configured open) alone.
async fn opens(dir: &Path, opts: &Opts) -> anyhow::Result<()> {
    let plain_file = BareFile::create(dir.join("bare-plain.db"), None)?;
    // Any 32 random bytes will do as the bare file's key.
    let key = MasterKey::random().derive("bench bare key");
    let encrypted_file = BareFile::create(dir.join("bare-encrypted.db"), Some(key))?;
    let bare_key = ward_tenancy::DataKey::from_bytes(key);
    let mut ward_on_bare = Samples::with_capacity(opts.iterations);
    let platform = open_platform(&dir.join("cold"), |_| {}).await?;
    let store = platform.tenants.clone();
    let mut ids = Vec::new();
    for i in 0..opts.iterations.clamp(1, 100) {
        let c = platform
            .control
            .create_clinic(&format!("Cold {i}"), None, &store, &Actor::Operator)
            .await?;
        put_greeting(&store, c.id).await?;
        ids.push(c.id);
    }
    for id in &ids {
        store.evict(*id).await;
    }
    wait_closed(&store, 0).await;

    let master = MasterKey::from_hex(MASTER_HEX)?;
    let n = opts.iterations;
    let (mut plain, mut bare, mut cold) = (
        Samples::with_capacity(n),
        Samples::with_capacity(n),
        Samples::with_capacity(n),
    );
    let (mut lookup, mut configured) = (Samples::with_capacity(n), Samples::with_capacity(n));
    for i in 0..n {
        let id = ids[i % ids.len()];
        plain.push(plain_file.time_open()?);
        bare.push(encrypted_file.time_open()?);

        // On a runtime worker, as a request runs (the main thread blocks differently).
        let took = tokio::spawn({
            let store = store.clone();
            async move {
                let started = Instant::now();
                let tenant = store.get(id).await?;
                tenant.with(|c| query_once(&c)).await?;
                anyhow::Ok(started.elapsed())
            }
        })
        .await??;
        cold.push(took);
        store.evict(id).await;
        wait_closed(&store, 0).await;

        // Where the time goes: the control-plane read, and Ward's configured open.
        let started = Instant::now();
        let record = platform
            .control
            .tenant(id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .context("clinic vanished")?;
        let key = master.unwrap(id, &record.wrapped_key)?;
        lookup.push(started.elapsed());
        let path = store.path_of(id);
        let started = Instant::now();
        let opened = ward_tenancy::blocking(db::open(&path, &key, false, Durability::Full)).await?;
        let version = ward_tenancy::migrate::version(&opened.conn)?;
        query_once(&opened.conn)?;
        configured.push(started.elapsed());
        anyhow::ensure!(version == store.latest_version());
        drop(opened);

        // Ward's configured open of the bare encrypted file: the same code on the other
        // file, which tells the file's share from the code's.
        let started = Instant::now();
        let opened = db::open_now(&encrypted_file.path, &bare_key, false, Durability::Full)?;
        query_once(&opened.conn)?;
        ward_on_bare.push(started.elapsed());
        drop(opened);
    }
    line("plaintext SQLite open + query", &mut plain, "(WAL file)");
    line(
        "encrypted SQLCipher open + query",
        &mut bare,
        "(raw key, HMAC-SHA512 pages, WAL file)",
    );
    let ratio = configured.p50().as_secs_f64() / plain.p50().as_secs_f64();
    let p99_ok = configured.p99() <= Duration::from_micros(600);
    let cold_ratio = cold.p50().as_secs_f64() / plain.p50().as_secs_f64();
    line(
        "Ward cold open (encrypted, migrated) + query",
        &mut cold,
        &format!(
            "p50 {cold_ratio:.2}x plaintext (through the store: lookup, pin, open, schema check)"
        ),
    );

    line(
        "Ward's db::open + query of the bare file",
        &mut ward_on_bare,
        "(the same code as below, on the bare encrypted file)",
    );
    line(
        "  of which: key lookup + unwrap",
        &mut lookup,
        "(control plane read)",
    );
    line(
        "  of which: db::open + version + query",
        &mut configured,
        &format!(
            "p50 {ratio:.2}x plaintext (target <= 1.30x: {}); p99 target <= 600 us: {}",
            verdict(ratio <= 1.3),
            verdict(p99_ok)
        ),
    );

    // A lookup that finds the handle open.
    let id = ids[0];
    let held = store.get(id).await?;
    let lookups = opts.lookups;
    let mut cached = tokio::spawn({
        let store = store.clone();
        async move {
            let mut cached = Samples::with_capacity(lookups);
            for _ in 0..lookups {
                let started = Instant::now();
                let tenant = store.get(id).await?;
                cached.push(started.elapsed());
                drop(tenant);
            }
            anyhow::Ok(cached)
        }
    })
    .await??;
    drop(held);
    let ok = cached.p99() <= Duration::from_micros(5);
    line(
        "cached handle lookup (store.get)",
        &mut cached,
        &format!("target p99 <= 5 us: {}", verdict(ok)),
    );
    store.shutdown(Duration::from_secs(30)).await;
    Ok(())
}

/// Opening a clinic file while thousands of others are open, as a cache miss of a busy
/// server does. SQLite looks every database file it opens up among the files the process
/// has open; the vendored engine does that through a hash table (a list walk grew with
/// every open clinic), so the two figures should be alike.
fn miss_among_open(dir: &Path, opts: &Opts) -> anyhow::Result<()> {
    const PROBES: usize = 100;
    let n = opts.miss_open;
    let key = MasterKey::random().derive("bench miss key");
    let data_key = ward_tenancy::DataKey::from_bytes(key);
    let seed = BareFile::create(dir.join("miss-seed.db"), Some(key))?;
    let folder = dir.join("miss");
    std::fs::create_dir_all(&folder)?;
    let paths: Vec<PathBuf> = (0..n + PROBES)
        .map(|i| folder.join(format!("{i}.db")))
        .collect();
    for path in &paths {
        std::fs::copy(&seed.path, path)?;
    }
    let open = |path: &Path| -> anyhow::Result<db::Opened> {
        let opened = db::open_now(path, &data_key, false, Durability::Full)?;
        query_once(&opened.conn)?;
        Ok(opened)
    };
    let rounds = (opts.iterations / PROBES).max(1);
    let probe = |samples: &mut Samples| -> anyhow::Result<()> {
        for _ in 0..rounds {
            for path in &paths[n..] {
                let started = Instant::now();
                drop(open(path)?);
                samples.push(started.elapsed());
            }
        }
        Ok(())
    };
    let mut alone = Samples::with_capacity(rounds * PROBES);
    probe(&mut alone)?;
    let held = paths[..n]
        .iter()
        .map(|path| open(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut among = Samples::with_capacity(rounds * PROBES);
    probe(&mut among)?;
    drop(held);
    line(
        "clinic open + query + close, none other open",
        &mut alone,
        "(db::open of a copy of one migrated clinic file)",
    );
    let ratio = among.p50().as_secs_f64() / alone.p50().as_secs_f64();
    line(
        &format!("the same with {n} other clinic files open"),
        &mut among,
        &format!("p50 {ratio:.2}x the first (SQLite's lookup among open files)"),
    );
    std::fs::remove_dir_all(&folder)?;
    Ok(())
}

/// Opens `n` clinics of the data directory `data` and holds them, printing the memory and
/// descriptors they take.
async fn hold_open(data: &Path, n: usize) -> anyhow::Result<()> {
    let platform = open_platform(data, |c| c.max_open = (n as u64).max(1)).await?;
    let store = &platform.tenants;
    let ids: Vec<_> = platform
        .control
        .list_clinics()
        .await?
        .into_iter()
        .take(n)
        .map(|c| c.id)
        .collect();
    let (rss_before, fds_before) = (rss_bytes().unwrap_or(0), open_fds().unwrap_or(0));
    let mut held = Vec::with_capacity(ids.len());
    for id in ids {
        let tenant = store.get(id).await?;
        tenant
            .with(|c| {
                let mut rows = c.query("SELECT count(*) FROM settings", ())?;
                rows.next()?;
                anyhow::Ok(())
            })
            .await?;
        held.push(tenant);
    }
    let (rss_after, fds_after) = (rss_bytes().unwrap_or(0), open_fds().unwrap_or(0));
    let per = held.len().max(1) as f64;
    say(format_args!(
        "{:<44} {:>9.1} MiB ({:.1} MiB before; {:.0} KiB and {:.1} fds per handle; target <= 512 MiB: {})",
        format!("RSS with {} open handles", store.stats().open_handles),
        mib(rss_after),
        mib(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / 1024.0 / per,
        fds_after.saturating_sub(fds_before) as f64 / per,
        verdict(rss_after <= 512 * 1024 * 1024)
    ));
    // What `ward serve`'s idle sweep gives back: the first sweep sees the handles used,
    // the second releases the page cache of those still unused.
    store.release_idle_memory();
    let released = store.release_idle_memory();
    let rss_idle = rss_bytes().unwrap_or(0);
    say(format_args!(
        "{:<44} {:>9.1} MiB ({:.0} KiB per handle; {released} handles released)",
        "RSS after the idle sweep",
        mib(rss_idle),
        rss_idle.saturating_sub(rss_before) as f64 / 1024.0 / per,
    ));
    drop(held);
    store.shutdown(Duration::from_secs(60)).await;
    Ok(())
}

/// Creating, storing, holding open and migrating many clinics.
async fn many_clinics(dir: &Path, opts: &Opts) -> anyhow::Result<()> {
    let data = dir.join("many");
    let n = opts.clinics;
    let platform = open_platform(&data, |_| {}).await?;
    let started = Instant::now();
    let store = &platform.tenants;
    let control = &platform.control;
    let mut created = futures::stream::iter(0..n)
        .map(|i| {
            let (control, store) = (control.clone(), store.clone());
            tokio::spawn(async move {
                control
                    .create_clinic(&format!("Bench Clinic {i}"), None, &store, &Actor::Operator)
                    .await
            })
        })
        .buffer_unordered(opts.parallel);
    let mut ids = Vec::with_capacity(n);
    while let Some(clinic) = created.next().await {
        ids.push(clinic??.id);
    }
    drop(created);
    let took = started.elapsed();
    say(format_args!(
        "{:<44} {:>9.1} s   ({:.2} ms each, {} at a time)",
        format!("create {n} clinics"),
        took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / n as f64,
        opts.parallel
    ));
    store.shutdown(Duration::from_secs(60)).await;
    drop(platform);

    let clinics_dir = data.join("clinics");
    // A closed clinic keeps its (empty) WAL and its shared-memory file beside the
    // database, and its pin: all of them count.
    let (db_bytes, files) = dir_size(&clinics_dir, ".db")?;
    let (wal_bytes, _) = dir_size(&clinics_dir, "-wal")?;
    let (shm_bytes, _) = dir_size(&clinics_dir, "-shm")?;
    let (pin_bytes, _) = dir_size(&clinics_dir, ".pin")?;
    let per = (db_bytes + wal_bytes + shm_bytes + pin_bytes) / files.max(1) as u64;
    say(format_args!(
        "{:<44} {:>9.1} KiB ({files} clinics; database, WAL ({wal_bytes} bytes in all), shared memory and pin; target <= 256 KiB: {})",
        "disk per empty clinic",
        per as f64 / 1024.0,
        verdict(per <= 256 * 1024)
    ));
    let control_bytes = std::fs::metadata(data.join("control.db"))?.len();
    say(format_args!(
        "{:<44} {:>9.2} KiB per clinic ({:.1} MiB in all)",
        "control plane",
        control_bytes as f64 / 1024.0 / n as f64,
        mib(control_bytes)
    ));

    // Memory and descriptors with many handles open, in a fresh process: this one's heap
    // still holds what creating the clinics used.
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--rss-of")
        .arg(&data)
        .arg("--open-handles")
        .arg(opts.open_handles.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "the memory measurement failed");

    // One new tenant migration across every clinic, as `ward migrate` runs it.
    let mut migrations = ward_tenancy::migrations::TENANT.to_vec();
    migrations.push(Migration {
        version: migrations.len() as u32 + 1,
        name: "bench_extra",
        sql: EXTRA_MIGRATION,
    });
    let platform = open_platform(&data, |c| c.migrations = migrations.into()).await?;
    let store = &platform.tenants;
    let clinics = platform.control.list_clinics().await?;
    let started = Instant::now();
    let mut results = futures::stream::iter(clinics)
        .map(|c| {
            // Each on its own task, as `ward migrate` does: database work blocks its
            // thread, so futures sharing one task would run one after another.
            let store = store.clone();
            tokio::spawn(async move { store.migrate_clinic(c.id).await })
        })
        .buffer_unordered(opts.parallel);
    let (mut migrated, mut failed) = (0usize, 0usize);
    while let Some(result) = results.next().await {
        match result? {
            Ok(outcome) if outcome.changed() => migrated += 1,
            Ok(_) => {}
            Err(_) => failed += 1,
        }
    }
    drop(results);
    store.shutdown(Duration::from_secs(60)).await;
    let took = started.elapsed();
    say(format_args!(
        "{:<44} {:>9.1} s   ({migrated} migrated, {failed} failed, {} at a time; target <= 60 s: {})",
        format!("migrate {n} clinics (1 new migration)"),
        took.as_secs_f64(),
        opts.parallel,
        verdict(took <= Duration::from_secs(60))
    ));
    Ok(())
}
