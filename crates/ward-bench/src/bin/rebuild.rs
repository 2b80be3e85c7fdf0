//! An empty machine rebuilt from the replica of many clinics, printed beside its
//! target: how long until the first page of a chosen clinic is served, and until every
//! clinic is back. It takes Ward's own recovery path, as `ward serve` on an empty data
//! directory does: the control plane rebuilt from the replica, the chosen clinic fetched
//! on its first open (its patient page, through the whole web app, as its owner), then
//! the rest one after another, most recently used first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use tower::ServiceExt as _;
use ward_control::passwords::{PasswordHasher, Pepper};
use ward_control::{MasterKeySource, Platform};
use ward_core::{Clock, Email, Role, SystemClock};
use ward_replica::Replicator;
use ward_replica::recovery::{self, Fetcher};

/// Measures an empty machine's rebuild from the replica.
#[derive(Debug, Parser)]
#[command(name = "rebuild")]
struct Opts {
    /// Clinics in the replica (each with an owner, a session and one patient).
    #[arg(long, default_value_t = 10_000)]
    clinics: usize,
    /// Scratch folder (removed afterwards).
    #[arg(long, default_value = "bench-out/rebuild")]
    dir: PathBuf,
}

/// A clinic of the old machine: its slug, its owner's session and its patient's name.
struct Made {
    slug: String,
    token: String,
    patient: String,
}

const MASTER: &str = "cd";

fn say(line: impl std::fmt::Display) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // The memory settings `ward serve` runs with, so the figures are the server's.
    ward_tenancy::memory::small_pages()?;
    let opts = Opts::parse();
    ward_bench::log_to_stderr("error");
    let nofile = ward_tenancy::fds::raise_limit()?;
    let budget = ward_tenancy::fds::budget(nofile, ward_tenancy::fds::RESERVED);
    let _ = std::fs::remove_dir_all(&opts.dir);
    let (old, new) = (opts.dir.join("old"), opts.dir.join("new"));
    std::fs::create_dir_all(&old)?;
    std::fs::create_dir_all(&new)?;
    let target = ward_bench::bench_replica(&opts.dir)?;
    say(format_args!("replica target: {}", target.url));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let key = MasterKeySource::Configured(MASTER.repeat(32));

    // The old machine: every database streams to the replica as it is written.
    let replicator = Replicator::new(&old, target.clone(), Duration::from_secs(30 * 86_400))?;
    let made = {
        replicator.start();
        let mut store = ward_tenancy::StoreConfig::new(&old);
        store.max_open = ward_tenancy::fds::default_cap(budget);
        store.max_handles = Some(budget);
        let platform = Platform::open(store, key.clone(), clock.clone()).await?;
        let hash = PasswordHasher::new(Pepper::from_bytes([9; 32]), 4, 2)?
            .hash("bench password 123")
            .await?;
        say(format_args!(
            "setting up {} clinics, each replicated…",
            opts.clinics
        ));
        let t0 = Instant::now();
        let made = make_clinics(&platform, opts.clinics, &hash).await?;
        let failed = replicator.sync_all().await;
        anyhow::ensure!(failed.is_empty(), "not everything shipped: {failed:?}");
        say(format_args!(
            "set up in {:.1} s",
            t0.elapsed().as_secs_f64()
        ));
        replicator.release().await;
        replicator.stop();
        drop(platform);
        made
    };
    let (objects, bytes) = {
        let mut n = (0usize, 0u64);
        for db in ward_replica::databases(&target).await? {
            let (o, b) = ward_replica::stored(&target, &db).await?;
            n = (n.0 + o, n.1 + b);
        }
        n
    };
    say(format_args!(
        "replica: {objects} objects, {:.1} MiB",
        bytes as f64 / 1_048_576.0
    ));

    // The new machine: nothing but the replica and the master key. First with the
    // segments as shipped (the machine died within the hour of the busiest writing),
    // then after the hourly pass has compacted them.
    let chosen = &made[made.len() / 2];
    let (new, target, key, clinics) = (&new, &target, &key, made.len());
    let rebuild_in = |name: &str| {
        let data = new.join(name);
        async move { rebuild(&data, target, key, budget, chosen, clinics).await }
    };
    let shipped = rebuild_in("shipped").await?;
    let t0 = Instant::now();
    let compacted = replicator.compact().await?;
    let compaction = t0.elapsed();
    let joined = rebuild_in("compacted").await?;
    say("");
    say("| what | target | measured |");
    say("| --- | --- | --- |");
    for (when, r) in [
        ("segments as shipped", &shipped),
        ("after compaction", &joined),
    ] {
        say(format_args!(
            "| an empty machine, {} clinics in the replica, {when}: the first page of a chosen clinic | <= 60 s | {:.2} s (control plane back in {:.2} s) |",
            made.len(),
            r.first_page.as_secs_f64(),
            r.control_back.as_secs_f64()
        ));
        say(format_args!(
            "| an empty machine, {when}: every clinic rebuilt | - | {:.1} s ({:.1} ms a clinic) |",
            r.all.as_secs_f64(),
            (r.all - r.first_page).as_secs_f64() * 1000.0 / (made.len() - 1).max(1) as f64
        ));
    }
    say(format_args!(
        "| compaction pass over the replica | - | {:.1} s: {} segments joined into {} objects |",
        compaction.as_secs_f64(),
        compacted.joined,
        compacted.written
    ));
    drop(replicator);
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(())
}

