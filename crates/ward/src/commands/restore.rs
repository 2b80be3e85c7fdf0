//! `ward restore`: one clinic, or the control plane, back to an earlier moment.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use uuid::Uuid;
use ward_control::backups::restore_control_plane;
use ward_control::{MasterKeySource, RestoreTarget, master_key};
use ward_core::{SystemClock, format_time, parse_time};
use ward_tenancy::backup::RestoreStep;

use crate::cli::{Global, RestoreOpts};
use crate::output::{json, note, say};

/// Testing hook: when set to a step's name (`prepare`, `exclusive`, `checkpoint`,
/// `keep_old`, `clear_sidecars`, `rename`, `migrate`), the process aborts right before
/// that step, as if killed, so tests can prove a crash at any step leaves a usable clinic.
const CRASH_AT: &str = "WARD_TEST_CRASH_AT";

fn step_name(s: RestoreStep) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("operator ({user})"),
        _ => "operator".to_owned(),
    }
}

pub async fn run(global: &Global, opts: RestoreOpts) -> anyhow::Result<ExitCode> {
    let crash_at = std::env::var(CRASH_AT).ok();
    let mut hook = move |s: RestoreStep| {
        if crash_at.as_deref() == Some(step_name(s).as_str()) {
            std::process::abort();
        }
        note(format_args!("… {s}"));
        Ok(())
    };
    let backup_id = opts
        .backup
        .as_deref()
        .map(|b| Uuid::parse_str(b).with_context(|| format!("--backup {b:?} is not a backup id")))
        .transpose()?;
    if opts.control_plane {
        let Some(id) = backup_id else {
            anyhow::bail!("restoring the control plane needs --backup <id>");
        };
        let source = match &global.master_key {
            Some(hex) => MasterKeySource::Configured(hex.clone()),
            None => MasterKeySource::DataDirFile,
        };
        let master = master_key(&global.data_dir, source)?;
        let report = restore_control_plane(
            &global.data_dir,
            super::backup_config(global),
            &master,
            id,
            &opts.reason,
            &actor(),
            opts.dry_run,
            Arc::new(SystemClock),
            &mut hook,
        )
        .await
        .context("the control plane was not restored")?;
        if opts.json {
            json(&report)?;
        } else {
            say(format_args!(
                "{} control-plane backup {} taken {} in {:.2} s",
                if report.dry_run {
                    "checked"
                } else {
                    "restored"
                },
                report.backup.id,
                format_time(report.backup.taken_at),
                report.duration_ms as f64 / 1000.0
            ));
            if let Some(p) = &report.pre_restore {
                say(format_args!(
                    "the replaced control plane was kept as {}",
                    p.display()
                ));
                say(format_args!(
                    "{} newer backups found in the backup folder were added to the catalog",
                    report.adopted
                ));
            }
            table(report.tables_before.as_ref(), &report.tables_restored);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(name) = &opts.clinic else {
        anyhow::bail!("say which clinic with --clinic <slug|id>, or --control-plane");
    };
    let target = match (&opts.at, backup_id) {
        (_, Some(id)) => RestoreTarget::Backup(id),
        (Some(at), None) => RestoreTarget::At(parse_time(at).with_context(|| {
            format!("--at {at:?} is not an RFC 3339 time such as 2026-03-01T12:00:00Z")
        })?),
        (None, None) => anyhow::bail!("say which backup with --at <time> or --backup <id>"),
    };
    let platform = super::open_platform(global).await?;
    let clinic = super::find_clinic(&platform, name).await?;
    let backups = super::backups(global, &platform);
    let quiet = opts.json;
    let result = backups
        .restore_clinic(
            clinic.id,
            target,
            &opts.reason,
            &actor(),
            opts.dry_run,
            &mut |b| {
                if !quiet {
                    note(format_args!(
                        "using backup {} taken {} ({} bytes)",
                        b.id,
                        format_time(b.taken_at),
                        b.size
                    ));
                }
            },
            &mut hook,
        )
        .await;
    platform.tenants.shutdown(Duration::from_secs(30)).await;
    let report = result.with_context(|| {
        format!(
            "clinic {} was not restored (it is as it was before)",
            clinic.slug
        )
    })?;
    if opts.json {
        json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    for s in &report.skipped {
        say(format_args!(
            "skipped backup {}: {}",
            s.backup_id.map(|i| i.to_string()).unwrap_or_default(),
            s.reason
        ));
    }
    if report.dry_run {
        say(format_args!(
            "dry run: backup {} of {} taken {} restores and checks out (schema {}); nothing was changed",
            report.backup.id,
            clinic.slug,
            format_time(report.backup.taken_at),
            report.schema_from
        ));
        table(None, &report.tables_restored);
    } else {
        say(format_args!(
            "restored {} ({}) to backup {} taken {} in {:.2} s (schema {} -> {})",
            clinic.slug,
            clinic.id,
            report.backup.id,
            format_time(report.backup.taken_at),
            report.duration_ms as f64 / 1000.0,
            report.schema_from,
            report.schema_to
        ));
        if let Some(p) = &report.pre_restore {
            say(format_args!(
                "the replaced file was kept as {} (restore it the same way to undo)",
                p.display()
            ));
        }
        let after = report
            .tables_after
            .as_ref()
            .unwrap_or(&report.tables_restored);
        table(report.tables_before.as_ref(), after);
        for w in &report.warnings {
            say(format_args!("WARNING: {w}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn table(before: Option<&BTreeMap<String, u64>>, after: &BTreeMap<String, u64>) {
    let mut names: Vec<&String> = after.keys().collect();
    if let Some(b) = before {
        names.extend(b.keys().filter(|k| !after.contains_key(*k)));
    }
    names.sort();
    say(format_args!(
        "{:<32}  {:>10}  {:>10}",
        "TABLE", "BEFORE", "AFTER"
    ));
    for n in names {
        let b = before
            .map(|b| b.get(n).map_or("-".to_owned(), u64::to_string))
            .unwrap_or_else(|| "?".to_owned());
        let a = after.get(n).map_or("-".to_owned(), u64::to_string);
        say(format_args!("{n:<32}  {b:>10}  {a:>10}"));
    }
}
