//! One file per command, each with a `run`.

mod audit_hooks;
mod backup;
mod clinics;
mod drill;
mod export;
mod keys;
mod members;
mod migrate;
mod operator;
mod purge;
mod replica;
mod restore;
mod serve;
mod status;
mod support;
mod users;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ward_control::{
    BackupConfig, Backups, ClinicRecord, ClinicRef, MasterKeySource, Platform, ServeGuard,
};
use ward_core::SystemClock;
use ward_tenancy::StoreConfig;

use crate::cli::{Cli, Command, Global};

/// Takes the serve lock of the data directory: `None` while a server or a control-plane
/// restore holds it. Held until the guard is dropped.
pub fn try_serve_guard(global: &Global) -> anyhow::Result<Option<ServeGuard>> {
    ServeGuard::acquire(&global.data_dir).with_context(|| {
        format!(
            "cannot take {}",
            ServeGuard::path(&global.data_dir).display()
        )
    })
}

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let result = dispatch(cli).await;
    replica::finish().await;
    result
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(opts) => serve::run(&cli.global, opts).await,
        Command::Migrate(opts) => migrate::run(&cli.global, opts).await,
        Command::Clinics(cmd) => clinics::run(&cli.global, cmd).await,
        Command::Users(cmd) => users::run(&cli.global, cmd).await,
        Command::Members(cmd) => members::run(&cli.global, cmd).await,
        Command::Backup(opts) => backup::run(&cli.global, opts).await,
        Command::Backups(cmd) => backup::list(&cli.global, cmd).await,
        Command::Restore(opts) => restore::run(&cli.global, opts).await,
        Command::Verify(opts) => verify::run(&cli.global, opts).await,
        Command::Export(opts) => export::export(&cli.global, opts).await,
        Command::Import(opts) => export::import(&cli.global, opts).await,
        Command::Purge(opts) => purge::run(&cli.global, opts).await,
        Command::Replica(cmd) => replica::run(&cli.global, cmd).await,
        Command::Keys(cmd) => keys::run(&cli.global, cmd).await,
        Command::Status(opts) => status::run(&cli.global, opts).await,
        Command::Support(cmd) => support::run(&cli.global, cmd).await,
    }
}

/// The backup settings.
pub fn backup_config(global: &Global) -> BackupConfig {
    let dir = global
        .backup_dir
        .clone()
        .unwrap_or_else(|| global.data_dir.join("backups"));
    let mut config = BackupConfig::new(dir);
    config.parallel = global.backup_parallel as usize;
    config.keep_all =
        chrono::TimeDelta::from_std(global.backup_keep_all).unwrap_or(config.keep_all);
    config.keep_daily_days = global.backup_keep_daily;
    config
}

/// Backups of the opened data directory.
pub fn backups(global: &Global, platform: &Platform) -> Backups {
    Backups::new(
        platform.control.clone(),
        platform.tenants.clone(),
        backup_config(global),
    )
    .with_content_check(Arc::new(audit_hooks::AuditChainCheck))
    .with_restore_audit(audit_hooks::ClinicRestoreAudit::new(
        platform.control.clone(),
    ))
}

/// The grace period between closing a clinic and purging it.
pub fn retention(global: &Global) -> chrono::TimeDelta {
    ward_control::lifecycle::retention_days(global.retention_days)
}

/// The purger of the opened data directory; it deletes a clinic's attachment objects
/// from `attachments` before destroying the clinic's key.
pub fn purger(
    global: &Global,
    platform: &Platform,
    attachments: ward_web::attachments::AttachmentStore,
) -> ward_control::lifecycle::Purger {
    ward_control::lifecycle::Purger::new(
        platform.control.clone(),
        platform.tenants.clone(),
        backup_config(global).dir,
        global.data_dir.join("exports"),
        retention(global),
    )
    .with_before(Arc::new(ward_web::attachments::PurgeObjects {
        tenants: platform.tenants.clone(),
        store: attachments,
    }))
}

/// Where attachments go: `explicit` (`WARD_ATTACHMENT_URL`) when given; else, when
/// `WARD_REPLICA_URL` names the replica, the same store under its `attachments/` prefix
/// (next to the replica's databases, which are named `control` and by clinic id);
/// else `file://<data>/attachments`. A data folder whose `attachments/` already holds
/// objects keeps using it, so that setting a replica never hides files stored before.
pub fn attachment_url(global: &Global, explicit: Option<&str>) -> String {
    if let Some(url) = explicit {
        return url.to_owned();
    }
    let local = global.data_dir.join("attachments");
    let local_url = format!("file://{}", local.display());
    let Some(replica) = &global.replica_url else {
        return local_url;
    };
    let has_objects = std::fs::read_dir(local.join("a")).is_ok_and(|mut d| d.next().is_some());
    if has_objects {
        tracing::warn!(
            "attachments stay in <data>/attachments, which already holds files; set WARD_ATTACHMENT_URL to choose"
        );
        return local_url;
    }
    format!("{}/attachments", replica.trim_end_matches('/'))
}

