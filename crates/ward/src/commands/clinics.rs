//! `ward clinics …`.

use std::process::ExitCode;

use anyhow::Context as _;
use ward_control::{ClinicRecord, ClinicRef};
use ward_core::{Slug, format_time};

use crate::cli::{ClinicsCommand, Global};
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
                .create_clinic(&name, slug, &platform.tenants, "operator")
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
    }
    Ok(ExitCode::SUCCESS)
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
