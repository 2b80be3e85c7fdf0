//! One file per command, each with a `run`.

mod audit_hooks;
mod backup;
mod clinics;
mod drill;
mod export;
mod migrate;
mod purge;
mod restore;
mod serve;
mod users;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ward_control::{BackupConfig, Backups, ClinicRecord, ClinicRef, MasterKeySource, Platform};
use ward_core::SystemClock;
use ward_tenancy::StoreConfig;

use crate::cli::{Cli, Command, Global};

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(opts) => serve::run(&cli.global, opts).await,
        Command::Migrate(opts) => migrate::run(&cli.global, opts).await,
        Command::Clinics(cmd) => clinics::run(&cli.global, cmd).await,
        Command::Users(cmd) => users::run(&cli.global, cmd).await,
        Command::Backup(opts) => backup::run(&cli.global, opts).await,
        Command::Backups(cmd) => backup::list(&cli.global, cmd).await,
        Command::Restore(opts) => restore::run(&cli.global, opts).await,
        Command::Verify(opts) => verify::run(&cli.global, opts).await,
        Command::Export(opts) => export::export(&cli.global, opts).await,
        Command::Import(opts) => export::import(&cli.global, opts).await,
        Command::Purge(opts) => purge::run(&cli.global, opts).await,
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

/// The purger of the opened data directory.
pub fn purger(global: &Global, platform: &Platform) -> ward_control::lifecycle::Purger {
    ward_control::lifecycle::Purger::new(
        platform.control.clone(),
        platform.tenants.clone(),
        backup_config(global).dir,
        global.data_dir.join("exports"),
        retention(global),
    )
}

/// The clinic an operator named, by slug or id.
pub async fn find_clinic(platform: &Platform, name: &str) -> anyhow::Result<ClinicRecord> {
    let r: ClinicRef = name.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    Ok(platform.control.find_clinic(&r).await?)
}

/// Opens the data directory as the settings say.
pub async fn open_platform(global: &Global) -> anyhow::Result<Platform> {
    let mut store = StoreConfig::new(&global.data_dir);
    store.max_open = global.max_open_tenants;
    store.idle_timeout = Duration::from_secs(global.tenant_idle_secs);
    let key = match &global.master_key {
        Some(hex) => MasterKeySource::Configured(hex.clone()),
        None => MasterKeySource::DataDirFile,
    };
    Platform::open(store, key, Arc::new(SystemClock))
        .await
        .with_context(|| {
            format!(
                "cannot open the data directory {}",
                global.data_dir.display()
            )
        })
}
