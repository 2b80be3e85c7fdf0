//! The owner's export: asked for on the clinic's export page, prepared by a background
//! job, kept sealed under `<data>/exports/`, mailed as a one-time link valid 72 hours,
//! and downloaded once by the same owner (docs/export-format.md).

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use ward_clinic::audit::{self, Action, Actor};
use ward_clinic::export::{ClinicInfo, Header, StaffMember};
use ward_clinic::export_csv::Format;
use ward_control::jobs::Job;
use ward_control::{ControlError, ControlPlane, Purpose, TokenInfo};
use ward_core::{ClinicId, Email, Role, format_time};
use ward_mail::Message;
use ward_tenancy::{Tenant, sealed};

use crate::{App, BoxError, Error, record};

/// The `jobs.kind` of export jobs.
pub const JOB_KIND: &str = "export";
/// How long the download link and the sealed file live.
pub const LINK_TTL: TimeDelta = TimeDelta::hours(72);

/// Queues an export of `clinic` in `format` for the owner `user_id`, and writes
/// `entry` (who asked, when, from where) to the clinic's audit log.
pub async fn request(
    app: &App,
    tenant: &Tenant,
    clinic: ClinicId,
    user_id: &str,
    format: Format,
    entry: audit::Entry,
) -> Result<(), Error> {
    let payload = serde_json::json!({ "user_id": user_id, "format": format.as_str() }).to_string();
    app.control
        .enqueue_job(JOB_KIND, Some(clinic), &payload)
        .await?;
    let entry = entry.entity("clinic", clinic).detail(&format!(
        "export requested ({}); a download link is mailed to the owner",
        format.as_str()
    ));
    record(tenant, entry).await
}

/// Runs every due export job and deletes expired export files; returns how many jobs
/// ran. The app's workers call this every few seconds; tests call it directly.
pub async fn run_jobs(app: &App) -> usize {
    let mut n = 0;
    loop {
        let job = match app.control.claim_job(JOB_KIND).await {
            Ok(Some(job)) => job,
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "export jobs cannot be claimed");
                break;
            }
        };
        n += 1;
        let result = prepare(app, &job).await;
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error {
            tracing::error!(job = job.id, error = %e, "an export failed");
        }
        if let Err(e) = app.control.finish_job(job.id, error.as_deref()).await {
            tracing::error!(job = job.id, error = %e, "an export job could not be marked finished");
        }
    }
    delete_expired(app).await;
    n
}

/// Puts export jobs a stopped process left running back in the queue.
pub async fn requeue_interrupted(app: &App) {
    if let Err(e) = app.control.requeue_running(JOB_KIND).await {
        tracing::error!(error = %e, "interrupted export jobs could not be requeued");
    }
}

/// The header of an export of `clinic` made by `exported_by` (`user:<id>` or
/// `operator`): the clinic and its staff, as the control plane has them now.
pub async fn header(
    control: &ControlPlane,
    clinic: ClinicId,
    exported_by: String,
    now: DateTime<Utc>,
) -> Result<Header, ControlError> {
    let record = control.clinic_by_id(clinic).await?;
    let staff = control
        .clinic_staff(clinic)
        .await?
        .into_iter()
        .map(|s| StaffMember {
            user_id: s.user_id,
            name: s.name,
            email: s.email,
            role: s.role,
            member_since: s.member_since,
        })
        .collect();
    Ok(Header {
        clinic: ClinicInfo {
            id: record.id.to_string(),
            slug: record.slug.to_string(),
            name: record.name.clone(),
            status: record.status.to_string(),
            created_at: format_time(record.created_at),
        },
        exported_at: now,
        exported_by,
        staff,
    })
}

