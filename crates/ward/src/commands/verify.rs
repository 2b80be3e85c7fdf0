//! `ward verify`: proofs the operator can run. `--backups` is the restore drill
//! ([`super::drill`]).

use std::process::ExitCode;

use crate::cli::{Global, VerifyOpts};

pub async fn run(global: &Global, opts: VerifyOpts) -> anyhow::Result<ExitCode> {
    // `--backups` is required by the command line; other proofs join it here.
    super::drill::run(global, opts.sample, opts.clinic.as_deref(), opts.json).await
}
