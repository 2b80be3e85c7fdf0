//! One file per command, each with a `run`.

mod clinics;
mod migrate;
mod serve;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ward_control::{MasterKeySource, Platform};
use ward_core::SystemClock;
use ward_tenancy::StoreConfig;

use crate::cli::{Cli, Command, Global};

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(opts) => serve::run(&cli.global, opts).await,
        Command::Migrate(opts) => migrate::run(&cli.global, opts).await,
        Command::Clinics(cmd) => clinics::run(&cli.global, cmd).await,
        Command::Verify(opts) => verify::run(&cli.global, opts).await,
    }
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
