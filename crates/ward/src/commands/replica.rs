//! The continuous replica: which one this process streams to, and `ward replica status`.

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use ward_control::ServeGuard;
use ward_replica::recovery::Fetcher;
use ward_replica::{Replicator, Target};

use crate::cli::{Global, ReplicaCommand, ReplicaStatusOpts};
use crate::output::{json, say};

static REPLICATOR: OnceLock<Replicator> = OnceLock::new();
static OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This process writes no replica (it is rebuilding from one): the next `ward serve`
/// starts every database's stream afresh.
pub fn off() {
    OFF.store(true, std::sync::atomic::Ordering::Release);
}

/// The replica target the settings name (default: `<data>/replica`).
pub fn target(global: &Global) -> anyhow::Result<Target> {
    let url = match &global.replica_url {
        Some(url) => url.clone(),
        None => {
            let data = std::path::absolute(&global.data_dir)
                .with_context(|| format!("cannot resolve {}", global.data_dir.display()))?;
            format!("file://{}", data.join("replica").display())
        }
    };
    Target::from_url(&url).map_err(|e| anyhow::anyhow!("WARD_REPLICA_URL: {e}"))
}

/// The replicator of this process, if it replicates.
pub fn replicator() -> Option<&'static Replicator> {
    REPLICATOR.get()
}

/// Makes every database this process opens from now on stream to the replica, unless a
/// `ward serve` on the same data is doing it (it then notices this process's writes
/// itself, within seconds).
pub fn watch(global: &Global) -> anyhow::Result<()> {
    if REPLICATOR.get().is_some() || OFF.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(());
    }
    if std::fs::create_dir_all(&global.data_dir).is_err() {
        return Ok(());
    }
    match ServeGuard::acquire(&global.data_dir) {
        Ok(Some(guard)) => drop(guard),
        Ok(None) => return Ok(()),
        Err(_) => {}
    }
    install(global)
}

/// [`watch`] for `ward serve`, which holds the serve guard itself.
pub fn install(global: &Global) -> anyhow::Result<()> {
    let target = target(global)?;
    let replicator = Replicator::new(&global.data_dir, target, global.replica_retention)
        .context("cannot start replication")?;
    let _ = REPLICATOR.set(replicator);
    Ok(())
}

/// Ships what this command wrote before it exits; says so if the replica is unreachable
/// (the frames stay in the WAL and the next `ward serve` ships them).
pub async fn finish() {
    let Some(r) = REPLICATOR.get() else { return };
    for (db, error) in r.sync_dirty().await {
        tracing::warn!(db = %db, error = %error, "not yet in the replica; `ward serve` will ship it");
    }
}

/// `ward replica …`.
pub async fn run(global: &Global, cmd: ReplicaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReplicaCommand::Status(opts) => status(global, opts),
    }
}

