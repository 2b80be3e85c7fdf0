//! The appointment book: `/c/{slug}/appointments` (day view per doctor, booking),
//! `/c/{slug}/appointments/{id}` (status, reschedule).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{NaiveDate, NaiveTime};
use serde::Deserialize;
use ward_clinic::ClinicError;
use ward_clinic::appointments::{
    self, Appointment, Doctor, NewAppointment, PatientChoice, PatientHit, QuickPatient, Status,
};
use ward_clinic::audit::Action;
use ward_clinic::settings::{self, ClinicSettings};
use ward_core::{Permission, Role};

use crate::extract::{AppForm, ClinicAccess, Csrf, RecordId};
use crate::form::FormErrors;
use crate::views::frame::ClinicFrame;
use crate::{AppError, AppState};

/// The date, start time and length a booking or rescheduling form asks for, or `None`
/// with each bad field's error added to `errors`.
fn parse_slot(
    date: &str,
    time: &str,
    minutes: &str,
    errors: &mut FormErrors,
) -> Result<Option<(NaiveDate, NaiveTime, i64)>, AppError> {
    let date = appointments::parse_date("date", date);
    let time = appointments::parse_clock("time", time);
    let minutes = minutes
        .trim()
        .parse::<i64>()
        .map_err(|_| ClinicError::invalid("minutes", "Choose how long the appointment is."))
        .and_then(appointments::check_minutes);
    match (date, time, minutes) {
        (Ok(date), Ok(time), Ok(minutes)) => Ok(Some((date, time, minutes))),
        (date, time, minutes) => {
            for e in [date.err(), time.err(), minutes.err()]
                .into_iter()
                .flatten()
            {
                errors.absorb(e)?;
            }
            Ok(None)
        }
    }
}

/// The clinic's doctors: members who are doctors or owners.
pub async fn doctors(app: &AppState, access: &ClinicAccess) -> Result<Vec<Doctor>, AppError> {
    Ok(app
        .control
        .clinic_members(access.clinic_id)
        .await?
        .into_iter()
        .filter(|m| matches!(m.role, Role::Doctor | Role::Owner))
        .map(|m| Doctor {
            id: m.user_id,
            name: m.name,
        })
        .collect())
}

/// An appointment as a page shows it.
pub struct ApptRow {
    /// Row id.
    pub id: i64,
    /// Local start `HH:MM`.
    pub time: String,
    /// Local end `HH:MM`.
    pub end: String,
    /// Patient row id.
    pub patient_id: i64,
    /// Patient number.
    pub patient_number: i64,
    /// Patient name.
    pub patient_name: String,
    /// Reason.
    pub reason: String,
    /// Status label.
    pub status: String,
    /// Status stored form (for styling).
    pub status_key: &'static str,
    /// The statuses it may move to: (stored form, label).
    pub next: Vec<(&'static str, &'static str)>,
    /// Local date `YYYY-MM-DD` (to come back to its day).
    pub date: String,
}

impl ApptRow {
    /// Shown in the clinic's timezone.
    pub fn new(a: &Appointment, s: &ClinicSettings) -> Self {
        Self {
            id: a.id,
            time: s.local(a.starts_at).format("%H:%M").to_string(),
            end: s.local(a.ends_at).format("%H:%M").to_string(),
            patient_id: a.patient_id,
            patient_number: a.patient_number,
            patient_name: a.patient_name.clone(),
            reason: a.reason.clone(),
            status: a.status.label().to_owned(),
            status_key: a.status.as_str(),
            next: a
                .status
                .next()
                .iter()
                .map(|n| (n.as_str(), n.label()))
                .collect(),
            date: s.local(a.starts_at).format("%Y-%m-%d").to_string(),
        }
    }
}

/// One doctor's column of a day.
pub struct DoctorDay {
    /// The doctor's name.
    pub name: String,
    /// Their appointments, by time.
    pub rows: Vec<ApptRow>,
}

/// Groups a day's appointments under each doctor (doctors without any included).
pub fn by_doctor(doctors: &[Doctor], list: &[Appointment], s: &ClinicSettings) -> Vec<DoctorDay> {
    let mut out: Vec<(String, DoctorDay)> = doctors
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                DoctorDay {
                    name: d.name.clone(),
                    rows: Vec::new(),
                },
            )
        })
        .collect();
    for a in list {
        match out.iter_mut().find(|(id, _)| *id == a.doctor_id) {
            Some((_, day)) => day.rows.push(ApptRow::new(a, s)),
            None => out.push((
                a.doctor_id.clone(),
                DoctorDay {
                    name: a.doctor_name.clone(),
                    rows: vec![ApptRow::new(a, s)],
                },
            )),
        }
    }
    for (_, day) in &mut out {
        day.rows.sort_by(|a, b| a.time.cmp(&b.time));
    }
    out.into_iter().map(|(_, d)| d).collect()
}

