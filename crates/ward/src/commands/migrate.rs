//! `ward migrate`: the control plane, then every clinic, a few at a time.
//!
//! Each clinic migrates in its own transaction, so the run can stop anywhere and the
//! next run continues where it left off; a clinic that fails is reported and the rest
//! carry on.

use std::process::ExitCode;

use futures::StreamExt as _;
use serde::Serialize;
use ward_core::ClinicStatus;

use crate::cli::{Global, MigrateOpts};
use crate::output::{json, progress, say};

#[derive(Debug, Default, Serialize)]
struct Summary {
    control_from: u32,
    control_to: u32,
    migrated: u64,
    already_current: u64,
    failed: Vec<Failure>,
}

#[derive(Debug, Serialize)]
struct Failure {
    clinic: String,
    slug: String,
    reason: String,
}

pub async fn run(global: &Global, opts: MigrateOpts) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    let mut summary = Summary {
        control_from: platform.control_migration.from,
        control_to: platform.control_migration.to,
        ..Summary::default()
    };
    let clinics: Vec<_> = platform
        .control
        .list_clinics()
        .await?
        .into_iter()
        .filter(|c| c.status != ClinicStatus::Purged)
        .collect();
    let bar = progress(clinics.len() as u64, "migrating clinics");
    let tenants = &platform.tenants;
    let mut results = futures::stream::iter(clinics)
        .map(|c| {
            // Each clinic on its own task: database work blocks the thread it runs on
            // (off the async workers), so futures sharing one task would migrate one
            // clinic at a time whatever --parallel says.
            let tenants = tenants.clone();
            let id = c.id;
            let task = tokio::spawn(async move { tenants.migrate_clinic(id).await });
            async move { (c, task.await) }
        })
        .buffer_unordered(opts.parallel as usize);
    while let Some((clinic, result)) = results.next().await {
        let reason = match result {
            Ok(Ok(outcome)) if outcome.changed() => {
                summary.migrated += 1;
                None
            }
            Ok(Ok(_)) => {
                summary.already_current += 1;
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the migration stopped unexpectedly: {e}")),
        };
        if let Some(reason) = reason {
            summary.failed.push(Failure {
                clinic: clinic.id.to_string(),
                slug: clinic.slug.to_string(),
                reason,
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    tenants.shutdown(std::time::Duration::from_secs(30)).await;
    if opts.json {
        json(&summary)?;
    } else {
        say(format_args!(
            "control plane: schema {} -> {}",
            summary.control_from, summary.control_to
        ));
        say(format_args!(
            "clinics: {} migrated, {} already current, {} failed",
            summary.migrated,
            summary.already_current,
            summary.failed.len()
        ));
        for f in &summary.failed {
            say(format_args!(
                "  FAILED {} ({}): {}",
                f.slug, f.clinic, f.reason
            ));
        }
    }
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