fn status(global: &Global, opts: ReplicaStatusOpts) -> anyhow::Result<ExitCode> {
    let target = target(global)?;
    let dbs = ward_replica::disk_status(&global.data_dir);
    let worst = dbs.iter().map(|d| d.lag_ms).max().unwrap_or(0);
    let failing: Vec<&str> = dbs
        .iter()
        .filter(|d| d.error.is_some())
        .map(|d| d.db.as_str())
        .collect();
    if opts.json {
        json(&serde_json::json!({
            "target": target.url,
            "same_disk": target.local,
            "worst_lag_ms": worst,
            "databases": dbs,
        }))?;
    } else {
        say(format_args!("replica: {}", target.url));
        if target.local {
            say(format_args!(
                "warning: the replica is on this machine; set WARD_REPLICA_URL to a bucket"
            ));
        }
        say(format_args!(
            "{:<38} {:<32} {:>10} {:>12}  last shipped",
            "database", "generation", "lag", "bytes"
        ));
        for d in &dbs {
            let shipped = d
                .shipped_at_ms
                .map(ward_replica::restore::rfc3339)
                .or_else(|| d.error.clone())
                .unwrap_or_default();
            say(format_args!(
                "{:<38} {:<32} {:>8}ms {:>12}  {shipped}",
                d.db,
                d.generation.as_deref().unwrap_or("-"),
                d.lag_ms,
                d.bytes
            ));
        }
        say(format_args!(
            "worst lag: {worst} ms; {} not replicated yet",
            failing.len()
        ));
    }
    Ok(if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Deletes the replica objects of every purged clinic the replica still holds (their
/// key is already gone, so the objects were unreadable; this frees the space and leaves
/// nothing behind), including those an earlier run could not delete. When `items` has
/// clinics just purged, the control plane's WAL is checkpointed at its next commit and a
/// new generation of it begins from the checkpointed file, which no longer holds their
/// wrapped keys: the older generations, which do, go once it is older than the retention.
pub async fn drop_purged(
    global: &Global,
    control: &ward_control::ControlPlane,
    items: &[ward_control::lifecycle::PurgeItem],
) {
    let purged: Vec<ward_core::ClinicId> = match control.list_clinics().await {
        Ok(all) => all
            .into_iter()
            .filter(|c| c.status == ward_core::ClinicStatus::Purged)
            .map(|c| c.id)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the purged clinics; their replica objects are deleted on the next run");
            return;
        }
    };
    if let Some(r) = REPLICATOR.get() {
        // Also for a clinic another process (`ward purge` beside this server) purged
        // since the last daily run.
        let since = control.clock().now() - chrono::TimeDelta::days(2);
        let mut recent = items.iter().any(|i| i.done);
        for id in &purged {
            if recent {
                break;
            }
            recent = control
                .tombstone(*id)
                .await
                .is_ok_and(|t| t.purged_at.is_some_and(|at| at > since));
        }
        if recent {
            r.fresh_generation_soon("control");
        }
    }
    let Ok(target) = target(global) else { return };
    let purged: Vec<String> = purged.iter().map(ToString::to_string).collect();
    match ward_replica::delete_purged(&target, &global.data_dir, &purged).await {
        Ok(done) => {
            for (clinic, n) in &done.deleted {
                tracing::info!(clinic = %clinic, objects = n, "purged clinic's replica deleted");
            }
            for (clinic, e) in &done.failed {
                tracing::warn!(clinic = %clinic, error = %e, "the purged clinic's replica objects could not all be deleted (they are unreadable without its key); tried again on the next run");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the replica; purged clinics' objects are deleted on the next run")
        }
    }
}

/// Makes status reports of this process show the replica: the running replicator's view
/// in `ward serve`, the data directory's otherwise.
pub fn report_status(global: &Global) {
    let Ok(target) = target(global) else { return };
    let data = global.data_dir.clone();
    ward_web::status::set_replica_source(move || {
        let (dbs, lease) = match REPLICATOR.get() {
            Some(r) if r.is_running() => (r.status(), r.lease_error()),
            _ => (ward_replica::disk_status(&data), None),
        };
        ward_web::status::ReplicaSection {
            target: target.url.clone(),
            same_disk: target.local,
            databases: dbs.len(),
            worst_lag_ms: dbs.iter().map(|d| d.lag_ms).max().unwrap_or(0),
            failing: lease
                .map(|e| ("lease".to_owned(), e))
                .into_iter()
                .chain(
                    dbs.iter()
                        .filter_map(|d| d.error.clone().map(|e| (d.db.clone(), e))),
                )
                .collect(),
        }
    });
}

static FETCHER: OnceLock<Arc<Fetcher>> = OnceLock::new();

/// The fetcher of this process, when `ward serve` set one up.
pub fn fetcher() -> Option<Arc<Fetcher>> {
    FETCHER.get().cloned()
}

/// For `ward serve` on a data directory without a control plane: if the replica holds
/// one, rebuilds it (the clinics follow, each on first use or in the background) and
/// says so. Returns whether it did.
pub async fn rebuild_control_if_empty(global: &Global) -> anyhow::Result<bool> {
    let target = target(global)?;
    let data = &global.data_dir;
    let fetcher = Fetcher::new(data, target.clone())
        .with_context(|| format!("cannot prepare {}", data.display()))?;
    let _ = FETCHER.set(Arc::new(fetcher));
    ward_replica::recovery::rebuild_control_if_empty(data, &target)
        .await
        .map_err(anyhow::Error::msg)
}

/// Rebuilds, one after another, every clinic whose file is missing (a request for one
/// not yet done rebuilds it first).
pub async fn rebuild_clinics(
    control: Arc<ward_control::ControlPlane>,
    tenants: ward_tenancy::TenantStore,
) {
    let Some(fetcher) = fetcher() else { return };
    // Clinics in use come back first; any clinic opened before its turn is fetched on
    // that first use (the store's fetch-on-open) and skipped here.
    let Ok(clinics) = control.clinics_by_recent_use().await else {
        return;
    };
    let started = std::time::Instant::now();
    let files: Vec<_> = clinics
        .iter()
        .map(|c| (c.id, tenants.path_of(c.id)))
        .collect();
    let rebuilt = ward_replica::recovery::rebuild_missing(&fetcher, files).await;
    for (id, e) in &rebuilt.failed {
        tracing::error!(clinic = %id, error = %e, "clinic could not be rebuilt from the replica");
    }
    let done = rebuilt.done;
    tracing::info!(
        clinics = done,
        secs = started.elapsed().as_secs_f64(),
        "every clinic rebuilt from the replica"
    );
}
