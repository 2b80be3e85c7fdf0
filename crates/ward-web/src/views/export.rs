//! The owner's export: requested on `/c/{slug}/export`, prepared by a background job,
//! kept sealed under `<data>/exports/`, mailed as a one-time link valid 72 hours, and
//! downloaded once from `/export/download` by the same owner (docs/export-format.md).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use ward_app::exports;
use ward_clinic::audit::Action;
use ward_clinic::export_csv::Format;
use ward_core::Permission;

use crate::extract::{
    ClientInfo, ClinicAccess, ClinicPage, CurrentUser, PageRequest, SignedInPage,
};
use crate::views::frame::ClinicFrame;
use crate::views::{pages, second_factor};
use crate::{AppError, AppState, Web};

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
fn needs_password(app: &Web, access: &ClinicAccess) -> bool {
    !second_factor::is_fresh(app, &access.session)
}

impl ExportPage {
    async fn load(
        app: &Web,
        access: &ClinicAccess,
        csrf: String,
        (error, queued): (Option<String>, bool),
        format: Format,
    ) -> Result<Self, AppError> {
        Ok(Self {
            needs_password: needs_password(app, access),
            needs_code: access.session.has_second_factor,
            email: access.session.user.email.clone(),
            frame: ClinicFrame::load(app, access, csrf, "export").await?,
            error,
            queued,
            format: format.as_str(),
            format_error: false,
        })
    }
}

/// The export page.
pub async fn export_get(
    PageRequest(app, access, csrf): ClinicPage,
) -> Result<Html<String>, AppError> {
    access.require(Permission::Export)?;
    let page = ExportPage::load(&app, &access, csrf, (None, false), Format::Json).await?;
    Ok(Html(page.render()?))
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
    PageRequest(app, access, csrf): ClinicPage,
    client: ClientInfo,
    Form(form): Form<ExportForm>,
) -> Result<Response, AppError> {
    access.require(Permission::Export)?;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let Some(format) = Format::parse(&form.format) else {
        let mut page = ExportPage::load(&app, &access, csrf, (None, false), Format::Json).await?;
        page.format_error = true;
        return Ok((unprocessable, Html(page.render()?)).into_response());
    };
    let confirmed = if needs_password(&app, &access) {
        second_factor::confirm_inline(&app, &access.session, &form.password, &form.code, &client)
            .await?
    } else {
        Ok(())
    };
    if let Err(error) = confirmed {
        let shown = (Some(error.to_owned()), false);
        let page = ExportPage::load(&app, &access, csrf, shown, format).await?;
        return Ok((unprocessable, Html(page.render()?)).into_response());
    }
    let entry = access.audit_entry(app.clock.now(), Action::Export);
    let user = &access.session.user.id;
    exports::request(&app, &access.tenant, access.clinic_id, user, format, entry).await?;
    let page = ExportPage::load(&app, &access, csrf, (None, true), format).await?;
    Ok(Html(page.render()?).into_response())
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

/// The page the mailed link opens.
pub async fn download_get(
    PageRequest(app, CurrentUser(session), csrf): SignedInPage,
    Query(q): Query<TokenQuery>,
) -> Result<Response, AppError> {
    let Some(clinic_name) = exports::check_link(&app, &session.user.id, &q.token).await? else {
        return Ok(invalid_link());
    };
    let page = DownloadPage {
        clinic_name,
        csrf,
        token: q.token,
    };
    Ok(Html(page.render()?).into_response())
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
    let user = &session.user;
    let Some(download) = exports::take(&app, &user.id, &user.name, &form.token).await? else {
        return Ok(invalid_link());
    };
    let disposition = format!("attachment; filename=\"{}\"", download.filename);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                download.format.content_type().to_owned(),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::CONTENT_LENGTH, download.size.to_string()),
        ],
        axum::body::Body::from_stream(download.body),
    )
        .into_response())
}
