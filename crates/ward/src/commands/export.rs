//! `ward export` and `ward import`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use ward_clinic::audit::{self, Action};
use ward_clinic::export::{Header, Summary};
use ward_clinic::import;
use ward_control::{ClinicRecord, Platform};
use ward_core::Slug;

use crate::cli::{ExportFormat, ExportOpts, Global, ImportOpts};
use crate::output::{json, note, say};

/// The export header for clinic `c`: its identity and its staff, no credentials.
pub async fn header(
    platform: &Platform,
    c: &ClinicRecord,
    exported_by: &str,
) -> anyhow::Result<Header> {
    let now = platform.control.clock().now();
    Ok(ward_app::exports::header(&platform.control, c.id, exported_by.to_owned(), now).await?)
}

/// `ward export --clinic … --reason … [--out FILE]`.
pub async fn export(global: &Global, opts: ExportOpts) -> anyhow::Result<ExitCode> {
    if opts.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why the clinic's data is read");
    }
    let platform = super::open_platform(global).await?;
    let c = super::find_clinic(&platform, &opts.clinic).await?;
    let header = header(&platform, &c, "operator").await?;
    let tenant = platform
        .tenants
        .get(c.id)
        .await
        .with_context(|| format!("clinic {} cannot be opened", c.slug))?;
    let out: Box<dyn Write + Send> = match &opts.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let at = header.exported_at;
    let reason = opts.reason.clone();
    let format = match opts.format {
        ExportFormat::Json => ward_clinic::export_csv::Format::Json,
        ExportFormat::Csv => ward_clinic::export_csv::Format::Csv,
    };
    let target = opts
        .out
        .as_ref()
        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
    let (recorded, summary) = tenant
        .with(|conn| {
            // The access is recorded before a single row leaves, so even a failed
            // export is in the log.
            let recorded = audit::in_transaction(&conn, |tx| {
                audit::record_operator_access(
                    &tx,
                    at,
                    "operator",
                    &reason,
                    Action::Export,
                    Some(&format!("full export ({}) to {target}", format.as_str())),
                )
            })?;
            let summary = format.write(&conn, &header, out)?;
            Ok::<_, anyhow::Error>((recorded, summary))
        })
        .await?;
    platform
        .control
        .anchor(c.id, recorded.seq, &recorded.hash)
        .await?;
    if let Some(path) = &opts.out {
        if let Ok(f) = std::fs::File::open(path) {
            f.sync_all().ok();
        }
        report(&c, &summary, path);
    }
    Ok(ExitCode::SUCCESS)
}

fn report(c: &ClinicRecord, summary: &Summary, path: &std::path::Path) {
    let rows: u64 = summary.tables.iter().map(|(_, n)| n).sum();
    note(format_args!(
        "exported clinic {} to {}: {} tables, {rows} rows, {} bytes",
        c.slug,
        path.display(),
        summary.tables.len(),
        summary.bytes
    ));
}

/// `ward import --file … --name …`.
pub async fn import(global: &Global, opts: ImportOpts) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(&opts.file)
        .with_context(|| format!("cannot open {}", opts.file.display()))?;
    let doc = ward_tenancy::blocking(async { import::parse(file) })
        .await
        .with_context(|| format!("{} was refused; nothing was created", opts.file.display()))?;
    let platform = super::open_platform(global).await?;
    let slug = opts
        .slug
        .as_deref()
        .map(|s| Slug::parse(s).map_err(|e| anyhow::anyhow!("--slug {s:?}: {e}")))
        .transpose()?;
    let clinic = platform
        .control
        .create_clinic(&opts.name, slug, &platform.tenants, "operator")
        .await
        .context("the clinic was not created")?;
    let at = platform.control.clock().now();
    let doc = std::sync::Arc::new(doc);
    let result = async {
        let tenant = platform.tenants.get(clinic.id).await?;
        let d = doc.clone();
        let imported = tenant
            .with(|conn| {
                let imported = import::import(&conn, &d, at, "operator", "import")?;
                let head = audit::head(&conn)?;
                Ok::<_, anyhow::Error>((imported, head))
            })
            .await?;
        Ok::<_, anyhow::Error>(imported)
    }
    .await;
    let (imported, head) = match result {
        Ok(v) => v,
        Err(e) => {
            if let Err(c) = platform
                .control
                .discard_new_clinic(clinic.id, &platform.tenants)
                .await
            {
                note(format_args!(
                    "warning: the half-made clinic {} could not be removed: {c}",
                    clinic.id
                ));
            }
            return Err(e.context(format!(
                "{} was refused; nothing was created",
                opts.file.display()
            )));
        }
    };
    if let Some(h) = head {
        platform.control.anchor(clinic.id, h.seq, &h.hash).await?;
    }
    let rows: u64 = imported.tables.iter().map(|(_, n)| n).sum();
    if opts.json {
        json(&serde_json::json!({
            "id": clinic.id, "slug": clinic.slug, "name": clinic.name,
            "from": doc.clinic.id, "rows": rows,
            "tables": imported.tables.iter().map(|(t, n)| (t.clone(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
        }))?;
    } else {
        say(format_args!(
            "imported {rows} rows in {} tables into new clinic {} ({})\nid:   {}\nslug: {}",
            imported.tables.len(),
            clinic.name,
            clinic.status,
            clinic.id,
            clinic.slug
        ));
        if !doc.staff.is_empty() {
            say(format_args!(
                "the export lists {} staff members; give the new clinic its owner with `ward members add --clinic {} --email … --role owner --reason \"…\"`, then invite the others",
                doc.staff.len(),
                clinic.slug
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
