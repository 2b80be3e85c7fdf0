//! `ward backup` and `ward backups list`.

use std::process::ExitCode;

use ward_control::backups::{Failure, PassSummary};
use ward_control::{BackupRecord, ControlError, Scope};
use ward_core::{Actor, format_time};
use ward_tenancy::TenantError;

use crate::cli::{BackupOpts, BackupsCommand, Global};
use crate::output::{json, progress, say};

pub async fn run(global: &Global, opts: BackupOpts) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    let backups = super::backups(global, &platform);
    let summary = match &opts.clinic {
        Some(name) => {
            let clinic = super::find_clinic(&platform, name).await?;
            let scope = Scope::Clinic(clinic.id);
            let started = std::time::Instant::now();
            let mut s = PassSummary {
                considered: 1,
                changed: 1,
                ..PassSummary::default()
            };
            match backups.backup(scope, &Actor::Operator.to_string()).await {
                Ok(r) if r.verify_error.is_none() => {
                    s.backed_up = 1;
                    s.bytes = r.size;
                    if !opts.json {
                        say(format_args!(
                            "backed up {} ({}) as {} ({} bytes, verified)",
                            clinic.slug, clinic.id, r.id, r.size
                        ));
                    }
                    s.removed = backups.apply_retention(scope).await? as u64;
                }
                Ok(r) => s.failed.push(Failure {
                    scope: scope.key(),
                    backup_id: Some(r.id),
                    reason: r.verify_error.unwrap_or_default(),
                }),
                Err(ControlError::Tenant(TenantError::Maintenance(_))) => s.failed.push(Failure {
                    scope: scope.key(),
                    backup_id: None,
                    reason: "the clinic is locked by an operator (restore or purge running)".into(),
                }),
                Err(e) => s.failed.push(Failure {
                    scope: scope.key(),
                    backup_id: None,
                    reason: e.to_string(),
                }),
            }
            s.duration_ms = started.elapsed().as_millis() as u64;
            s
        }
        None => {
            let total = platform.control.list_clinics().await?.len() as u64 + 1;
            let bar = progress(total, "backing up");
            let s = backups
                .pass(true, &Actor::Operator.to_string(), &|_| bar.inc(1))
                .await?;
            bar.finish_and_clear();
            s
        }
    };
    super::close_platform(&platform).await;
    if opts.json {
        json(&summary)?;
    } else {
        say(format_args!(
            "{} backed up ({:.1} MiB) in {:.1} s, {} failed, {} skipped (locked), {} old backups removed",
            summary.backed_up,
            summary.bytes as f64 / (1024.0 * 1024.0),
            summary.duration_ms as f64 / 1000.0,
            summary.failed.len(),
            summary.skipped_locked,
            summary.removed,
        ));
        for f in &summary.failed {
            say(format_args!("  FAILED {}: {}", f.scope, f.reason));
        }
    }
    Ok(
        if summary.failed.is_empty() && summary.skipped_locked == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

pub async fn list(global: &Global, cmd: BackupsCommand) -> anyhow::Result<ExitCode> {
    let BackupsCommand::List {
        clinic,
        control_plane: _,
        deleted,
        json: as_json,
    } = cmd;
    let platform = super::open_platform(global).await?;
    let scope = match &clinic {
        Some(name) => Scope::Clinic(super::find_clinic(&platform, name).await?.id),
        None => Scope::Control,
    };
    let list = platform.control.list_backups(scope, deleted).await?;
    if as_json {
        json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        say(format_args!(
            "{scope} has no backups yet; take one with `ward backup`"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    say(format_args!(
        "{:<36}  {:<24}  {:>12}  {:<9}  {:>6}  {}",
        "BACKUP", "TAKEN AT", "SIZE", "TRIGGER", "SCHEMA", "STATE"
    ));
    for b in &list {
        say(format_args!(
            "{:<36}  {:<24}  {:>12}  {:<9}  {:>6}  {}",
            b.id,
            format_time(b.taken_at),
            b.size,
            b.trigger,
            b.schema_version,
            state(b)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn state(b: &BackupRecord) -> String {
    if let Some(t) = b.deleted_at {
        return format!("removed {}", format_time(t));
    }
    match (&b.verify_error, b.verified_at) {
        (Some(e), _) => format!("FAILED: {e}"),
        (None, Some(t)) => format!("verified {}", format_time(t)),
        (None, None) => "not yet checked".into(),
    }
}
