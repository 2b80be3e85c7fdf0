//! The appointment book: `/c/{slug}/appointments` (day view per doctor, booking),
//! `/c/{slug}/appointments/{id}` (status, reschedule).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use ward_clinic::appointments::{
    self, Appointment, DayBook, Doctor, LocalSlot, PatientChoice, PatientHit, QuickPatient, Status,
};
use ward_clinic::audit::Action;
use ward_clinic::settings::ClinicSettings;
use ward_clinic::{AppointmentId, ClinicError, PatientId};
use ward_core::{Permission, Role};

use crate::extract::{AppForm, ClinicAccess, ClinicPage, PageRequest, RecordId, RecordRequest};
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
) -> Result<Option<LocalSlot>, AppError> {
    let date = appointments::parse_date("date", date);
    let time = appointments::parse_clock("time", time);
    let minutes = minutes
        .trim()
        .parse::<i64>()
        .map_err(|_| ClinicError::invalid("minutes", "Choose how long the appointment is."))
        .and_then(appointments::check_minutes);
    match (date, time, minutes) {
        (Ok(date), Ok(time), Ok(minutes)) => Ok(Some(LocalSlot {
            date,
            time,
            minutes,
        })),
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
    pub id: AppointmentId,
    /// Local start `HH:MM`.
    pub time: String,
    /// Local end `HH:MM`.
    pub end: String,
    /// Patient row id.
    pub patient_id: PatientId,
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
#[serde(default)]
pub struct BookForm {
    patient_id: String,
    full_name: String,
    sex: String,
    phone: String,
    doctor: String,
    date: String,
    time: String,
    minutes: String,
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

impl DayPage {
    /// The day `query` asks for, with the booking form's `form` and `errors`.
    async fn load(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        query: DayQuery,
        mut form: BookForm,
        errors: FormErrors,
    ) -> Result<Self, AppError> {
        let doctors = doctors(app, access).await?;
        let now = app.clock.now();
        let q = query.q.unwrap_or_default();
        let chosen = query.patient.as_deref().unwrap_or(&form.patient_id);
        let chosen = chosen.trim().parse::<PatientId>().ok();
        // Only a doctor of this clinic filters the day.
        let doctor = doctor_filter_text(&query.doctor, &doctors);
        let filter = (!doctor.is_empty()).then_some(doctor.as_str());
        let date = query.date.unwrap_or_default();
        let book = access
            .tenant
            .with(|conn| appointments::day_book(&conn, now, (&date, filter), &q, chosen))
            .await?;
        note_book(app, access, &book)?;
        form.fill_defaults(book.date, query.doctor.unwrap_or_default());
        let frame = ClinicFrame::load(app, access, csrf, "appointments").await?;
        let can_manage = access.can(Permission::ManageAppointments);
        let shown = (q, form, errors);
        Ok(Self::new(frame, (doctor, doctors), book, shown, can_manage))
    }

    /// The page of `book`, filtered on `doctor` (empty: all of `doctors`).
    fn new(
        frame: ClinicFrame,
        (doctor, doctors): (String, Vec<Doctor>),
        book: DayBook,
        (q, form, errors): (String, BookForm, FormErrors),
        can_manage: bool,
    ) -> Self {
        let shown: Vec<Doctor> = match doctor.as_str() {
            "" => doctors.clone(),
            d => doctors.iter().filter(|x| x.id == d).cloned().collect(),
        };
        let (date, s) = (book.date, &book.settings);
        Self {
            frame,
            date: date.to_string(),
            date_label: date.format("%A %-d %B %Y").to_string(),
            prev: date.pred_opt().unwrap_or(date).to_string(),
            next: date.succ_opt().unwrap_or(date).to_string(),
            today: book.today.to_string(),
            timezone: s.timezone.name().to_owned(),
            days: by_doctor(&shown, &book.list, s),
            doctor,
            doctors,
            notice: book.notice,
            can_manage,
            q,
            hits: book.pick.hits,
            chosen: book.pick.chosen,
            form,
            errors,
            durations: DURATIONS,
            sexes: SEXES,
        }
    }
}

/// Notes the patients a day's page shows, for the read audit.
fn note_book(app: &AppState, access: &ClinicAccess, book: &DayBook) -> Result<(), AppError> {
    let pick = &book.pick;
    access.note_shown(
        app,
        book.list.iter().map(|a| a.patient_id),
        "appointment book",
    )?;
    access.note_shown(app, pick.hits.iter().map(|p| p.id), "booking search")?;
    access.note_shown(app, pick.chosen.iter().map(|p| p.id), "booking form")
}

fn doctor_filter_text(d: &Option<String>, doctors: &[Doctor]) -> String {
    match d {
        Some(d) if doctors.iter().any(|x| x.id == *d) => d.clone(),
        _ => String::new(),
    }
}

/// The day view.
pub async fn day_get(
    PageRequest(app, access, csrf): ClinicPage,
    Query(query): Query<DayQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewAppointments)?;
    let (form, errors) = (BookForm::default(), FormErrors::default());
    let page = DayPage::load(&app, &access, csrf, query, form, errors).await?;
    crate::views::respond::page(&page)
}

/// A booking, as the form gives it, checked.
struct Booking {
    patient: PatientChoice,
    doctor: Doctor,
    slot: LocalSlot,
}

impl BookForm {
    /// The booking when every field is right (the doctor one of `doctors`), and the
    /// errors found.
    fn parse(&self, doctors: &[Doctor]) -> Result<(Option<Booking>, FormErrors), AppError> {
        let mut errors = FormErrors::default();
        let doctor = doctors.iter().find(|d| d.id == self.doctor).cloned();
        if doctor.is_none() {
            errors.add("doctor", "Choose a doctor.");
        }
        let patient = self.patient(&mut errors)?;
        let slot = parse_slot(&self.date, &self.time, &self.minutes, &mut errors)?;
        let booking = match (slot, doctor, patient) {
            (Some(slot), Some(doctor), Some(patient)) if errors.is_empty() => Some(Booking {
                patient,
                doctor,
                slot,
            }),
            _ => None,
        };
        Ok((booking, errors))
    }

    /// A registered patient chosen, or a new one typed, or an error.
    fn patient(&self, errors: &mut FormErrors) -> Result<Option<PatientChoice>, AppError> {
        if !self.patient_id.trim().is_empty() {
            let id = self.patient_id.trim().parse::<PatientId>();
            if id.is_err() {
                errors.add(
                    "patient",
                    "Choose a registered patient, or register a new one.",
                );
            }
            return Ok(id.ok().map(PatientChoice::Existing));
        }
        if self.full_name.trim().is_empty() {
            errors.add(
                "patient",
                "Search for and choose a registered patient, or enter a new patient's name.",
            );
            return Ok(None);
        }
        let p = QuickPatient {
            full_name: self.full_name.clone(),
            sex: self.sex.clone(),
            phone: self.phone.clone(),
        };
        match appointments::check_quick_patient(&p) {
            Ok(p) => Ok(Some(PatientChoice::New(p))),
            Err(e) => errors.absorb(e).map(|()| None),
        }
    }

    /// The day shown, the doctor filtered on and a quarter of an hour, where the form
    /// has nothing yet.
    fn fill_defaults(&mut self, date: NaiveDate, doctor: String) {
        if self.date.is_empty() {
            self.date = date.to_string();
        }
        if self.doctor.is_empty() {
            self.doctor = doctor;
        }
        if self.minutes.is_empty() {
            self.minutes = "15".into();
        }
    }
}

/// Books an appointment.
pub async fn book_post(
    PageRequest(app, access, csrf): ClinicPage,
    AppForm(form): AppForm<BookForm>,
) -> Result<Response, AppError> {
    access.require(Permission::ManageAppointments)?;
    let doctors = doctors(&app, &access).await?;
    let (booking, mut errors) = form.parse(&doctors)?;
    if let Some(Booking {
        patient,
        doctor,
        slot,
    }) = booking
    {
        let now = app.clock.now();
        let entry = access.audit_entry(now, Action::Create);
        let (who, reason) = ((patient, doctor), form.reason.clone());
        let result = access
            .tenant
            .with(|conn| appointments::book_local(&conn, who, slot, reason, now, entry))
            .await;
        match result {
            Ok(id) => {
                let to = format!("/c/{}/appointments/{id}?booked=1", access.slug);
                return Ok(Redirect::to(&to).into_response());
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
    let page = DayPage::load(&app, &access, csrf, query, form, errors).await?;
    crate::views::respond::html(status, &page)
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
#[serde(default)]
pub struct RescheduleForm {
    doctor: String,
    date: String,
    time: String,
    minutes: String,
}

impl AppointmentPage {
    /// Appointment `id`; the reschedule form holds `form` as posted, or the appointment's
    /// own slot.
    async fn load(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        id: AppointmentId,
        form: Option<RescheduleForm>,
        (errors, notice): (FormErrors, Option<&'static str>),
    ) -> Result<Self, AppError> {
        let doctors = doctors(app, access).await?;
        let (s, a) = access
            .tenant
            .with(|conn| appointments::get_with_settings(&conn, id))
            .await?;
        access.note_shown(app, [a.patient_id], "appointment")?;
        let local = s.local(a.starts_at);
        let form = form.unwrap_or_else(|| RescheduleForm {
            doctor: a.doctor_id.clone(),
            date: local.format("%Y-%m-%d").to_string(),
            time: local.format("%H:%M").to_string(),
            minutes: a.minutes().to_string(),
        });
        Ok(Self {
            frame: ClinicFrame::load(app, access, csrf, "appointments").await?,
            date: local.format("%Y-%m-%d").to_string(),
            doctor_name: a.doctor_name.clone(),
            minutes: a.minutes(),
            timezone: s.timezone.name().to_owned(),
            can_manage: access.can(Permission::ManageAppointments),
            can_record: access.can(Permission::RecordPayments),
            reschedulable: a.status == Status::Booked,
            doctors,
            durations: DURATIONS,
            form,
            errors,
            notice,
            a: ApptRow::new(&a, &s),
        })
    }
}

/// One appointment: details, status buttons, reschedule form.
pub async fn show_get(
    RecordRequest(app, access, csrf, id): RecordRequest<AppointmentId>,
    Query(q): Query<ShowQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewAppointments)?;
    let notice = q.booked.map(|_| "The appointment is booked.");
    let shown = (FormErrors::default(), notice);
    let page = AppointmentPage::load(&app, &access, csrf, id, None, shown).await?;
    crate::views::respond::page(&page)
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
    RecordId(id): RecordId<AppointmentId>,
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
    RecordRequest(app, access, csrf, id): RecordRequest<AppointmentId>,
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
    if let (Some(slot), Some(doctor)) = (slot, doctor) {
        let entry = access.audit_entry(now, Action::Update);
        let result = access
            .tenant
            .with(|conn| appointments::reschedule_local(&conn, id, &doctor, slot, now, entry))
            .await;
        match result {
            Ok(()) => {
                let to = format!("/c/{}/appointments/{id}", access.slug);
                return Ok(Redirect::to(&to).into_response());
            }
            Err(e) => errors.absorb(e)?,
        }
    }
    let status = errors.status();
    let page = AppointmentPage::load(&app, &access, csrf, id, Some(form), (errors, None)).await?;
    crate::views::respond::html(status, &page)
}
