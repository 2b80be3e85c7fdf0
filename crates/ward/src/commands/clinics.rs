//! `ward clinics …`.

use std::process::ExitCode;

use anyhow::Context as _;
use ward_control::{ClinicRecord, ClinicRef};
use ward_core::{Slug, format_time};

use ward_clinic::audit::{self, Action, Actor, Entry};
use ward_control::lifecycle::Transition;

use crate::cli::{ClinicsCommand, Global, TransitionOpts};
use crate::output::{json, say};

pub async fn run(global: &Global, cmd: ClinicsCommand) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    match cmd {
        ClinicsCommand::Create {
            name,
            slug,
            json: as_json,
        } => {
            let slug = slug
                .map(|s| Slug::parse(&s).map_err(|e| anyhow::anyhow!("--slug {s:?}: {e}")))
                .transpose()?;
            let clinic = platform
                .control
                .create_clinic(&name, slug, &platform.tenants, &ward_core::Actor::Operator)
                .await
                .context("the clinic was not created")?;
            if as_json {
                json(&clinic)?;
            } else {
                say(format_args!(
                    "created clinic {} ({})\nid:   {}\nslug: {}",
                    clinic.name, clinic.status, clinic.id, clinic.slug
                ));
            }
        }
        ClinicsCommand::List { json: as_json } => {
            let clinics = platform.control.list_clinics().await?;
            if as_json {
                json(&clinics)?;
            } else if clinics.is_empty() {
                say("no clinics yet; create one with `ward clinics create --name \"…\"`");
            } else {
                say(format_args!(
                    "{:<36}  {:<24}  {:<9}  {:>6}  {}",
                    "ID", "SLUG", "STATUS", "SCHEMA", "NAME"
                ));
                for c in &clinics {
                    let schema = if c.open_error.is_some() {
                        format!("{}!", c.schema_version)
                    } else {
                        c.schema_version.to_string()
                    };
                    say(format_args!(
                        "{:<36}  {:<24}  {:<9}  {:>6}  {}",
                        c.id, c.slug, c.status, schema, c.name
                    ));
                }
                let latest = platform.tenants.latest_version();
                let behind = clinics.iter().filter(|c| c.schema_version < latest).count();
                say(format_args!(
                    "{} clinics; newest tenant schema is {latest}; {behind} behind (run `ward migrate`)",
                    clinics.len()
                ));
            }
        }
        ClinicsCommand::Show {
            clinic,
            json: as_json,
        } => {
            let r: ClinicRef = clinic.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let c = platform.control.find_clinic(&r).await?;
            if as_json {
                json(&c)?;
            } else {
                show(&c, platform.tenants.latest_version());
            }
        }
        ClinicsCommand::Suspend(o) => transition(global, &platform, o, Transition::Suspend).await?,
        ClinicsCommand::Resume(o) => transition(global, &platform, o, Transition::Resume).await?,
        ClinicsCommand::Close(o) => transition(global, &platform, o, Transition::Close).await?,
        ClinicsCommand::Reopen(o) => transition(global, &platform, o, Transition::Reopen).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Changes a clinic's status and records it in the control plane and, while the clinic
/// exists, in its own audit log.
async fn transition(
    global: &Global,
    platform: &ward_control::Platform,
    opts: TransitionOpts,
    t: Transition,
) -> anyhow::Result<()> {
    let c = super::find_clinic(platform, &opts.clinic).await?;
    let before = c.status;
    let after = platform
        .control
        .transition_clinic(
            c.id,
            t,
            &ward_core::Actor::Operator,
            &opts.reason,
            super::retention(global),
        )
        .await
        .with_context(|| format!("clinic {} was not {}", c.slug, t.as_str()))?;
    let reason = if opts.reason.trim().is_empty() {
        format!("clinic {}", t.as_str())
    } else {
        opts.reason.clone()
    };
    if let Err(e) = record_status_change(
        platform,
        c.id,
        "operator",
        &reason,
        before.as_str(),
        after.status.as_str(),
    )
    .await
    {
        crate::output::note(format_args!(
            "warning: the change is done but the clinic's audit log could not record it: {e:#}"
        ));
    }
    say(format_args!(
        "clinic {} is now {}",
        after.slug, after.status
    ));
    if t == Transition::Close {
        let until = after
            .closed_at
            .map(|at| format_time(at + super::retention(global)))
            .unwrap_or_default();
        say(format_args!(
            "its data is kept until {until}; `ward clinics reopen {}` restores access until then",
            after.slug
        ));
    }
    Ok(())
}

/// Appends a status change to the clinic's own audit log and anchors the new head.
pub async fn record_status_change(
    platform: &ward_control::Platform,
    id: ward_core::ClinicId,
    operator: &str,
    reason: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    let entry = Entry::new(
        platform.control.clock().now(),
        Actor::Operator {
            name: operator.to_owned(),
        },
        Action::OperatorAccess,
    )
    .reason(reason.trim())
    .detail(&format!("clinic status {from} → {to}"));
    record_in_audit_log(platform, id, entry).await
}

/// Appends `entry` to the clinic's own audit log, in a transaction of its own, and
/// anchors the new head in the control plane (no `ward serve` may be running to do it).
pub async fn record_in_audit_log(
    platform: &ward_control::Platform,
    id: ward_core::ClinicId,
    entry: Entry,
) -> anyhow::Result<()> {
    let tenant = platform.tenants.get(id).await?;
    let recorded = tenant
        .with(|conn| audit::in_transaction(&conn, |tx| audit::record(&tx, &entry)))
        .await?;
    platform
        .control
        .anchor(id, recorded.seq, &recorded.hash)
        .await?;
    Ok(())
}

fn show(c: &ClinicRecord, latest: u32) {
    say(format_args!("name:       {}", c.name));
    say(format_args!("id:         {}", c.id));
    say(format_args!("slug:       {}", c.slug));
    say(format_args!("status:     {}", c.status));
    say(format_args!("created:    {}", format_time(c.created_at)));
    if let Some(t) = c.closed_at {
        say(format_args!("closed:     {}", format_time(t)));
    }
    say(format_args!(
        "schema:     {} (newest {latest})",
        c.schema_version
    ));
    if let Some(e) = &c.open_error {
        let since = c.open_error_at.map(format_time).unwrap_or_default();
        say(format_args!("FAILING:    {e} (since {since})"));
    }
}
