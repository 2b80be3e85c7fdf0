//! `ward export` and `ward import`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use ward_clinic::audit::{self, Action};
use ward_clinic::export::{Header, Summary};
use ward_clinic::import;
use ward_control::{ClinicRecord, Platform};
use ward_core::{Actor, Slug};

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
    let header = header(&platform, &c, &Actor::Operator.to_string()).await?;
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
        ExportFormat::Zip => ward_clinic::export_csv::Format::Archive,
    };
    let store = match format {
        ward_clinic::export_csv::Format::Archive => Some(super::attachment_store(
            global,
            opts.attachment_url.as_deref(),
        )?),
        _ => None,
    };
    let target = opts
        .out
        .as_ref()
        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
    let record = |conn: &ward_tenancy::Db| {
        // The access is recorded before a single row leaves, so even a failed
        // export is in the log.
        audit::in_transaction(conn, |tx| {
            audit::record_operator_access(
                &tx,
                at,
                "operator",
                &reason,
                Action::Export,
                Some(&format!("full export ({}) to {target}", format.as_str())),
            )
        })
    };
    let (recorded, summary) = match &store {
        Some(store) => {
            let recorded = tenant.with(|conn| record(&conn)).await?;
            let (summary, mut out) = ward_app::archive::write_archive(&tenant, &header, store, out)
                .await
                .map_err(|e| anyhow::anyhow!("the export failed: {e}"))?;
            out.flush()?;
            (recorded, summary)
        }
        None => {
            tenant
                .with(|conn| {
                    let recorded = record(&conn)?;
                    let summary = format.write(&conn, &header, out)?;
                    Ok::<_, anyhow::Error>((recorded, summary))
                })
                .await?
        }
    };
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
    let files = if summary.files > 0 {
        format!(", {} attachment files", summary.files)
    } else {
        String::new()
    };
    note(format_args!(
        "exported clinic {} to {}: {} tables, {rows} rows{files}, {} bytes",
        c.slug,
        path.display(),
        summary.tables.len(),
        summary.bytes
    ));
}

/// `ward import --file … --name …`.
pub async fn import(global: &Global, opts: ImportOpts) -> anyhow::Result<ExitCode> {
    let refused = || format!("{} was refused; nothing was created", opts.file.display());
    let is_archive = ward_clinic::archive::is_zip(&opts.file)
        .with_context(|| format!("cannot open {}", opts.file.display()))?;
    // An archive is read and every file checked against its row before anything is
    // written; a JSON export of a clinic that had files is refused (it has the rows,
    // not the files).
    let (doc, files) = if is_archive {
        let (doc, files) = ward_app::archive::read(&opts.file)
            .await
            .with_context(refused)?;
        (doc, Some(files))
    } else {
        let file = std::fs::File::open(&opts.file)
            .with_context(|| format!("cannot open {}", opts.file.display()))?;
        let doc = ward_tenancy::blocking(async {
            let doc = import::parse(file)?;
            ward_clinic::archive::check_plain_json(&doc)?;
            Ok::<_, import::ImportError>(doc)
        })
        .await
        .with_context(refused)?;
        (doc, None)
    };
    let store = match files {
        // The files were accepted once; their size is checked against their rows.
        Some(_) => Some(
            super::attachment_store(global, opts.attachment_url.as_deref())?
                .with_max_bytes(u64::MAX),
        ),
        None => None,
    };
    let platform = super::open_platform(global).await?;
    let slug = opts
        .slug
        .as_deref()
        .map(|s| Slug::parse(s).map_err(|e| anyhow::anyhow!("--slug {s:?}: {e}")))
        .transpose()?;
    let clinic = platform
        .control
        .create_clinic(&opts.name, slug, &platform.tenants, &Actor::Operator)
        .await
        .context("the clinic was not created")?;
    let at = platform.control.clock().now();
    let (from, staff) = (doc.clinic.id.clone(), doc.staff.len());
    let file_count = files.as_ref().map_or(0, Vec::len);
    let result = async {
        let tenant = platform.tenants.get(clinic.id).await?;
        if let (Some(files), Some(store)) = (&files, &store) {
            return ward_app::archive::import(
                &tenant, doc, files, &opts.file, store, at, "operator", "import",
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"));
        }
        let imported = tenant
            .with(|conn| {
                let imported = import::import(&conn, &doc, at, "operator", "import")?;
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
            "from": from, "rows": rows, "files": file_count,
            "tables": imported.tables.iter().map(|(t, n)| (t.clone(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
        }))?;
    } else {
        say(format_args!(
            "imported {rows} rows in {} tables and {file_count} attachment files into new clinic {} ({})\nid:   {}\nslug: {}",
            imported.tables.len(),
            clinic.name,
            clinic.status,
            clinic.id,
            clinic.slug
        ));
        if staff > 0 {
            say(format_args!(
                "the export lists {staff} staff members; give the new clinic its owner with `ward members add --clinic {} --email … --role owner --reason \"…\"`, then invite the others",
                clinic.slug
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
