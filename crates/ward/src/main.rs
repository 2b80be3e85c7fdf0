//! `ward`: the server and the operator's commands.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc for Rust and, through its override, for SQLite's own allocations too: a
/// clinic's open, page and close allocate and free thousands of small blocks, and
/// glibc's allocator spent about an eighth of a request's CPU time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_logging(&cli.global.log, cli.global.log_format);
    if let Err(e) = ward_tenancy::memory::small_pages() {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off; memory use will be higher");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::fail(&anyhow::anyhow!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            output::fail(&e);
            ExitCode::FAILURE
        }
    }
}
