//! `ward restore`: one clinic, or the control plane, back to an earlier moment.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use uuid::Uuid;
use ward_control::backups::restore_control_plane;
use ward_control::{MasterKeySource, RestoreTarget, master_key};
use ward_core::{Actor, SystemClock, format_time, parse_time};
use ward_tenancy::backup::RestoreStep;

use crate::cli::{Global, RestoreOpts, RestoreSource};
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

fn actor() -> Actor {
    Actor::operator_login(std::env::var("USER").ok().as_deref())
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
    if opts.everything {
        return everything(global, &opts).await;
    }
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
    if let (Some(at), None, RestoreSource::Replica) = (&opts.at, backup_id, opts.from) {
        let at = parse_time(at).with_context(|| {
            format!("--at {at:?} is not an RFC 3339 time such as 2026-03-01T12:00:00Z")
        })?;
        return from_replica(global, &opts, name, at, &mut hook).await;
    }
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
    super::close_platform(&platform).await;
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

/// Rebuilds an empty data directory from the replica: the control plane, then every
/// clinic it lists, each checked (authenticated pages, integrity) as it lands.
async fn everything(global: &Global, opts: &RestoreOpts) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let data = &global.data_dir;
    if data.join("control.db").exists() {
        anyhow::bail!(
            "--everything rebuilds an empty data directory, and {} already holds a control plane; use an empty one (WARD_DATA_DIR)",
            data.display()
        );
    }
    if global.master_key.is_none() && !data.join("master.key").exists() {
        anyhow::bail!(
            "--everything needs the master key the clinics' keys are wrapped with: set WARD_MASTER_KEY (or put master.key in {})",
            data.display()
        );
    }
    let until = match &opts.at {
        Some(at) => Some(
            parse_time(at)
                .with_context(|| {
                    format!("--at {at:?} is not an RFC 3339 time such as 2026-03-01T12:00:00Z")
                })?
                .timestamp_millis()
                + 999,
        ),
        None => None,
    };
    super::replica::off();
    let target = super::replica::target(global)?;
    std::fs::create_dir_all(data.join("clinics"))?;
    ward_tenancy::format::check_or_mark(data, true).map_err(anyhow::Error::msg)?;
    let control = ward_replica::restore_to(&target, "control", until, &data.join("control.db"))
        .await
        .context("the control plane could not be rebuilt from the replica")?;
    note(format_args!(
        "control plane rebuilt (generation {}, last commit {})",
        control.generation,
        ward_replica::restore::rfc3339(control.last_commit_ms)
    ));
    let platform = super::open_platform(global).await?;
    let clinics: Vec<_> = platform
        .control
        .list_clinics()
        .await?
        .into_iter()
        .filter(|c| c.status != ward_core::ClinicStatus::Purged)
        .collect();
    let bar = crate::output::progress(clinics.len() as u64, "clinics");
    let mut failed = Vec::new();
    let mut restored = 0usize;
    for clinic in &clinics {
        let path = platform.tenants.path_of(clinic.id);
        let result =
            match ward_replica::restore_to(&target, &clinic.id.to_string(), until, &path).await {
                Ok(_) => platform
                    .tenants
                    .check_file(clinic.id)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|problems| {
                        if problems.is_empty() {
                            Ok(())
                        } else {
                            Err(problems.join("; "))
                        }
                    }),
                Err(ward_replica::ReplicaError::NotFound(_)) => Err(
                    "the replica holds no copy of it (created moments before the last shipment)"
                        .to_owned(),
                ),
                Err(e) => Err(e.to_string()),
            };
        match result {
            Ok(()) => restored += 1,
            Err(e) => {
                let _ = ward_tenancy::backup::remove_database_and_sidecars(&path);
                failed.push(serde_json::json!({"clinic": clinic.id, "slug": clinic.slug.to_string(), "error": e}));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    super::close_platform(&platform).await;
    let secs = started.elapsed().as_secs_f64();
    if opts.json {
        json(&serde_json::json!({
            "control": control, "clinics": clinics.len(), "restored": restored,
            "failed": failed, "duration_ms": (secs * 1000.0) as u64,
        }))?;
    } else {
        say(format_args!(
            "rebuilt the control plane and {restored} of {} clinics from {} in {secs:.1} s",
            clinics.len(),
            target.url
        ));
        for f in &failed {
            say(format_args!("FAILED {}: {}", f["slug"], f["error"]));
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The whole second: "10:15:03" holds every commit made before 10:15:04.
fn until_of(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis() + 999
}

/// `--as-new`: the clinic as it was, rebuilt into a new clinic under its own key.
#[expect(clippy::too_many_arguments, reason = "the restore's pieces, passed on")]
async fn as_new(
    platform: &ward_control::Platform,
    target: &ward_replica::Target,
    source: &ward_control::ClinicRecord,
    new_name: &str,
    until: i64,
    opts: &RestoreOpts,
    scratch: &std::path::Path,
    scratch_dir: &std::path::Path,
    hook: ward_tenancy::backup::StepHook<'_>,
    store: &ward_web::attachments::AttachmentStore,
) -> anyhow::Result<ExitCode> {
    use ward_tenancy::db::{self, Durability};
    let mut written = Vec::new();
    let started = std::time::Instant::now();
    let rebuilt = ward_replica::restore_to(target, &source.id.to_string(), Some(until), scratch)
        .await
        .with_context(|| {
            format!(
                "clinic {} could not be rebuilt from the replica",
                source.slug
            )
        })?;
    let created = platform
        .control
        .create_clinic(new_name, None, &platform.tenants, &actor())
        .await
        .context("the inspection copy's clinic could not be created")?;
    let result = async {
        // The copy gets the new clinic's own key: nothing links the two files.
        let old_key = platform.tenants.data_key(source.id).await?;
        let new_key = platform.tenants.data_key(created.id).await?;
        let opened = db::open_now(scratch, &old_key, false, Durability::Full)?;
        db::rekey(&opened.conn, &new_key)?;
        // Its files get objects of their own, or whatever is done to the copy (a
        // delete, an erasure, its purge) would remove the live clinic's files.
        let files = own_objects(&opened.conn, store, &mut written).await?;
        drop(opened);
        let lock = platform.tenants.lock(created.id, &opts.reason).await?;
        let expected = ward_tenancy::backup::Expected::unrecorded();
        let stamp = format!("asnew-{}", Uuid::now_v7());
        platform
            .tenants
            .restore(
                created.id,
                &lock,
                scratch,
                &expected,
                &super::audit_hooks::AuditChainCheck,
                &stamp,
                false,
                hook,
            )
            .await?;
        let entry = ward_control::backups::RestoreAuditEntry {
            clinic: created.id,
            actor: actor(),
            reason: opts.reason.clone(),
            backup_id: Uuid::nil(),
            backup_taken_at: ward_core::Clock::now(&SystemClock),
            at: ward_core::Clock::now(&SystemClock),
        };
        let detail = format!(
            "copy of clinic {} as of {} (replica generation {})",
            source.id,
            ward_replica::restore::rfc3339(rebuilt.last_commit_ms),
            rebuilt.generation
        );
        let control = platform.control.clone();
        platform
            .tenants
            .with_locked(created.id, &lock, |conn| async move {
                super::audit_hooks::record_restore(&control, &conn, &entry, &detail).await
            })
            .await?
            .map_err(anyhow::Error::msg)?;
        anyhow::Ok(files)
    }
    .await;
    if result.is_err() {
        for name in &written {
            let _ = store.remove(name).await;
        }
    }
    let _ = ward_tenancy::backup::remove_database_and_sidecars(scratch);
    let _ = scratch_dir;
    super::close_platform(platform).await;
    let files = result.with_context(|| {
        format!(
            "the copy of {} was not made (the new clinic {} holds no data; close it with ward clinics close)",
            source.slug, created.slug
        )
    })?;
    if opts.json {
        json(&serde_json::json!({
            "source": source.id, "clinic": created.id, "slug": created.slug.to_string(),
            "replica": rebuilt, "duration_ms": started.elapsed().as_millis() as u64,
            "files_copied": files,
        }))?;
    } else {
        say(format_args!(
            "restored {} as of {} into the new clinic {} ({}) with {files} files copied in {:.2} s; the live clinic is unchanged",
            source.slug,
            ward_replica::restore::rfc3339(rebuilt.last_commit_ms),
            created.slug,
            created.id,
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// One attachment row of a copy, with the objects it names.
struct CopiedRow {
    id: i64,
    file: (String, Vec<u8>, String),
    thumbnail: Option<(String, Vec<u8>, String)>,
}

/// Stores a new copy of object `name` (opened with `key`, checked against `sha256`)
/// under a new name and key, noting the new name in `written`.
async fn copy_object(
    store: &ward_web::attachments::AttachmentStore,
    (name, key, sha256): &(String, Vec<u8>, String),
    written: &mut Vec<String>,
) -> anyhow::Result<Option<(String, [u8; 32])>> {
    if !store.exists(name).await? {
        return Ok(None);
    }
    let plain = store.open(name, key, sha256).await?;
    let stored = store.put(plain).await?;
    written.push(stored.object_name.clone());
    Ok(Some((stored.object_name, stored.key)))
}

/// Gives an `--as-new` copy (open on `conn`) objects of its own: every attachment's
/// file and thumbnail still in the store is decrypted and stored again under a new
/// name and key (the name is bound into the encryption, so objects cannot simply be
/// copied), and the copy's rows name them, in one transaction. Files of erased
/// patients (their keys are zeroed) and objects no longer in the store are left as
/// they are. Returns how many files were copied; the new objects' names are added to
/// `written` as they are stored, for removal if the copy is not made.
async fn own_objects(
    conn: &ward_tenancy::sql::Connection,
    store: &ward_web::attachments::AttachmentStore,
    written: &mut Vec<String>,
) -> anyhow::Result<usize> {
    let has_table = conn
        .first_row_now(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'attachments'",
            (),
        )?
        .is_some();
    if !has_table {
        return Ok(0);
    }
    let mut rows = Vec::new();
    conn.for_each_row(
        "SELECT id, object_name, file_key, sha256, thumbnail_object, thumbnail_key, thumbnail_sha256 \
         FROM attachments WHERE objects_removed_at IS NULL ORDER BY id",
        (),
        |r| {
            let thumbnail = match (
                r.get::<Option<String>>(4)?,
                r.get::<Option<Vec<u8>>>(5)?,
                r.get::<Option<String>>(6)?,
            ) {
                (Some(n), Some(k), Some(d)) => Some((n, k, d)),
                _ => None,
            };
            rows.push(CopiedRow {
                id: r.get(0)?,
                file: (r.get(1)?, r.get(2)?, r.get(3)?),
                thumbnail,
            });
            Ok::<_, ward_tenancy::sql::Error>(())
        },
    )?;
    let mut updates = Vec::new();
    for row in rows {
        if row.file.1.iter().all(|b| *b == 0) {
            continue;
        }
        let Some((file, file_key)) = copy_object(store, &row.file, written)
            .await
            .with_context(|| format!("attachment {} could not be copied", row.id))?
        else {
            continue;
        };
        let thumbnail = match &row.thumbnail {
            Some(t) => copy_object(store, t, written).await.with_context(|| {
                format!("attachment {}'s thumbnail could not be copied", row.id)
            })?,
            None => None,
        };
        updates.push((row.id, file, file_key, thumbnail));
    }
    conn.execute_batch_now("BEGIN IMMEDIATE")?;
    let applied = (|| {
        for (id, file, key, thumbnail) in &updates {
            conn.execute_now(
                "UPDATE attachments SET object_name = ?2, file_key = ?3 WHERE id = ?1",
                ward_tenancy::sql::params![*id, file.clone(), key.to_vec()],
            )?;
            if let Some((name, key)) = thumbnail {
                conn.execute_now(
                    "UPDATE attachments SET thumbnail_object = ?2, thumbnail_key = ?3 WHERE id = ?1",
                    ward_tenancy::sql::params![*id, name.clone(), key.to_vec()],
                )?;
            }
        }
        Ok::<_, ward_tenancy::sql::Error>(())
    })();
    match applied {
        Ok(()) => conn.execute_batch_now("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch_now("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(updates.len())
}

/// Rebuilds clinic `name` from the replica as it was at the end of second `at`, checks
/// it, and swaps it in under the operator lock (or only checks it, with --dry-run).
async fn from_replica(
    global: &Global,
    opts: &RestoreOpts,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
    hook: ward_tenancy::backup::StepHook<'_>,
) -> anyhow::Result<ExitCode> {
    use ward_tenancy::backup::Expected;
    if opts.reason.trim().is_empty() {
        anyhow::bail!("a restore needs a reason (--reason \"…\")");
    }
    let started = std::time::Instant::now();
    let platform = super::open_platform(global).await?;
    let clinic = super::find_clinic(&platform, name).await?;
    let target = super::replica::target(global)?;
    let scratch_dir = global.data_dir.join("replication").join("tmp");
    std::fs::create_dir_all(&scratch_dir)?;
    let scratch = scratch_dir.join(format!("{}-{}.restoring", clinic.id, Uuid::now_v7()));
    let expected = Expected::unrecorded();
    if let Some(new_name) = &opts.as_new {
        return as_new(
            &platform,
            &target,
            &clinic,
            new_name,
            until_of(at),
            opts,
            &scratch,
            &scratch_dir,
            hook,
            &super::attachment_store(global, opts.attachment_url.as_deref())?
                .with_max_bytes(u64::MAX),
        )
        .await;
    }
    let lock = if opts.dry_run {
        None
    } else {
        Some(
            platform
                .tenants
                .lock(clinic.id, &opts.reason)
                .await
                .with_context(|| {
                    format!(
                        "clinic {} is locked by another operator; try again when it has finished",
                        clinic.slug
                    )
                })?,
        )
    };
    let until = until_of(at);
    let rebuilt =
        ward_replica::restore_to(&target, &clinic.id.to_string(), Some(until), &scratch).await;
    let rebuilt = match rebuilt {
        Ok(r) => r,
        Err(e) => {
            let _ = ward_tenancy::backup::remove_database_and_sidecars(&scratch);
            return Err(anyhow::anyhow!(e)).with_context(|| {
                format!(
                    "clinic {} was not restored (it is as it was before)",
                    clinic.slug
                )
            });
        }
    };
    note(format_args!(
        "rebuilt from generation {} ({} segments, {} transactions, last at {})",
        rebuilt.generation,
        rebuilt.segments,
        rebuilt.commits,
        ward_replica::restore::rfc3339(rebuilt.last_commit_ms)
    ));
    let check = super::audit_hooks::AuditChainCheck;
    let result = match &lock {
        None => platform
            .tenants
            .verify_backup(clinic.id, &scratch, &scratch_dir, &expected, &check)
            .await
            .map(|checked| (checked.tables, None, None)),
        Some(lock) => {
            let stamp = at.format("%Y%m%dT%H%M%SZ").to_string();
            platform
                .tenants
                .restore(
                    clinic.id, lock, &scratch, &expected, &check, &stamp, false, hook,
                )
                .await
                .map(|o| (o.checked.tables, o.before, o.pre_restore))
        }
    };
    let _ = ward_tenancy::backup::remove_database_and_sidecars(&scratch);
    let (tables, before, pre_restore) = match result {
        Ok(v) => v,
        Err(e) => {
            super::close_platform(&platform).await;
            return Err(anyhow::anyhow!(e)).with_context(|| {
                format!(
                    "clinic {} was not restored (it is as it was before)",
                    clinic.slug
                )
            });
        }
    };
    let mut warnings = Vec::new();
    if let Some(lock) = &lock {
        let entry = ward_control::backups::RestoreAuditEntry {
            clinic: clinic.id,
            actor: actor(),
            reason: opts.reason.clone(),
            backup_id: Uuid::nil(),
            backup_taken_at: at,
            at: ward_core::Clock::now(&SystemClock),
        };
        let detail = format!(
            "replica generation {} at {}",
            rebuilt.generation,
            ward_replica::restore::rfc3339(rebuilt.last_commit_ms)
        );
        let control = platform.control.clone();
        let written = platform
            .tenants
            .with_locked(clinic.id, lock, |conn| async move {
                super::audit_hooks::record_restore(&control, &conn, &entry, &detail).await
            })
            .await;
        if let Err(e) = written.map_err(|e| e.to_string()).and_then(|r| r) {
            warnings.push(format!(
                "the clinic's audit log entry could not be written: {e}"
            ));
        }
        if let Some(r) = super::replica::replicator() {
            r.forget(&clinic.id.to_string());
        }
    }
    drop(lock);
    super::close_platform(&platform).await;
    if opts.json {
        json(&serde_json::json!({
            "clinic": clinic.id,
            "dry_run": opts.dry_run,
            "at": format_time(at),
            "replica": rebuilt,
            "tables_restored": tables,
            "tables_before": before,
            "pre_restore": pre_restore,
            "warnings": warnings,
            "duration_ms": started.elapsed().as_millis() as u64,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if opts.dry_run {
        say(format_args!(
            "dry run: {} as of {} rebuilds from the replica and checks out; nothing was changed",
            clinic.slug,
            format_time(at)
        ));
    } else {
        say(format_args!(
            "restored {} ({}) to {} from the replica in {:.2} s",
            clinic.slug,
            clinic.id,
            format_time(at),
            started.elapsed().as_secs_f64()
        ));
        if let Some(p) = &pre_restore {
            say(format_args!(
                "the replaced file was kept as {}",
                p.display()
            ));
        }
    }
    table(before.as_ref(), &tables);
    for w in &warnings {
        say(format_args!("WARNING: {w}"));
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
