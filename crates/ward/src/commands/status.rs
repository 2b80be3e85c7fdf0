//! `ward status`: the platform's health from the data directory's control plane, as
//! the operator listener's `/status` shows it (less what only the serving process knows).

use std::process::ExitCode;

use ward_core::{Clock as _, SystemClock};
use ward_web::status::StatusReport;

use crate::cli::{Global, StatusOpts};
use crate::output::{json, say};

pub async fn run(global: &Global, opts: StatusOpts) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    super::replica::report_status(global);
    let report = StatusReport::gather(&platform.control, SystemClock.now()).await;
    if opts.json {
        json(&report)?;
    } else {
        say(report.to_string().trim_end());
    }
    Ok(if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
