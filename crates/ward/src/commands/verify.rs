//! `ward verify`: proves the data has not been damaged or altered.
//!
//! For each clinic that still has data: SQLCipher's `cipher_integrity_check` (every
//! page's HMAC) and SQLite's `integrity_check`, damaged pages named by their table or
//! index; then the audit chain
//! recomputed end to end, and its head compared with the anchor the control plane keeps.
//! Then the control plane's own auth log chain. Any problem is reported precisely (which
//! clinic, the first bad sequence number, what is wrong) and makes the exit status 1.
//!
//! Each check of a clinic is one function returning its part of [`ClinicReport`].
//! `--backups` runs the restore drill instead ([`super::drill`]).

use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;
use ward_clinic::audit::{self, ChainReport, Head};
use ward_control::{ClinicRecord, ClinicRef, Platform};
use ward_core::ClinicStatus;

use crate::cli::{Global, VerifyOpts};
use crate::output::{json, progress, say};

/// Everything `ward verify` found.
#[derive(Debug, Serialize)]
struct Report {
    /// Whether every check passed.
    ok: bool,
    /// The control plane's auth log.
    auth_log: LogCheck,
    /// One entry per clinic checked.
    clinics: Vec<ClinicReport>,
}

/// A chain's verdict, or why it could not be checked.
#[derive(Debug, Serialize)]
struct LogCheck {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<ChainReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl LogCheck {
    fn from_result<E: std::fmt::Display>(r: Result<ChainReport, E>) -> Self {
        match r {
            Ok(chain) => Self {
                ok: chain.is_clean(),
                chain: Some(chain),
                error: None,
            },
            Err(e) => Self {
                ok: false,
                chain: None,
                error: Some(e.to_string()),
            },
        }
    }
}

/// One clinic's checks.
#[derive(Debug, Serialize)]
struct ClinicReport {
    id: String,
    slug: String,
    ok: bool,
    /// Why the clinic could not be checked at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What the page check (`cipher_integrity_check`) and `integrity_check` reported,
    /// damaged pages named by table or index (empty when sound).
    integrity: Vec<String>,
    /// The audit chain against its anchor.
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<ChainReport>,
    /// Attachments sampled, and those whose object is missing from the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<AttachmentCheck>,
}

/// A sample of a clinic's attachments, each looked up in the attachment store.
#[derive(Debug, Serialize)]
struct AttachmentCheck {
    /// How many rows were sampled.
    checked: usize,
    /// The ids of sampled rows whose object is not in the store.
    missing: Vec<i64>,
    /// How many of them were read back whole: decrypted with their key and their
    /// digest compared (up to [`DIGEST_BUDGET`] bytes per clinic; the rest only looked
    /// up).
    digests_checked: usize,
    /// The ids of sampled rows whose object does not open with its key or does not
    /// match its digest.
    damaged: Vec<i64>,
    /// Why the store could not be asked, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// How many of a clinic's attachments `ward verify` looks up.
const ATTACHMENT_SAMPLE: i64 = 50;

/// How many bytes of a clinic's sampled files `ward verify` reads back and checks
/// against their digests; past it, the rest of the sample is only looked up.
const DIGEST_BUDGET: u64 = 256 * 1024 * 1024;

/// One sampled attachment row: id, object, key, digest, size.
type SampledRow = (i64, String, Vec<u8>, String, i64);

impl ClinicReport {
    fn new(clinic: &ClinicRecord) -> Self {
        Self {
            id: clinic.id.to_string(),
            slug: clinic.slug.to_string(),
            ok: false,
            error: None,
            integrity: Vec::new(),
            audit: None,
            attachments: None,
        }
    }

