//! The clinic's start page `/c/{slug}/`: today's appointments by doctor, a quick patient
//! search, the recent patients.

use askama::Template;
use axum::response::Html;
use ward_clinic::appointments::{self, PatientHit};
use ward_core::Permission;

use crate::AppError;
use crate::extract::{ClinicPage, PageRequest};
use crate::views::appointments::{DoctorDay, by_doctor, doctors};
use crate::views::frame::ClinicFrame;

#[derive(Template)]
#[template(path = "clinic_home.html")]
struct ClinicHome {
    frame: ClinicFrame,
    today: String,
    today_label: String,
    timezone: String,
    days: Vec<DoctorDay>,
    can_search: bool,
    can_book: bool,
    can_record: bool,
    recent: Vec<PatientHit>,
}

/// The clinic's start page.
pub async fn home_get(
    PageRequest(app, access, csrf): ClinicPage,
) -> Result<Html<String>, AppError> {
    access.require(Permission::ViewAppointments)?;
    let doctors = doctors(&app, &access).await?;
    let now = app.clock.now();
    let can_search = access.can(Permission::ViewDemographics);
    let t = access
        .tenant
        .with(|conn| appointments::today(&conn, now, can_search))
        .await?;
    let shown = t.list.iter().map(|a| a.patient_id);
    access.note_shown(&app, shown, "today's appointments")?;
    access.note_shown(&app, t.recent.iter().map(|p| p.id), "recent patients")?;
    Ok(Html(
        ClinicHome {
            frame: ClinicFrame::load(&app, &access, csrf, "").await?,
            today: t.date.to_string(),
            today_label: t.date.format("%A %-d %B %Y").to_string(),
            timezone: t.settings.timezone.name().to_owned(),
            days: by_doctor(&doctors, &t.list, &t.settings),
            can_search,
            can_book: access.can(Permission::ManageAppointments),
            can_record: access.can(Permission::RecordPayments),
            recent: t.recent,
        }
        .render()?,
    ))
}