/// The values of the booking form, kept when it is shown again.
#[derive(Default, Deserialize)]
pub struct BookForm {
    #[serde(default)]
    patient_id: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    sex: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    doctor: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    minutes: String,
    #[serde(default)]
    reason: String,
}

/// `?date=&doctor=&q=`.
#[derive(Default, Deserialize)]
pub struct DayQuery {
    date: Option<String>,
    doctor: Option<String>,
    q: Option<String>,
    patient: Option<String>,
}

#[derive(Template)]
#[template(path = "appointments.html")]
struct DayPage {
    frame: ClinicFrame,
    date: String,
    date_label: String,
    prev: String,
    next: String,
    today: String,
    timezone: String,
    doctors: Vec<Doctor>,
    doctor: String,
    days: Vec<DoctorDay>,
    notice: Option<String>,
    can_manage: bool,
    q: String,
    hits: Vec<PatientHit>,
    chosen: Option<PatientHit>,
    form: BookForm,
    errors: FormErrors,
    durations: &'static [i64],
    sexes: &'static [(&'static str, &'static str)],
}

const DURATIONS: &[i64] = &[10, 15, 20, 30, 45, 60, 90];
const SEXES: &[(&str, &str)] = &[
    ("female", "Female"),
    ("male", "Male"),
    ("other", "Other"),
    ("unknown", "Unknown"),
];

struct DayInput {
    query: DayQuery,
    form: BookForm,
    errors: FormErrors,
    status: StatusCode,
}

async fn render_day(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    input: DayInput,
) -> Result<Response, AppError> {
    let DayInput {
        query,
        mut form,
        errors,
        status,
    } = input;
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let doctors = doctors(app, access).await?;
    let now = app.clock.now();
    let q = query.q.clone().unwrap_or_default();
    let chosen_id = query
        .patient
        .as_deref()
        .or(Some(form.patient_id.as_str()))
        .and_then(|s| s.trim().parse::<i64>().ok());
    let doctor_filter = query
        .doctor
        .clone()
        .filter(|d| doctors.iter().any(|x| x.id == *d));
    let date_text = query.date.clone().unwrap_or_default();
    let (settings, list, hits, chosen, notice, date) = access
        .tenant
        .with(|conn| {
            let settings = settings::load(&conn)?;
            let today = settings.local(now).date_naive();
            let (date, notice) = if date_text.trim().is_empty() {
                (today, None)
            } else {
                match appointments::parse_date("date", &date_text) {
                    Ok(d) => (d, None),
                    Err(_) => (
                        today,
                        Some("That date could not be read; showing today.".to_owned()),
                    ),
                }
            };
            let list =
                appointments::for_day(&conn, settings.timezone, date, doctor_filter.as_deref())?;
            let hits = appointments::find_patients(&conn, &q, 20)?;
            let chosen = match chosen_id {
                Some(id) => appointments::patient(&conn, id).ok(),
                None => None,
            };
            Ok::<_, ClinicError>((settings, list, hits, chosen, notice, date))
        })
        .await?;
    access.note_shown(app, list.iter().map(|a| a.patient_id), "appointment book")?;
    access.note_shown(app, hits.iter().map(|p| p.id), "booking search")?;
    access.note_shown(app, chosen.iter().map(|p| p.id), "booking form")?;
    let today = settings.local(now).date_naive();
    let shown_doctors: Vec<Doctor> = match &query.doctor {
        Some(d) if doctors.iter().any(|x| x.id == *d) => {
            doctors.iter().filter(|x| x.id == *d).cloned().collect()
        }
        _ => doctors.clone(),
    };
    let days = by_doctor(&shown_doctors, &list, &settings);
    if form.date.is_empty() {
        form.date = date.to_string();
    }
    if form.doctor.is_empty() {
        form.doctor = query.doctor.clone().unwrap_or_default();
    }
    if form.minutes.is_empty() {
        form.minutes = "15".into();
    }
    let page = DayPage {
        frame: ClinicFrame::new(access, clinic.name, csrf, "appointments"),
        date: date.to_string(),
        date_label: date.format("%A %-d %B %Y").to_string(),
        prev: date.pred_opt().unwrap_or(date).to_string(),
        next: date.succ_opt().unwrap_or(date).to_string(),
        today: today.to_string(),
        timezone: settings.timezone.name().to_owned(),
        doctor: doctor_filter_text(&query.doctor, &doctors),
        doctors,
        days,
        notice,
        can_manage: access.can(Permission::ManageAppointments),
        q: query.q.unwrap_or_default(),
        hits,
        chosen,
        form,
        errors,
        durations: DURATIONS,
        sexes: SEXES,
    };
    Ok((status, Html(page.render()?)).into_response())
}