    fn failed(mut self, error: impl std::fmt::Display) -> Self {
        self.error = Some(error.to_string());
        self.ok = false;
        self
    }
}

pub async fn run(global: &Global, opts: VerifyOpts) -> anyhow::Result<ExitCode> {
    if opts.backups {
        // The restore drill (`super::drill`): the newest backups, not the live files.
        return super::drill::run(global, opts.sample, opts.clinic.as_deref(), opts.json).await;
    }
    if opts.replica {
        return replica_drill(global, &opts).await;
    }
    if opts.sample.is_some() {
        anyhow::bail!("--sample picks clinics for --backups or --replica; add one of them");
    }
    let platform = super::open_platform(global).await?;
    let clinics = clinics_to_check(&platform, opts.clinic.as_deref()).await?;

    let auth_log = LogCheck::from_result(platform.control.verify_auth_chain().await);
    let store = super::attachment_store(global, opts.attachment_url.as_deref())?;
    let bar = progress(clinics.len() as u64, "verifying clinics");
    let mut reports = Vec::with_capacity(clinics.len());
    for clinic in &clinics {
        reports.push(check_clinic(&platform, clinic, &store).await);
        bar.inc(1);
    }
    bar.finish_and_clear();
    super::close_platform(&platform).await;

    let report = Report {
        ok: auth_log.ok && reports.iter().all(|c| c.ok),
        auth_log,
        clinics: reports,
    };
    if opts.json {
        json(&report)?;
    } else {
        print(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The named clinic, or every clinic that still has data (purged ones have none).
async fn clinics_to_check(
    platform: &Platform,
    named: Option<&str>,
) -> anyhow::Result<Vec<ClinicRecord>> {
    if let Some(name) = named {
        let r: ClinicRef = name.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let clinic = platform.control.find_clinic(&r).await?;
        if clinic.status == ClinicStatus::Purged {
            anyhow::bail!(
                "clinic {} was purged: there is nothing left to verify",
                clinic.slug
            );
        }
        return Ok(vec![clinic]);
    }
    Ok(platform
        .control
        .list_clinics()
        .await
        .context("cannot list the clinics")?
        .into_iter()
        .filter(|c| c.status != ClinicStatus::Purged)
        .collect())
}

/// Checks one clinic: the file's integrity and its audit chain against the anchor.
async fn check_clinic(
    platform: &Platform,
    clinic: &ClinicRecord,
    store: &ward_web::attachments::AttachmentStore,
) -> ClinicReport {
    let report = ClinicReport::new(clinic);
    // The anchor first: the log only grows, so a head read afterwards is at least as
    // new even while the server keeps writing.
    let anchor = match platform.control.anchor_of(clinic.id).await {
        Ok(a) => a.map(|a| Head {
            seq: a.seq,
            hash: a.hash,
        }),
        Err(e) => return report.failed(format_args!("cannot read its audit anchor: {e}")),
    };
    // Every page's authentication code and the b-trees, on a connection of its own so
    // a clinic already marked damaged is checked too (and cleared when sound).
    let integrity = match platform.tenants.check_file(clinic.id).await {
        Ok(problems) => problems,
        Err(e) => return report.failed(format_args!("cannot be opened: {e}")),
    };
    if !integrity.is_empty() {
        return ClinicReport {
            ok: false,
            integrity,
            ..report
        };
    }
    let tenant = match platform.tenants.get(clinic.id).await {
        Ok(t) => t,
        Err(e) => return report.failed(format_args!("cannot be opened: {e}")),
    };
    let checked = tenant.with(|conn| audit::verify_chain(&conn, anchor)).await;
    let sampled = tenant
        .with(|conn| {
            conn.rows(
                "SELECT id, object_name, file_key, sha256, size FROM attachments \
                 WHERE deleted_at IS NULL ORDER BY random() LIMIT ?1",
                [ATTACHMENT_SAMPLE],
                |r| {
                    Ok::<SampledRow, ward_tenancy::sql::Error>((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                },
            )
        })
        .await;
    drop(tenant);
    // Verifying every clinic must not fill the cache with clinics nobody is using.
    platform.tenants.evict(clinic.id).await;
    let attachments = match sampled {
        Ok(rows) => check_attachments(store, rows).await,
        Err(e) => AttachmentCheck {
            checked: 0,
            missing: Vec::new(),
            digests_checked: 0,
            damaged: Vec::new(),
            error: Some(e.to_string()),
        },
    };
    let attachments_ok = attachments.missing.is_empty()
        && attachments.damaged.is_empty()
        && attachments.error.is_none();
    match checked {
        Ok(chain) => ClinicReport {
            ok: chain.is_clean() && attachments_ok,
            integrity,
            audit: Some(chain),
            attachments: Some(attachments),
            ..report
        },
        Err(e) => report.failed(format_args!("cannot be read: {e}")),
    }
}

/// Looks up each sampled attachment's object in the store and, within
/// [`DIGEST_BUDGET`], reads it back whole: decrypted with its key, its digest compared.
async fn check_attachments(
    store: &ward_web::attachments::AttachmentStore,
    rows: Vec<SampledRow>,
) -> AttachmentCheck {
    use futures::StreamExt as _;
    let mut check = AttachmentCheck {
        checked: rows.len(),
        missing: Vec::new(),
        digests_checked: 0,
        damaged: Vec::new(),
        error: None,
    };
    let mut budget = DIGEST_BUDGET;
    for (id, name, key, sha256, size) in rows {
        match store.exists(&name).await {
            Ok(true) => {}
            Ok(false) => {
                check.missing.push(id);
                continue;
            }
            Err(e) => {
                check.error = Some(e.to_string());
                break;
            }
        }
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        if size > budget {
            continue;
        }
        budget -= size;
        check.digests_checked += 1;
        let whole = match store.open(&name, &key, &sha256).await {
            Ok(mut plain) => {
                let mut ok = true;
                while let Some(piece) = plain.next().await {
                    if piece.is_err() {
                        ok = false;
                        break;
                    }
                }
                ok
            }
            Err(ward_web::attachments::AttachmentError::Store(e)) => {
                check.error = Some(e);
                break;
            }
            Err(_) => false,
        };
        if !whole {
            check.damaged.push(id);
        }
    }
    check
}

fn print(report: &Report) {
    match (&report.auth_log.chain, &report.auth_log.error) {
        (Some(chain), _) if chain.is_clean() => {
            say(format_args!(
                "auth log: {} events, chain intact",
                chain.rows
            ));
        }
        (Some(chain), _) => {
            say(format_args!(
                "auth log: {} events, {} problem(s):",
                chain.rows, chain.problem_count
            ));
            for p in &chain.problems {
                say(format_args!("  auth log: {p}"));
            }
        }
        (None, error) => say(format_args!(
            "auth log: cannot be checked: {}",
            error.as_deref().unwrap_or("unknown error")
        )),
    }
    let mut bad = 0;
    for c in &report.clinics {
        let name = format!("clinic {} ({})", c.slug, c.id);
        if c.ok {
            if let Some(chain) = &c.audit {
                let head = chain.head.as_ref().map_or(0, |h| h.seq);
                let anchored = chain.anchor.as_ref().map_or_else(
                    || "not anchored yet".to_owned(),
                    |a| format!("anchored at seq {}", a.seq),
                );
                say(format_args!(
                    "{name}: ok; {} audit rows, head seq {head}, {anchored}",
                    chain.rows
                ));
            }
            continue;
        }
        bad += 1;
        if let Some(e) = &c.error {
            say(format_args!("{name}: PROBLEM: {e}"));
        }
        if let Some(a) = &c.attachments {
            for id in &a.missing {
                say(format_args!(
                    "{name}: PROBLEM: attachment {id} has no object in the attachment store"
                ));
            }
            for id in &a.damaged {
                say(format_args!(
                    "{name}: PROBLEM: attachment {id} does not open with its key or does not match its digest"
                ));
            }
            if let Some(e) = &a.error {
                say(format_args!(
                    "{name}: PROBLEM: the attachment store cannot be read: {e}"
                ));
            }
        }
        for line in &c.integrity {
            say(format_args!("{name}: PROBLEM: database damaged: {line}"));
        }
        if let Some(chain) = &c.audit {
            for p in &chain.problems {
                say(format_args!("{name}: PROBLEM in the audit log at {p}"));
            }
            let more = chain
                .problem_count
                .saturating_sub(chain.problems.len() as u64);
            if more > 0 {
                say(format_args!("{name}: … and {more} more audit problem(s)"));
            }
            if let Some(seq) = chain.first_bad_seq() {
                say(format_args!(
                    "{name}: first bad audit sequence number: {seq}"
                ));
            }
        }
    }
    say(format_args!(
        "{} clinic(s) verified, {} with problems; auth log {}",
        report.clinics.len(),
        bad,
        if report.auth_log.ok {
            "intact"
        } else {
            "DAMAGED"
        }
    ));
}

/// `ward verify --replica`: rebuilds clinics from the replica into scratch files and
/// checks each as a restore would, without touching the live files.
async fn replica_drill(global: &Global, opts: &VerifyOpts) -> anyhow::Result<ExitCode> {
    use rand::seq::SliceRandom as _;
    let platform = super::open_platform(global).await?;
    let mut clinics = clinics_to_check(&platform, opts.clinic.as_deref()).await?;
    if let Some(n) = opts.sample {
        clinics.shuffle(&mut rand::thread_rng());
        clinics.truncate(n);
    }
    let target = super::replica::target(global)?;
    let scratch = global.data_dir.join("replication").join("tmp");
    std::fs::create_dir_all(&scratch)?;
    let expected = ward_tenancy::backup::Expected::unrecorded();
    let bar = progress(clinics.len() as u64, "rebuilding clinics from the replica");
    let mut results = Vec::new();
    for clinic in &clinics {
        let file = scratch.join(format!("{}-{}.drill", clinic.id, uuid::Uuid::now_v7()));
        let outcome =
            match ward_replica::restore_to(&target, &clinic.id.to_string(), None, &file).await {
                Ok(r) => platform
                    .tenants
                    .verify_backup(
                        clinic.id,
                        &file,
                        &scratch,
                        &expected,
                        &super::audit_hooks::AuditChainCheck,
                    )
                    .await
                    .map(|c| (r, c.tables.values().sum::<u64>()))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
        let _ = ward_tenancy::backup::remove_database_and_sidecars(&file);
        results.push(match outcome {
            Ok((r, rows)) => serde_json::json!({
                "clinic": clinic.id, "slug": clinic.slug.to_string(), "ok": true,
                "generation": r.generation, "last_commit": ward_replica::restore::rfc3339(r.last_commit_ms),
                "rows": rows,
            }),
            Err(e) => serde_json::json!({
                "clinic": clinic.id, "slug": clinic.slug.to_string(), "ok": false, "error": e,
            }),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    super::close_platform(&platform).await;
    let ok = results.iter().all(|r| r["ok"] == true);
    if opts.json {
        json(&serde_json::json!({"ok": ok, "target": target.url, "clinics": results}))?;
    } else {
        for r in &results {
            if r["ok"] == true {
                say(format_args!(
                    "ok      {} (generation {}, last commit {}, {} rows)",
                    r["slug"].as_str().unwrap_or_default(),
                    r["generation"].as_str().unwrap_or_default(),
                    r["last_commit"].as_str().unwrap_or_default(),
                    r["rows"]
                ));
            } else {
                say(format_args!(
                    "FAILED  {}: {}",
                    r["slug"].as_str().unwrap_or_default(),
                    r["error"].as_str().unwrap_or_default()
                ));
            }
        }
        say(format_args!(
            "{} of {} clinics rebuilt from {} and checked",
            results.iter().filter(|r| r["ok"] == true).count(),
            results.len(),
            target.url
        ));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