async fn prepare(app: &App, job: &Job) -> Result<(), BoxError> {
    let clinic_id = job.clinic_id.ok_or("an export job without a clinic")?;
    let payload: serde_json::Value = serde_json::from_str(&job.payload)?;
    let user_id = payload["user_id"]
        .as_str()
        .ok_or("an export job without a user")?;
    // Jobs queued before there was a choice are JSON.
    let format = Format::parse(payload["format"].as_str().unwrap_or_default())
        .ok_or("an export job with an unknown format")?;
    let user = app
        .control
        .user_by_id(user_id)
        .await?
        .ok_or("the owner's account is gone")?;
    let by = ward_core::Actor::user(&user.id).to_string();
    let header = header(&app.control, clinic_id, by, app.clock.now()).await?;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let expires = app.clock.now() + LINK_TTL;
    let dir = app.exports_dir();
    let name = format!(
        "{clinic_id}-{}-{}.sealed",
        job.id,
        expires.timestamp_millis()
    );
    let (path, partial) = (dir.join(&name), dir.join(format!("{name}.partial")));
    let tenant = app.tenants.get(clinic_id).await?;
    if format == Format::Archive {
        let files = app
            .attachment_files
            .clone()
            .ok_or("the export with files needs the attachment store, which is not set up")?;
        let written = async {
            std::fs::create_dir_all(&dir)?;
            let sealer = sealed::SealWriter::new(&key, std::fs::File::create(&partial)?)?;
            let (_, sealer) =
                crate::archive::write_archive(&tenant, &header, files.as_ref(), sealer).await?;
            sealer.finish()?.sync_all()?;
            std::fs::rename(&partial, &path)?;
            Ok::<_, BoxError>(())
        }
        .await;
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?;
        return send_link(app, job, &user, clinic_id, &name, &key, format).await;
    }
    let (p2, final_path) = (partial.clone(), path.clone());
    tenant
        .with(|conn| {
            std::fs::create_dir_all(p2.parent().ok_or("no exports folder")?)?;
            let file = std::fs::File::create(&p2)?;
            let mut sealer = sealed::SealWriter::new(&key, file)?;
            format.write(&conn, &header, &mut sealer)?;
            sealer.finish()?.sync_all()?;
            std::fs::rename(&p2, &final_path)?;
            Ok::<_, BoxError>(())
        })
        .await
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
    send_link(app, job, &user, clinic_id, &name, &key, format).await
}

/// Issues the one-time link to the sealed export `name` (opened with `key`) and mails
/// it to the owner who asked.
async fn send_link(
    app: &App,
    job: &Job,
    user: &ward_control::User,
    clinic_id: ClinicId,
    name: &str,
    key: &[u8; 32],
    format: Format,
) -> Result<(), BoxError> {
    let token_payload =
        serde_json::json!({ "file": name, "key": hex::encode(key), "format": format.as_str() })
            .to_string();
    let token = app
        .control
        .issue_token(
            Purpose::Export,
            Some(&user.id),
            Some(clinic_id),
            Some(&user.email),
            Some(&token_payload),
            LINK_TTL,
        )
        .await?;
    let link = format!("{}/export/download?token={token}", app.base_url());
    let to = Email::parse(&user.email).map_err(|e| e.to_string())?;
    app.mailer
        .send(
            &to,
            &user.name,
            Message::ExportReady {
                name: user.name.clone(),
                link,
            },
        )
        .await?;
    tracing::info!(clinic = %clinic_id, job = job.id, "export ready");
    Ok(())
}

/// Deletes export files whose link has expired (the expiry is in the file name).
async fn delete_expired(app: &App) {
    let now = app.clock.now().timestamp_millis();
    let Ok(entries) = std::fs::read_dir(app.exports_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let expiry = name
            .strip_suffix(".sealed")
            .and_then(|n| n.rsplit('-').next())
            .and_then(|n| n.parse::<i64>().ok());
        if expiry.is_some_and(|t| t <= now)
            && let Err(err) = std::fs::remove_file(e.path())
        {
            tracing::error!(error = %err, "an expired export could not be deleted");
        }
    }
}

/// The clinic's name, if `user_id` may use this download link: the owner who asked,
/// still an owner of that clinic, and the link unused and unexpired.
pub async fn check_link(app: &App, user_id: &str, token: &str) -> Result<Option<String>, Error> {
    let Some(info) = app.control.peek_token(Purpose::Export, token).await? else {
        return Ok(None);
    };
    let Some(clinic) = allowed(app, user_id, &info).await? else {
        return Ok(None);
    };
    Ok(Some(app.control.clinic_by_id(clinic).await?.name))
}