fn doctor_filter_text(d: &Option<String>, doctors: &[Doctor]) -> String {
    match d {
        Some(d) if doctors.iter().any(|x| x.id == *d) => d.clone(),
        _ => String::new(),
    }
}

/// The day view.
pub async fn day_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    Query(query): Query<DayQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewAppointments)?;
    render_day(
        &app,
        &access,
        csrf,
        DayInput {
            query,
            form: BookForm::default(),
            errors: FormErrors::default(),
            status: StatusCode::OK,
        },
    )
    .await
}

/// Books an appointment.
pub async fn book_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    AppForm(form): AppForm<BookForm>,
) -> Result<Response, AppError> {
    access.require(Permission::ManageAppointments)?;
    let doctors = doctors(&app, &access).await?;
    let mut errors = FormErrors::default();
    let doctor = doctors.iter().find(|d| d.id == form.doctor).cloned();
    if doctor.is_none() {
        errors.add("doctor", "Choose a doctor.");
    }
    let patient = if !form.patient_id.trim().is_empty() {
        match form.patient_id.trim().parse::<i64>() {
            Ok(id) => Some(PatientChoice::Existing(id)),
            Err(_) => {
                errors.add(
                    "patient",
                    "Choose a registered patient, or register a new one.",
                );
                None
            }
        }
    } else if !form.full_name.trim().is_empty() {
        let p = QuickPatient {
            full_name: form.full_name.clone(),
            sex: form.sex.clone(),
            phone: form.phone.clone(),
        };
        match appointments::check_quick_patient(&p) {
            Ok(p) => Some(PatientChoice::New(p)),
            Err(e) => {
                errors.absorb(e)?;
                None
            }
        }
    } else {
        errors.add(
            "patient",
            "Search for and choose a registered patient, or enter a new patient's name.",
        );
        None
    };
    let slot = parse_slot(&form.date, &form.time, &form.minutes, &mut errors)?;
    let now = app.clock.now();
    if let (Some((date, time, minutes)), Some(doctor), Some(patient)) = (slot, doctor, patient)
        && errors.is_empty()
    {
        let entry = access.audit_entry(now, Action::Create);
        let reason = form.reason.clone();
        let result = access
            .tenant
            .with(|conn| {
                let tz = settings::load(&conn)?.timezone;
                let starts_at = appointments::local_to_utc(tz, date, time)?;
                let new = NewAppointment {
                    patient,
                    doctor,
                    starts_at,
                    minutes,
                    reason,
                };
                appointments::book(&conn, &new, now, entry)
            })
            .await;
        match result {
            Ok(id) => {
                return Ok(
                    Redirect::to(&format!("/c/{}/appointments/{id}?booked=1", access.slug))
                        .into_response(),
                );
            }
            Err(e) => errors.absorb(e)?,
        }
    }
    let status = errors.status();
    let query = DayQuery {
        date: Some(form.date.clone()),
        doctor: Some(form.doctor.clone()),
        q: None,
        patient: None,
    };
    render_day(
        &app,
        &access,
        csrf,
        DayInput {
            query,
            form,
            errors,
            status,
        },
    )
    .await
}

#[derive(Template)]
#[template(path = "appointment.html")]
struct AppointmentPage {
    frame: ClinicFrame,
    a: ApptRow,
    date: String,
    doctor_name: String,
    minutes: i64,
    timezone: String,
    next: Vec<(&'static str, &'static str)>,
    can_manage: bool,
    can_record: bool,
    reschedulable: bool,
    doctors: Vec<Doctor>,
    durations: &'static [i64],
    form: RescheduleForm,
    errors: FormErrors,
    notice: Option<&'static str>,
}

/// `?booked=1` after booking.
#[derive(Deserialize)]
pub struct ShowQuery {
    booked: Option<String>,
}

/// The reschedule form's values.
#[derive(Default, Deserialize)]
pub struct RescheduleForm {
    #[serde(default)]
    doctor: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    minutes: String,
}