/// The attachment store at [`attachment_url`], with a 1 MiB cap (for commands that only
/// read or remove objects).
pub fn attachment_store(
    global: &Global,
    url: Option<&str>,
) -> anyhow::Result<ward_web::attachments::AttachmentStore> {
    ward_web::attachments::AttachmentStore::from_url(&attachment_url(global, url), 1)
        .map_err(anyhow::Error::msg)
}

/// The clinic an operator named, by slug or id.
pub async fn find_clinic(platform: &Platform, name: &str) -> anyhow::Result<ClinicRecord> {
    let r: ClinicRef = name.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    Ok(platform.control.find_clinic(&r).await?)
}

/// The cache cap and the hard bound on open clinic handles, from the open-file limit
/// (its soft value raised to the hard one first) and `WARD_MAX_OPEN_TENANTS`.
pub fn handle_budget(configured: Option<u64>) -> anyhow::Result<(u64, u64)> {
    use ward_tenancy::fds;
    let nofile = fds::raise_limit()
        .or_else(|_| fds::limit())
        .context("cannot read the open-file limit")?;
    let budget = fds::budget(nofile, fds::RESERVED);
    if budget == 0 {
        anyhow::bail!(
            "the open-file limit is {nofile}, too low to open any clinic ({} descriptors are kept for sockets and the control plane, {} more per clinic); raise it (ulimit -n, or LimitNOFILE in the service's unit)",
            fds::RESERVED,
            fds::PER_HANDLE
        );
    }
    match configured {
        Some(cap) if cap > budget => anyhow::bail!(
            "WARD_MAX_OPEN_TENANTS is {cap}, but the open-file limit of {nofile} allows at most {budget} open clinics ({} descriptors each, {} kept for everything else); lower it, or raise the limit (ulimit -n, or LimitNOFILE in the service's unit)",
            fds::PER_HANDLE,
            fds::RESERVED
        ),
        Some(cap) => Ok((cap, budget)),
        None => Ok((fds::default_cap(budget), budget)),
    }
}

/// Opens the data directory as the settings say. Every database it opens streams to the
/// replica (see [`replica::watch`]).
pub async fn open_platform(global: &Global) -> anyhow::Result<Platform> {
    replica::watch(global)?;
    let mut store = StoreConfig::new(&global.data_dir);
    let (max_open, max_handles) = handle_budget(global.max_open_tenants)?;
    store.max_open = max_open;
    store.max_handles = Some(max_handles);
    store.idle_timeout = Duration::from_secs(global.tenant_idle_secs);
    store.fetch_missing = replica::fetcher().map(|f| f as Arc<dyn ward_tenancy::FetchMissing>);
    let key = match &global.master_key {
        Some(hex) => MasterKeySource::Configured(hex.clone()),
        None => MasterKeySource::DataDirFile,
    };
    Platform::open(store, key, Arc::new(SystemClock))
        .await
        .with_context(|| {
            let unfinished = global.master_key.is_none()
                && global
                    .data_dir
                    .join(ward_control::rotation::NEXT_KEY_FILE)
                    .exists();
            format!(
                "cannot open the data directory {}{}",
                global.data_dir.display(),
                if unfinished {
                    " (a master-key rotation is unfinished: run `ward keys rotate-master` again to finish it)"
                } else {
                    ""
                }
            )
        })
}

/// Closes the clinic databases a command opened, waiting up to 30 seconds for each to
/// finish what it is doing.
pub async fn close_platform(platform: &Platform) {
    platform.tenants.shutdown(Duration::from_secs(30)).await;
}

#[cfg(test)]
mod tests {
    use super::{Cli, Global};
    use clap::Parser as _;

    fn global(data: &std::path::Path, replica: Option<&str>) -> Global {
        let mut args = vec![
            "ward".to_owned(),
            "--data-dir".to_owned(),
            data.display().to_string(),
        ];
        if let Some(r) = replica {
            args.extend(["--replica-url".to_owned(), r.to_owned()]);
        }
        args.push("status".to_owned());
        Cli::try_parse_from(args).map(|c| c.global).unwrap()
    }

    #[test]
    fn attachments_follow_the_replica_unless_told_or_already_stored_locally() {
        let dir = tempfile::tempdir().unwrap();
        let local = format!("file://{}", dir.path().join("attachments").display());
        // Nothing set: the data folder.
        assert_eq!(
            super::attachment_url(&global(dir.path(), None), None),
            local
        );
        // A replica: its store, under attachments/.
        let g = global(dir.path(), Some("s3://ward-bucket/prod/"));
        assert_eq!(
            super::attachment_url(&g, None),
            "s3://ward-bucket/prod/attachments"
        );
        // Named: as named.
        assert_eq!(
            super::attachment_url(&g, Some("s3://other/files")),
            "s3://other/files"
        );
        // Files already in the data folder keep it, so none is left behind.
        std::fs::create_dir_all(dir.path().join("attachments/a")).unwrap();
        assert_eq!(
            super::attachment_url(&g, None),
            "s3://ward-bucket/prod/attachments",
            "an empty folder does not count"
        );
        std::fs::write(dir.path().join("attachments/a/0123"), b"x").unwrap();
        assert_eq!(super::attachment_url(&g, None), local);
    }
}
