//! Closing a clinic (`/c/{slug}/settings/close`) and what its owners see afterwards.

use askama::Template;
use axum::Form;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_clinic::audit::Action;
use ward_control::ClinicRecord;
use ward_control::lifecycle::retention_days;
use ward_core::Permission;

use crate::extract::{ClinicAccess, ClinicPage, PageRequest};
use crate::views::frame::ClinicFrame;
use crate::views::pages;
use crate::{AppError, AppState};

#[derive(Template)]
#[template(path = "clinic_close.html")]
struct ClosePage {
    frame: ClinicFrame,
    retention_days: u32,
    delete_on: String,
    error: Option<String>,
}

fn delete_on(app: &AppState, from: chrono::DateTime<chrono::Utc>) -> String {
    (from + retention_days(app.config.retention_days))
        .format("%-d %B %Y")
        .to_string()
}

fn page(
    app: &AppState,
    access: &ClinicAccess,
    clinic: ClinicRecord,
    csrf: String,
    error: Option<String>,
) -> Result<Html<String>, AppError> {
    Ok(Html(
        ClosePage {
            retention_days: app.config.retention_days,
            delete_on: delete_on(app, app.clock.now()),
            frame: ClinicFrame::new(access, clinic.name, csrf, "settings"),
            error,
        }
        .render()?,
    ))
}

/// The close form.
pub async fn close_get(
    PageRequest(app, access, csrf): ClinicPage,
) -> Result<Html<String>, AppError> {
    access.require_confirmed(Permission::CloseClinic, &app, "settings/close")?;
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    page(&app, &access, clinic, csrf, None)
}

/// The close form's fields.
#[derive(Debug, Deserialize)]
pub struct CloseForm {
    #[serde(default)]
    clinic_name: String,
}

/// Closes the clinic once its name was typed: recorded in its audit log (while it is
/// still open) and in the control plane's lifecycle events.
pub async fn close_post(
    PageRequest(app, access, csrf): ClinicPage,
    Form(form): Form<CloseForm>,
) -> Result<Response, AppError> {
    access.require_confirmed(Permission::CloseClinic, &app, "settings/close")?;
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    if form.clinic_name.trim() != clinic.name {
        let error = Some("Type the clinic's name exactly as shown to confirm.".to_owned());
        let mut res = page(&app, &access, clinic, csrf, error)?.into_response();
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(res);
    }
    let entry = access.audit_entry(app.clock.now(), Action::Update);
    let me = &access.session.user.id;
    ward_app::clinic::close(&app, &access.tenant, access.clinic_id, me, entry).await?;
    Ok(Redirect::to(&format!("/c/{}/", access.slug)).into_response())
}

/// What an owner of a closed clinic sees instead of the clinic.
pub fn closed_page(app: &AppState, clinic: &ClinicRecord) -> Response {
    let closed = clinic.closed_at.unwrap_or(clinic.created_at);
    let text = format!(
        "{} was closed on {}. Its records will be permanently deleted, backups included, on {}. Until then the operator can reopen it, and you can still take an export of all its data.",
        clinic.name,
        closed.format("%-d %B %Y"),
        delete_on(app, closed)
    );
    (
        StatusCode::FORBIDDEN,
        pages::message_with_link(
            "This clinic is closed",
            &text,
            &format!("/c/{}/export", clinic.slug),
            "Export the clinic's data",
        ),
    )
        .into_response()
}
