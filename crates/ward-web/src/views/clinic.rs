//! Clinic pages under `/c/{slug}/`.

use askama::Template;
use axum::extract::State;
use axum::response::Html;

use crate::extract::{ClinicAccess, Csrf};
use crate::views::frame::ClinicFrame;
use crate::{AppError, AppState};

#[derive(Template)]
#[template(path = "clinic_home.html")]
struct ClinicHome {
    frame: ClinicFrame,
}

/// The clinic's start page.
pub async fn home_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
) -> Result<Html<String>, AppError> {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    Ok(Html(
        ClinicHome {
            frame: ClinicFrame::new(&access, clinic.name, csrf, ""),
        }
        .render()?,
    ))
}
