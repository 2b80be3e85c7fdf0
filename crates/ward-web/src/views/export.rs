//! The owner's export: requested on `/c/{slug}/export`, prepared by a background job,
//! kept sealed under `<data>/exports/`, mailed as a one-time link valid 72 hours, and
//! downloaded once from `/export/download` by the same owner (docs/export-format.md).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::TimeDelta;
use rand::RngCore;
use serde::Deserialize;
use ward_clinic::audit::{self, Action};
use ward_clinic::export::{ClinicInfo, Header, StaffMember};
use ward_clinic::export_csv::Format;
use ward_control::jobs::Job;
use ward_control::{Purpose, TokenInfo};
use ward_core::{Email, Permission, Role, format_time};
use ward_mail::Message;
use ward_tenancy::sealed;

use crate::extract::{ClientInfo, ClinicAccess, Csrf, CurrentUser};
use crate::views::frame::ClinicFrame;
use crate::views::{pages, second_factor};
use crate::{App, AppError, AppState};

/// The `jobs.kind` of export jobs.
pub const JOB_KIND: &str = "export";
/// How long the download link and the sealed file live.
const LINK_TTL: TimeDelta = TimeDelta::hours(72);

#[derive(Template)]
#[template(path = "clinic_export.html")]
struct ExportPage {
    frame: ClinicFrame,
    needs_password: bool,
    needs_code: bool,
    error: Option<String>,
    queued: bool,
    email: String,
    format: &'static str,
    format_error: bool,
}

/// A sign-in (password, and code if the owner has a second factor) older than a few
/// minutes asks for them again before an export.
fn needs_password(app: &App, access: &ClinicAccess) -> bool {
    !second_factor::is_fresh(app, &access.session)
}

async fn render_page(
    app: &App,
    access: &ClinicAccess,
    csrf: String,
    error: Option<String>,
    queued: bool,
    format: Format,
) -> Result<Html<String>, AppError> {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    Ok(Html(
        ExportPage {
            needs_password: needs_password(app, access),
            needs_code: access.session.has_second_factor,
            email: access.session.user.email.clone(),
            frame: ClinicFrame::new(access, clinic.name, csrf, "export"),
            error,
            queued,
            format: format.as_str(),
            format_error: false,
        }
        .render()?,
    ))
}

/// The export page.
pub async fn export_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
) -> Result<Html<String>, AppError> {
    access.require(Permission::Export)?;
    render_page(&app, &access, csrf, None, false, Format::Json).await
}

/// The export form.
#[derive(Debug, Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    /// `json` (the default) or `csv`.
    #[serde(default)]
    format: String,
}

/// Queues the export (after the password, if the sign-in is old) and says what happens.
pub async fn export_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    client: ClientInfo,
    Form(form): Form<ExportForm>,
) -> Result<Response, AppError> {
    access.require(Permission::Export)?;
    let Some(format) = Format::parse(&form.format) else {
        let clinic = app.control.clinic_by_id(access.clinic_id).await?;
        let page = ExportPage {
            needs_password: needs_password(&app, &access),
            needs_code: access.session.has_second_factor,
            email: access.session.user.email.clone(),
            frame: ClinicFrame::new(&access, clinic.name, csrf, "export"),
            error: None,
            queued: false,
            format: Format::Json.as_str(),
            format_error: true,
        };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    };
    let confirmed = if needs_password(&app, &access) {
        second_factor::confirm_inline(&app, &access.session, &form.password, &form.code, &client)
            .await?
    } else {
        Ok(())
    };
    if let Err(error) = confirmed {
        let error = Some(error.to_owned());
        let mut res = render_page(&app, &access, csrf, error, false, format)
            .await?
            .into_response();
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(res);
    }
    let payload =
        serde_json::json!({ "user_id": access.session.user.id, "format": format.as_str() })
            .to_string();
    app.control
        .enqueue_job(JOB_KIND, Some(access.clinic_id), &payload)
        .await?;
    let entry = access
        .audit_entry(app.clock.now(), Action::Export)
        .entity("clinic", access.clinic_id)
        .detail(&format!(
            "export requested ({}); a download link is mailed to the owner",
            format.as_str()
        ));
    record(&access.tenant, entry).await?;
    Ok(render_page(&app, &access, csrf, None, true, format)
        .await?
        .into_response())
}

async fn record(tenant: &ward_tenancy::Tenant, entry: audit::Entry) -> Result<(), AppError> {
    tenant
        .with(|conn| audit::in_transaction(&conn, |tx| audit::record(&tx, &entry)))
        .await
        .map(drop)
        .map_err(|e| AppError::Internal(Box::new(e)))
}

fn exports_dir(app: &App) -> std::path::PathBuf {
    app.tenants.clinics_dir().parent().map_or_else(
        || app.tenants.clinics_dir().join("exports"),
        |d| d.join("exports"),
    )
}

