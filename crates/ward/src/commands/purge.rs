//! `ward purge`: destroys clinics past their retention period.

use std::process::ExitCode;

use ward_core::{Actor, format_time};

use crate::cli::{Global, PurgeOpts};
use crate::output::{json, say};

pub async fn run(global: &Global, opts: PurgeOpts) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    let attachments = super::attachment_store(global, opts.attachment_url.as_deref())?;
    let items = super::purger(global, &platform, attachments)
        .run(&Actor::Operator, opts.dry_run)
        .await?;
    if !opts.dry_run {
        super::replica::drop_purged(global, &platform.control, &items).await;
    }
    if opts.json {
        json(&items)?;
        return Ok(ExitCode::SUCCESS);
    }
    if items.is_empty() {
        say("nothing to purge");
    }
    for item in &items {
        let c = &item.clinic;
        let closed = c.closed_at.map(format_time).unwrap_or_default();
        say(format_args!(
            "{} {} ({}, {}), closed {closed}: key and {} files/folders",
            if item.done { "purged" } else { "would purge" },
            c.slug,
            c.name,
            c.id,
            item.paths.len()
        ));
        for p in &item.paths {
            say(format_args!("  {}", p.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
