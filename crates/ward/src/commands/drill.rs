//! `ward verify --backups`: the restore drill. Restores the newest backup of each clinic
//! (or a random sample, or one) and of the control plane into scratch files and checks
//! them; the outcome per clinic is recorded for `/status`.

use std::process::ExitCode;

use crate::cli::Global;
use crate::output::{json, progress, say};

pub async fn run(
    global: &Global,
    sample: Option<usize>,
    clinic: Option<&str>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    let backups = super::backups(global, &platform);
    let clinic = match clinic {
        Some(name) => Some(super::find_clinic(&platform, name).await?.id),
        None => None,
    };
    let total = match (clinic, sample) {
        (Some(_), _) => 1,
        (None, Some(n)) => n as u64 + 1,
        (None, None) => platform.control.list_clinics().await?.len() as u64 + 1,
    };
    let bar = progress(total, "checking backups");
    let summary = backups.drill(sample, clinic, &|_| bar.inc(1)).await;
    bar.finish_and_clear();
    super::close_platform(&platform).await;
    let summary = summary?;
    if as_json {
        json(&summary)?;
    } else {
        say(format_args!(
            "restore drill: {} checked, {} passed, {} failed in {:.1} s",
            summary.checked,
            summary.passed,
            summary.failed.len(),
            summary.duration_ms as f64 / 1000.0
        ));
        for f in &summary.failed {
            say(format_args!(
                "  FAILED {} (backup {}): {}",
                f.scope,
                f.backup_id
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                f.reason
            ));
        }
    }
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