/// Runs every due export job and deletes expired export files; returns how many jobs
/// ran. `ward serve` calls this in a loop; tests call it directly.
pub async fn run_export_jobs(app: &App) -> usize {
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    let clinic = app.control.clinic_by_id(clinic_id).await?;
    let staff = app
        .control
        .clinic_staff(clinic_id)
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
    let now = app.clock.now();
    let header = Header {
        clinic: ClinicInfo {
            id: clinic.id.to_string(),
            slug: clinic.slug.to_string(),
            name: clinic.name.clone(),
            status: clinic.status.to_string(),
            created_at: format_time(clinic.created_at),
        },
        exported_at: now,
        exported_by: format!("user:{}", user.id),
        staff,
    };
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let expires = now + LINK_TTL;
    let dir = exports_dir(app);
    let name = format!(
        "{clinic_id}-{}-{}.sealed",
        job.id,
        expires.timestamp_millis()
    );
    let (path, partial) = (dir.join(&name), dir.join(format!("{name}.partial")));
    let tenant = app.tenants.get(clinic_id).await?;
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
    let link = format!("{}/export/download?token={token}", app.config.base_url);
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
    let dir = exports_dir(app);
    let Ok(entries) = std::fs::read_dir(&dir) else {
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

#[derive(Template)]
#[template(path = "export_download.html")]
struct DownloadPage {
    clinic_name: String,
    csrf: String,
    token: String,
}

/// The link's query.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

fn invalid_link() -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::message(
            "This link is not valid",
            "Download links work once, for 72 hours, for the owner who asked for the export while signed in. Request a new export from the clinic's Export page.",
        ),
    )
        .into_response()
}

/// Whether the signed-in user may use this export link: the owner who asked, still an
/// owner of that clinic.
async fn allowed(app: &App, user_id: &str, info: &TokenInfo) -> Result<bool, AppError> {
    if info.user_id.as_deref() != Some(user_id) {
        return Ok(false);
    }
    let Some(clinic) = info.clinic_id else {
        return Ok(false);
    };
    Ok(app
        .control
        .memberships(user_id)
        .await?
        .iter()
        .any(|m| m.clinic.id == clinic && m.role == Role::Owner))
}

/// The page the mailed link opens.
pub async fn download_get(
    State(app): State<AppState>,
    CurrentUser(session): CurrentUser,
    Csrf(csrf): Csrf,
    Query(q): Query<TokenQuery>,
) -> Result<Response, AppError> {
    let Some(info) = app.control.peek_token(Purpose::Export, &q.token).await? else {
        return Ok(invalid_link());
    };
    if !allowed(&app, &session.user.id, &info).await? {
        return Ok(invalid_link());
    }
    let clinic_id = info.clinic_id.ok_or(AppError::NotFound)?;
    let clinic = app.control.clinic_by_id(clinic_id).await?;
    Ok(Html(
        DownloadPage {
            clinic_name: clinic.name,
            csrf,
            token: q.token,
        }
        .render()?,
    )
    .into_response())
}

/// The download form.
#[derive(Debug, Deserialize)]
pub struct DownloadForm {
    #[serde(default)]
    token: String,
}

/// Sends the export once, then deletes it.
pub async fn download_post(
    State(app): State<AppState>,
    CurrentUser(session): CurrentUser,
    Form(form): Form<DownloadForm>,
) -> Result<Response, AppError> {
    let Some(info) = app.control.peek_token(Purpose::Export, &form.token).await? else {
        return Ok(invalid_link());
    };
    if !allowed(&app, &session.user.id, &info).await? {
        return Ok(invalid_link());
    }
    let Some(info) = app
        .control
        .consume_token(Purpose::Export, &form.token)
        .await?
    else {
        return Ok(invalid_link());
    };
    let clinic_id = info.clinic_id.ok_or(AppError::NotFound)?;
    let payload: serde_json::Value =
        serde_json::from_str(info.payload.as_deref().unwrap_or("{}")).unwrap_or_default();
    let file = payload["file"].as_str().unwrap_or_default().to_owned();
    let format = Format::parse(payload["format"].as_str().unwrap_or_default()).unwrap_or_default();
    let key: [u8; 32] = hex::decode(payload["key"].as_str().unwrap_or_default())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(AppError::NotFound)?;
    if file.is_empty() || file.contains('/') || file.contains("..") {
        return Ok(invalid_link());
    }
    let path = exports_dir(&app).join(&file);
    let body = ward_tenancy::blocking(async {
        let f = std::fs::File::open(&path)?;
        let mut out = Vec::new();
        sealed::open(&key, std::io::BufReader::new(f), &mut out)?;
        Ok::<_, BoxError>(out)
    })
    .await;
    let _ = std::fs::remove_file(&path);
    let Ok(body) = body else {
        return Ok(invalid_link());
    };
    let clinic = app.control.clinic_by_id(clinic_id).await?;
    let tenant = app.tenants.get(clinic_id).await?;
    let entry = audit::Entry::new(
        app.clock.now(),
        audit::Actor::User {
            id: session.user.id.clone(),
            name: session.user.name.clone(),
            role: Role::Owner,
        },
        Action::Export,
    )
    .entity("clinic", clinic_id)
    .detail(&format!("export downloaded ({})", format.as_str()));
    record(&tenant, entry).await?;
    let filename = format!(
        "ward-export-{}-{}.{}",
        clinic.slug,
        app.clock.now().format("%Y%m%d"),
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}