async fn allowed(app: &App, user_id: &str, info: &TokenInfo) -> Result<Option<ClinicId>, Error> {
    if info.user_id.as_deref() != Some(user_id) {
        return Ok(None);
    }
    let Some(clinic) = info.clinic_id else {
        return Ok(None);
    };
    let owner = app
        .control
        .memberships(user_id)
        .await?
        .iter()
        .any(|m| m.clinic.id == clinic && m.role == Role::Owner);
    Ok(owner.then_some(clinic))
}

/// A downloaded export.
pub struct Download {
    /// The file's name: `ward-export-<slug>-<date>.<ext>`.
    pub filename: String,
    /// Its format.
    pub format: Format,
    /// Its length in bytes.
    pub size: u64,
    /// The file, decrypted 64 KiB at a time as it is sent (checked whole once before):
    /// an export with many gigabytes of files is never held in memory. The sealed file
    /// is deleted when the stream ends or is dropped.
    pub body: futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>,
}

/// Hands what it is given to a channel, for [`stream_sealed`].
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The plaintext of the sealed file at `path`, decrypted on a blocking thread as it is
/// read; the file is deleted once the stream has ended or its reader went away. A chunk
/// that fails to open ends the stream with an error.
fn stream_sealed(
    path: std::path::PathBuf,
    key: [u8; 32],
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let result = std::fs::File::open(&path)
            .map_err(sealed::SealError::from)
            .and_then(|f| {
                sealed::open(&key, std::io::BufReader::new(f), ChannelWriter(tx.clone()))
            });
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        let _ = std::fs::remove_file(&path);
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Uses the link once: opens the sealed export, deletes it, and writes the download to
/// the clinic's audit log as by the owner `user_id` (`user_name`). `None` when the link
/// is not this owner's, used, expired, or its file gone.
pub async fn take(
    app: &App,
    user_id: &str,
    user_name: &str,
    token: &str,
) -> Result<Option<Download>, Error> {
    let Some(info) = app.control.peek_token(Purpose::Export, token).await? else {
        return Ok(None);
    };
    if allowed(app, user_id, &info).await?.is_none() {
        return Ok(None);
    }
    let Some(info) = app.control.consume_token(Purpose::Export, token).await? else {
        return Ok(None);
    };
    let clinic_id = info.clinic_id.ok_or(Error::NotFound)?;
    let payload: serde_json::Value =
        serde_json::from_str(info.payload.as_deref().unwrap_or("{}")).unwrap_or_default();
    let file = payload["file"].as_str().unwrap_or_default().to_owned();
    let format = Format::parse(payload["format"].as_str().unwrap_or_default()).unwrap_or_default();
    let Some(key) = hex::decode(payload["key"].as_str().unwrap_or_default())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
    else {
        return Ok(None);
    };
    if file.is_empty() || file.contains('/') || file.contains("..") {
        return Ok(None);
    }
    let path = app.exports_dir().join(&file);
    // Checked whole first (in constant memory), so a damaged file is refused before
    // anything is sent or recorded; then decrypted again as it is sent.
    let checked = ward_tenancy::blocking(async {
        let f = std::fs::File::open(&path)?;
        Ok::<_, BoxError>(sealed::open(
            &key,
            std::io::BufReader::new(f),
            std::io::sink(),
        )?)
    })
    .await;
    let Ok(size) = checked else {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    };
    // The download is in the clinic's log before a byte is sent; if it cannot be, the
    // link is spent and the file goes.
    let recorded = async {
        let clinic = app.control.clinic_by_id(clinic_id).await?;
        let tenant = app.tenants.get(clinic_id).await?;
        let actor = Actor::User {
            id: user_id.to_owned(),
            name: user_name.to_owned(),
            role: Role::Owner,
        };
        let entry = audit::Entry::new(app.clock.now(), actor, Action::Export)
            .entity("clinic", clinic_id)
            .detail(&format!("export downloaded ({})", format.as_str()));
        record(&tenant, entry).await?;
        Ok::<_, Error>(clinic)
    }
    .await;
    if recorded.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let clinic = recorded?;
    let filename = format!(
        "ward-export-{}-{}.{}",
        clinic.slug,
        app.clock.now().format("%Y%m%d"),
        format.extension()
    );
    Ok(Some(Download {
        filename,
        format,
        size,
        body: stream_sealed(path, key),
    }))
}