#[expect(
    clippy::too_many_arguments,
    reason = "one page, shown from three handlers with different inputs"
)]
async fn render_one(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    id: i64,
    form: Option<RescheduleForm>,
    errors: FormErrors,
    notice: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let doctors = doctors(app, access).await?;
    let (s, a) = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            let a = appointments::get(&conn, id)?;
            Ok::<_, ClinicError>((s, a))
        })
        .await?;
    access.note_shown(app, [a.patient_id], "appointment")?;
    let local = s.local(a.starts_at);
    let form = form.unwrap_or_else(|| RescheduleForm {
        doctor: a.doctor_id.clone(),
        date: local.format("%Y-%m-%d").to_string(),
        time: local.format("%H:%M").to_string(),
        minutes: a.minutes().to_string(),
    });
    let page = AppointmentPage {
        frame: ClinicFrame::new(access, clinic.name, csrf, "appointments"),
        date: local.format("%Y-%m-%d").to_string(),
        doctor_name: a.doctor_name.clone(),
        minutes: a.minutes(),
        timezone: s.timezone.name().to_owned(),
        next: a
            .status
            .next()
            .iter()
            .map(|n| (n.as_str(), n.label()))
            .collect(),
        can_manage: access.can(Permission::ManageAppointments),
        can_record: access.can(Permission::RecordPayments),
        reschedulable: a.status == Status::Booked,
        doctors,
        durations: DURATIONS,
        form,
        errors,
        notice,
        a: ApptRow::new(&a, &s),
    };
    Ok((status, Html(page.render()?)).into_response())
}

/// One appointment: details, status buttons, reschedule form.
pub async fn show_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    RecordId(id): RecordId,
    Query(q): Query<ShowQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewAppointments)?;
    let notice = q.booked.map(|_| "The appointment is booked.");
    render_one(
        &app,
        &access,
        csrf,
        id,
        None,
        FormErrors::default(),
        notice,
        StatusCode::OK,
    )
    .await
}

/// The status form.
#[derive(Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
    /// `YYYY-MM-DD`: go back to that day's book instead of the appointment.
    #[serde(default)]
    back_to_day: String,
}

/// Moves an appointment to another status.
pub async fn status_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    RecordId(id): RecordId,
    AppForm(form): AppForm<StatusForm>,
) -> Result<Response, AppError> {
    access.require(Permission::ManageAppointments)?;
    let Some(status) = Status::parse(form.status.trim()) else {
        return Err(AppError::Refused(
            "Choose one of the statuses offered on the appointment's page.".into(),
        ));
    };
    let now = app.clock.now();
    let entry = access.audit_entry(now, Action::Update);
    access
        .tenant
        .with(|conn| appointments::set_status(&conn, id, status, now, entry))
        .await?;
    // Only a well-formed date goes into the address: no open redirect.
    let to = match appointments::parse_date("back_to_day", &form.back_to_day) {
        Ok(day) => format!("/c/{}/appointments?date={day}", access.slug),
        Err(_) => format!("/c/{}/appointments/{id}", access.slug),
    };
    Ok(Redirect::to(&to).into_response())
}

/// Moves an appointment to another time or doctor.
pub async fn reschedule_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    RecordId(id): RecordId,
    AppForm(form): AppForm<RescheduleForm>,
) -> Result<Response, AppError> {
    access.require(Permission::ManageAppointments)?;
    let doctors = doctors(&app, &access).await?;
    let mut errors = FormErrors::default();
    let doctor = doctors.iter().find(|d| d.id == form.doctor).cloned();
    if doctor.is_none() {
        errors.add("doctor", "Choose a doctor.");
    }
    let slot = parse_slot(&form.date, &form.time, &form.minutes, &mut errors)?;
    let now = app.clock.now();
    if let (Some((date, time, minutes)), Some(doctor)) = (slot, doctor) {
        let entry = access.audit_entry(now, Action::Update);
        let result = access
            .tenant
            .with(|conn| {
                // A missing id is a 404 before any field is judged.
                appointments::get(&conn, id)?;
                let tz = settings::load(&conn)?.timezone;
                let starts_at = appointments::local_to_utc(tz, date, time)?;
                appointments::reschedule(&conn, id, &doctor, starts_at, minutes, now, entry)
            })
            .await;
        match result {
            Ok(()) => {
                return Ok(
                    Redirect::to(&format!("/c/{}/appointments/{id}", access.slug)).into_response(),
                );
            }
            Err(e) => errors.absorb(e)?,
        }
    }
    let status = errors.status();
    render_one(&app, &access, csrf, id, Some(form), errors, None, status).await
}