/// How long one rebuild took, from an empty data directory.
struct Timings {
    control_back: Duration,
    first_page: Duration,
    all: Duration,
}

/// Rebuilds an empty machine in `data` from `target`: the control plane, the chosen
/// clinic's patient page (fetched on its first open), then every other clinic.
async fn rebuild(
    data: &std::path::Path,
    target: &ward_replica::Target,
    key: &MasterKeySource,
    budget: u64,
    chosen: &Made,
    clinics: usize,
) -> anyhow::Result<Timings> {
    std::fs::create_dir_all(data)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let t0 = Instant::now();
    anyhow::ensure!(
        recovery::rebuild_control_if_empty(data, target)
            .await
            .map_err(anyhow::Error::msg)?,
        "the replica holds no control plane"
    );
    let control_back = t0.elapsed();
    let fetcher = Arc::new(Fetcher::new(data, target.clone())?);
    let mut store = ward_tenancy::StoreConfig::new(data);
    store.max_open = ward_tenancy::fds::default_cap(budget);
    store.max_handles = Some(budget);
    store.fetch_missing = Some(fetcher.clone() as Arc<dyn ward_tenancy::FetchMissing>);
    let platform = Platform::open(store, key.clone(), clock.clone()).await?;
    let web = ward_bench::bench_web(&platform, clock, &data.join("attachments"), 25)?;
    let request = axum::http::Request::builder()
        .uri(format!("/c/{}/patients/1", chosen.slug))
        .header("cookie", format!("ward_session={}", chosen.token))
        .extension(axum::extract::ConnectInfo(SocketAddr::from((
            [127, 0, 0, 1],
            9,
        ))))
        .body(axum::body::Body::empty())?;
    let response = ward_web::router(web).oneshot(request).await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22).await?;
    anyhow::ensure!(
        status.is_success() && String::from_utf8_lossy(&body).contains(&chosen.patient),
        "the chosen clinic's patient page answered {status} without its patient"
    );
    let first_page = t0.elapsed();
    let files: Vec<_> = platform
        .control
        .clinics_by_recent_use()
        .await?
        .iter()
        .map(|c| (c.id, platform.tenants.path_of(c.id)))
        .collect();
    let rebuilt = recovery::rebuild_missing(&fetcher, files).await;
    let all = t0.elapsed();
    anyhow::ensure!(
        rebuilt.failed.is_empty() && rebuilt.absent == 0 && rebuilt.done + 1 == clinics,
        "not every clinic came back ({} expected): {rebuilt:?}",
        clinics - 1
    );
    Ok(Timings {
        control_back,
        first_page,
        all,
    })
}

/// `n` clinics, each with an owner (signed in) and one patient.
async fn make_clinics(platform: &Platform, n: usize, hash: &str) -> anyhow::Result<Vec<Made>> {
    let (control, tenants) = (platform.control.clone(), platform.tenants.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let (control, tenants, hash) = (control.clone(), tenants.clone(), hash.to_owned());
            tokio::spawn(async move {
                let clinic = control
                    .create_clinic(&format!("Rebuild Clinic {i}"), None, &tenants, &ward_core::Actor::Operator)
                    .await?;
                let patient = format!("Patient of clinic {i}");
                let name = patient.clone();
                tenants
                    .get(clinic.id)
                    .await?
                    .with(move |conn| {
                        conn.execute(
                            "INSERT INTO patients (id, number, full_name, sex, phone, phone_digits, address, created_at, updated_at)
                             VALUES (1, 1, ?1, 'female', '98450 12345', '9845012345', '12 Lake Road', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                            ward_tenancy::sql::params![name],
                        )
                    })
                    .await?;
                let email = Email::parse(&format!("owner{i}@rebuild.example"))
                    .map_err(anyhow::Error::msg)?;
                let user = control
                    .create_user(&email, "Rebuild Owner", &hash)
                    .await?
                    .context("user exists")?;
                control.mark_email_verified(&user.id).await?;
                control.add_membership(&user.id, clinic.id, Role::Owner).await?;
                let token = control.create_session(&user.id, None, None).await?;
                Ok::<_, anyhow::Error>(Made {
                    slug: clinic.slug.to_string(),
                    token,
                    patient,
                })
            })
        })
        .buffered(4)
        .map(|r| r.map_err(anyhow::Error::from).and_then(|r| r))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
