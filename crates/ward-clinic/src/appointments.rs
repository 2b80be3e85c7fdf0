//! The appointment book: bookings per doctor, their statuses, rescheduling, and the
//! minimal registration of a new patient at the front desk.
//!
//! Times are stored in UTC; callers convert from and to the clinic's timezone with
//! [`local_to_utc`] and [`day_bounds`]. A doctor's slot cannot be booked twice: an
//! appointment that is neither cancelled nor a no-show blocks every overlapping time for
//! the same doctor.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use ward_core::{format_time, parse_time};
use ward_tenancy::Db;

use crate::ClinicError;
use crate::audit::{self, Diff, Entry};
use crate::ids::{AppointmentId, PatientId};

/// Where an appointment is in the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Booked, the patient has not come yet.
    Booked,
    /// The patient is in the waiting room.
    Arrived,
    /// With the doctor.
    InConsultation,
    /// Seen.
    Done,
    /// Called off (frees the slot).
    Cancelled,
    /// The patient did not come (frees the slot).
    NoShow,
}

impl Status {
    /// Every status, in the order of the day.
    pub const ALL: [Status; 6] = [
        Self::Booked,
        Self::Arrived,
        Self::InConsultation,
        Self::Done,
        Self::Cancelled,
        Self::NoShow,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Arrived => "arrived",
            Self::InConsultation => "in_consultation",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
            Self::NoShow => "no_show",
        }
    }

    /// How people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Booked => "Booked",
            Self::Arrived => "Arrived",
            Self::InConsultation => "In consultation",
            Self::Done => "Done",
            Self::Cancelled => "Cancelled",
            Self::NoShow => "No-show",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The statuses this one may move to.
    pub fn next(self) -> &'static [Status] {
        match self {
            Self::Booked => &[Self::Arrived, Self::Cancelled, Self::NoShow],
            Self::Arrived => &[Self::InConsultation, Self::Cancelled],
            Self::InConsultation => &[Self::Done],
            Self::Done | Self::Cancelled | Self::NoShow => &[],
        }
    }

    /// Whether an appointment in this status holds its doctor's time.
    pub fn blocks_slot(self) -> bool {
        !matches!(self, Self::Cancelled | Self::NoShow)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.label())
    }
}

/// One appointment, with the patient's name and number for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Appointment {
    /// Row id.
    pub id: AppointmentId,
    /// The patient.
    pub patient_id: PatientId,
    /// The patient's clinic number.
    pub patient_number: i64,
    /// The patient's name.
    pub patient_name: String,
    /// The doctor's control-plane user id.
    pub doctor_id: String,
    /// The doctor's name at booking.
    pub doctor_name: String,
    /// Start (UTC).
    pub starts_at: DateTime<Utc>,
    /// End (UTC).
    pub ends_at: DateTime<Utc>,
    /// Where it is in the day.
    pub status: Status,
    /// Why the patient comes (free text, may be empty).
    pub reason: String,
}

impl Appointment {
    /// Length in minutes.
    pub fn minutes(&self) -> i64 {
        (self.ends_at - self.starts_at).num_minutes()
    }
}

/// The doctor an appointment is with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doctor {
    /// Control-plane user id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// A patient registered at the front desk with the least that identifies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuickPatient {
    /// Full name.
    pub full_name: String,
    /// `female`, `male`, `other` or `unknown`.
    pub sex: String,
    /// Phone number as typed.
    pub phone: String,
}

/// Who the booking is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientChoice {
    /// A registered patient (row id).
    Existing(PatientId),
    /// Register this person first, in the same transaction.
    New(QuickPatient),
}

/// A booking request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAppointment {
    /// For whom.
    pub patient: PatientChoice,
    /// With whom.
    pub doctor: Doctor,
    /// Start (UTC).
    pub starts_at: DateTime<Utc>,
    /// Length in minutes (5 to 240).
    pub minutes: i64,
    /// Why (at most 300 characters).
    pub reason: String,
}

/// A patient found by the booking search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientHit {
    /// Row id.
    pub id: PatientId,
    /// Clinic number.
    pub number: i64,
    /// Name.
    pub full_name: String,
    /// Phone as typed.
    pub phone: String,
}

impl PatientHit {
    /// Reads a hit from a row of `id, number, full_name, phone`.
    fn from_row(row: &ward_tenancy::sql::Row) -> Result<Self, ClinicError> {
        Ok(Self {
            id: row.get(0)?,
            number: row.get(1)?,
            full_name: row.get(2)?,
            phone: row.get(3)?,
        })
    }
}

/// The UTC instant of local `date` + `time` in `tz`. A time skipped by a clock change is
/// refused (field `time`); a repeated one takes the earlier instant.
pub fn local_to_utc(
    tz: Tz,
    date: NaiveDate,
    time: NaiveTime,
) -> Result<DateTime<Utc>, ClinicError> {
    tz.from_local_datetime(&date.and_time(time))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            ClinicError::invalid(
                "time",
                "That time does not exist on that day in the clinic's timezone (the clocks change). Choose another time.",
            )
        })
}

/// The UTC start and end of local day `date` in `tz`.
pub fn day_bounds(tz: Tz, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            // A day that starts inside a clock change starts when the clocks allow.
            .unwrap_or_else(|| tz.from_utc_datetime(&d.and_time(NaiveTime::MIN)))
            .with_timezone(&Utc)
    };
    let next = date.succ_opt().unwrap_or(date);
    (start(date), start(next))
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(field: &'static str, s: &str) -> Result<NaiveDate, ClinicError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .filter(|d| (1900..=2200).contains(&chrono::Datelike::year(d)))
        .ok_or_else(|| ClinicError::invalid(field, "Enter a date as YYYY-MM-DD."))
}

/// Parses `HH:MM` (24-hour).
pub fn parse_clock(field: &'static str, s: &str) -> Result<NaiveTime, ClinicError> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .map_err(|_| ClinicError::invalid(field, "Enter a time as HH:MM, e.g. 09:30."))
}

/// Checks a length in minutes.
pub fn check_minutes(minutes: i64) -> Result<i64, ClinicError> {
    if (5..=240).contains(&minutes) {
        Ok(minutes)
    } else {
        Err(ClinicError::invalid(
            "minutes",
            "An appointment lasts between 5 and 240 minutes.",
        ))
    }
}

fn check_reason(reason: &str) -> Result<String, ClinicError> {
    let reason = reason.trim();
    if reason.chars().count() > 300 || reason.chars().any(|c| c.is_control()) {
        return Err(ClinicError::invalid(
            "reason",
            "At most 300 characters, on one line.",
        ));
    }
    Ok(reason.to_owned())
}

const SELECT: &str = "SELECT a.id, a.patient_id, p.number, p.full_name, a.doctor_id, a.doctor_name, a.starts_at, a.ends_at, a.status, a.reason \
                      FROM appointments a JOIN patients p ON p.id = a.patient_id";

fn from_row(row: &ward_tenancy::sql::Row) -> Result<Appointment, ClinicError> {
    let time = |i: i32| -> Result<DateTime<Utc>, ClinicError> {
        let s: String = row.get(i)?;
        parse_time(&s)
            .ok_or_else(|| ClinicError::Conflict("an appointment has an unreadable time".into()))
    };
    let status: String = row.get(8)?;
    Ok(Appointment {
        id: row.get(0)?,
        patient_id: row.get(1)?,
        patient_number: row.get(2)?,
        patient_name: row.get(3)?,
        doctor_id: row.get(4)?,
        doctor_name: row.get(5)?,
        starts_at: time(6)?,
        ends_at: time(7)?,
        status: Status::parse(&status).unwrap_or(Status::Booked),
        reason: row.get(9)?,
    })
}

/// The appointment with row id `id`.
pub fn get(conn: &Db, id: AppointmentId) -> Result<Appointment, ClinicError> {
    conn.row(&format!("{SELECT} WHERE a.id = ?1"), [id], from_row)?
        .ok_or(ClinicError::NotFound)
}

/// The appointments starting between `from` (inclusive) and `to` (exclusive), of one
/// doctor or all, by start time.
pub fn between(
    conn: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    doctor_id: Option<&str>,
) -> Result<Vec<Appointment>, ClinicError> {
    match doctor_id {
        Some(d) => {
            conn.rows(
                &format!("{SELECT} WHERE a.starts_at >= ?1 AND a.starts_at < ?2 AND a.doctor_id = ?3 ORDER BY a.starts_at, a.id"),
                [format_time(from), format_time(to), d.to_owned()],
                from_row,
            )
        }
        None => {
            conn.rows(
                &format!("{SELECT} WHERE a.starts_at >= ?1 AND a.starts_at < ?2 ORDER BY a.doctor_name, a.starts_at, a.id"),
                [format_time(from), format_time(to)],
                from_row,
            )
        }
    }
}

/// The appointments of local day `date` in `tz`, of one doctor or all.
pub fn for_day(
    conn: &Db,
    tz: Tz,
    date: NaiveDate,
    doctor_id: Option<&str>,
) -> Result<Vec<Appointment>, ClinicError> {
    let (from, to) = day_bounds(tz, date);
    between(conn, from, to, doctor_id)
}

/// Every appointment of a patient, newest first (for the patient page).
pub fn for_patient(conn: &Db, patient_id: PatientId) -> Result<Vec<Appointment>, ClinicError> {
    conn.rows(
        &format!("{SELECT} WHERE a.patient_id = ?1 ORDER BY a.starts_at DESC, a.id DESC"),
        [patient_id],
        from_row,
    )
}

/// Patients for the booking and payment forms: by clinic number, phone digits, or any
/// part of the name; at most `limit`.
pub fn find_patients(conn: &Db, query: &str, limit: u32) -> Result<Vec<PatientHit>, ClinicError> {
    let q = query.trim();
    if q.is_empty() || q.chars().count() > 100 {
        return Ok(Vec::new());
    }
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    let number: i64 = if digits.len() == q.chars().filter(|c| !c.is_whitespace()).count() {
        digits.parse().unwrap_or(-1)
    } else {
        -1
    };
    let escaped: String = q
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let phone = if digits.len() >= 4 {
        format!("%{digits}%")
    } else {
        // Too few digits to mean a phone number; `phone_digits` holds only digits, so
        // this matches nothing.
        "x".to_owned()
    };
    conn.rows(
        "SELECT id, number, full_name, phone FROM patients \
             WHERE merged_into IS NULL AND (number = ?1 OR phone_digits LIKE ?2 OR full_name LIKE ?3 ESCAPE '\\') \
             ORDER BY (number = ?1) DESC, full_name COLLATE NOCASE, id LIMIT ?4",
        ward_tenancy::sql::params![number, phone, format!("%{escaped}%"), i64::from(limit)],
        PatientHit::from_row,
    )
}

/// A registered patient by row id, for display on the booking and payment forms.
pub fn patient(conn: &Db, id: PatientId) -> Result<PatientHit, ClinicError> {
    conn.row(
        "SELECT id, number, full_name, phone FROM patients WHERE id = ?1",
        [id],
        PatientHit::from_row,
    )?
    .ok_or(ClinicError::NotFound)
}

/// The patient search of the booking and payment forms: the hits for `query` and the
/// patient already chosen (by row id), if they exist.
#[derive(Debug, Clone, Default)]
pub struct PatientPick {
    /// Patients matching the search, at most 20.
    pub hits: Vec<PatientHit>,
    /// The patient chosen on the form.
    pub chosen: Option<PatientHit>,
}

/// Searches for `query` (see [`find_patients`]) and looks up the patient `chosen`.
pub fn pick_patient(
    conn: &Db,
    query: &str,
    chosen: Option<PatientId>,
) -> Result<PatientPick, ClinicError> {
    Ok(PatientPick {
        hits: find_patients(conn, query, 20)?,
        chosen: chosen.and_then(|id| patient(conn, id).ok()),
    })
}

/// The patients most recently registered, updated or seen (an appointment that reached
/// "arrived" or later), newest first (for the dashboard). Each source is read through an
/// index and cut to `limit`, so this stays quick on a large register.
pub fn recent_patients(conn: &Db, limit: u32) -> Result<Vec<PatientHit>, ClinicError> {
    conn.rows(
            "SELECT p.id, p.number, p.full_name, p.phone FROM (\
                SELECT id, max(t) AS t FROM (\
                    SELECT * FROM (SELECT id, updated_at AS t FROM patients ORDER BY updated_at DESC LIMIT ?1) \
                    UNION ALL \
                    SELECT * FROM (SELECT patient_id AS id, updated_at AS t FROM appointments \
                        WHERE status IN ('arrived', 'in_consultation', 'done') ORDER BY starts_at DESC LIMIT ?1)\
                ) GROUP BY id\
             ) r JOIN patients p ON p.id = r.id WHERE p.merged_into IS NULL ORDER BY r.t DESC, p.id DESC LIMIT ?1",
            [i64::from(limit)],
        PatientHit::from_row,
    )
}

/// Checks a front-desk registration without writing anything.
pub fn check_quick_patient(p: &QuickPatient) -> Result<QuickPatient, ClinicError> {
    let name = p.full_name.trim();
    if name.is_empty() {
        return Err(ClinicError::invalid(
            "full_name",
            "Enter the patient's full name.",
        ));
    }
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ClinicError::invalid(
            "full_name",
            "A name is at most 200 characters, on one line.",
        ));
    }
    let sex = p.sex.trim();
    if !["female", "male", "other", "unknown"].contains(&sex) {
        return Err(ClinicError::invalid(
            "sex",
            "Choose female, male, other or unknown.",
        ));
    }
    let phone = p.phone.trim();
    if phone.chars().count() > 40
        || !phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return Err(ClinicError::invalid(
            "phone",
            "A phone number has digits and at most + - ( ) . and spaces.",
        ));
    }
    Ok(QuickPatient {
        full_name: name.to_owned(),
        sex: sex.to_owned(),
        phone: phone.to_owned(),
    })
}

/// Registers `p` with the next patient number and records it in the audit log, as
/// [`crate::patients::create`] does (search tokens, version 1, the audit row naming the
/// fields given), with the detail that it happened at the front desk.
///
/// Must run inside the caller's write transaction (`tx`), so the patient exists only if
/// whatever needed them (a booking) is also made. `entry` is the audit entry to write
/// (its action should be `create`); the entity is set here. Returns the new row id.
pub fn quick_register_patient(
    tx: &Db,
    p: &QuickPatient,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<PatientId, ClinicError> {
    let p = check_quick_patient(p)?;
    let new = crate::patients::NewPatient {
        full_name: p.full_name,
        date_of_birth: None,
        age_years: None,
        sex: p.sex,
        phone: p.phone,
        address: String::new(),
        email: String::new(),
        notes: String::new(),
    };
    let entry = Entry { at, ..entry }.detail("registered at the front desk");
    let (id, _) = crate::patients::insert(tx, &new, entry)?;
    Ok(id)
}

/// Refuses if `doctor_id` has an appointment that holds time overlapping
/// `[starts_at, ends_at)`, other than `except`.
fn check_free(
    tx: &Db,
    doctor: &Doctor,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    except: i64,
) -> Result<(), ClinicError> {
    let mut rows = tx.query(
        "SELECT 1 FROM appointments WHERE doctor_id = ?1 AND id != ?4 \
             AND status NOT IN ('cancelled', 'no_show') AND starts_at < ?3 AND ends_at > ?2 \
             LIMIT 1",
        ward_tenancy::sql::params![
            doctor.id.clone(),
            format_time(starts_at),
            format_time(ends_at),
            except
        ],
    )?;
    if rows.next()?.is_some() {
        return Err(ClinicError::Conflict(format!(
            "{} already has an appointment at that time. Choose another time or another doctor.",
            doctor.name
        )));
    }
    Ok(())
}

/// Books an appointment (registering a new patient first if asked), refusing a slot the
/// doctor already has taken. `entry` is the audit entry (action `create`) for the
/// booking; a new patient gets a copy of it. Returns the appointment's id.
pub fn book(
    conn: &Db,
    new: &NewAppointment,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<AppointmentId, ClinicError> {
    let minutes = check_minutes(new.minutes)?;
    let reason = check_reason(&new.reason)?;
    if let PatientChoice::New(p) = &new.patient {
        check_quick_patient(p)?;
    }
    let ends_at = new.starts_at + TimeDelta::minutes(minutes);
    let new = new.clone();
    audit::in_transaction(conn, |tx| {
        let patient_id = match &new.patient {
            PatientChoice::Existing(id) => {
                patient(&tx, *id).map_err(|e| match e {
                    ClinicError::NotFound => ClinicError::invalid(
                        "patient",
                        "Choose a registered patient, or register a new one.",
                    ),
                    other => other,
                })?;
                crate::rights::check_processable(&tx, *id)?;
                *id
            }
            PatientChoice::New(p) => quick_register_patient(&tx, p, at, entry.clone())?,
        };
        check_free(&tx, &new.doctor, new.starts_at, ends_at, 0)?;
        let now = format_time(at);
        let mut rows = tx
            .query(
                "INSERT INTO appointments (patient_id, doctor_id, doctor_name, starts_at, ends_at, status, reason, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'booked', ?6, ?7, ?7) RETURNING id",
                ward_tenancy::sql::params![
                    patient_id,
                    new.doctor.id.clone(),
                    new.doctor.name.clone(),
                    format_time(new.starts_at),
                    format_time(ends_at),
                    reason,
                    now
                ],
            )?;
        let id: AppointmentId = rows.next()?.ok_or(ClinicError::NotFound)?.get(0)?;
        drop(rows);
        audit::record(
            &tx,
            &entry.entity("appointment", id).detail(&format!(
                "patient {patient_id} with {} at {}",
                new.doctor.name,
                format_time(new.starts_at)
            )),
        )?;
        Ok(id)
    })
}

/// Moves appointment `id` to `status`, if the day allows that step; the audit row
/// (action `update`) carries the diff.
pub fn set_status(
    conn: &Db,
    id: AppointmentId,
    status: Status,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<(), ClinicError> {
    audit::in_transaction(conn, |tx| {
        let current = get(&tx, id)?;
        if current.status == status {
            return Ok(());
        }
        if !current.status.next().contains(&status) {
            return Err(ClinicError::Conflict(format!(
                "An appointment that is {} cannot become {}.{}",
                current.status.label().to_lowercase(),
                status.label().to_lowercase(),
                allowed_sentence(current.status)
            )));
        }
        // Cancelling records nothing new about the patient; every other step does.
        if status != Status::Cancelled {
            crate::rights::check_processable(&tx, current.patient_id)?;
        }
        tx.execute(
            "UPDATE appointments SET status = ?2, updated_at = ?3 WHERE id = ?1",
            ward_tenancy::sql::params![id, status.as_str(), format_time(at)],
        )?;
        let diff = Diff::new().field("status", current.status.as_str(), status.as_str());
        audit::record(&tx, &entry.entity("appointment", id).diff(diff))?;
        Ok(())
    })
}

fn allowed_sentence(s: Status) -> String {
    let next = s.next();
    if next.is_empty() {
        " It can no longer change.".to_owned()
    } else {
        let names: Vec<String> = next.iter().map(|n| n.label().to_lowercase()).collect();
        format!(" It can become: {}.", names.join(", "))
    }
}

/// Moves appointment `id` to a new time, length and doctor, if it is still only booked
/// and the new slot is free; the audit row (action `update`) carries the diff.
pub fn reschedule(
    conn: &Db,
    id: AppointmentId,
    doctor: &Doctor,
    starts_at: DateTime<Utc>,
    minutes: i64,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<(), ClinicError> {
    let minutes = check_minutes(minutes)?;
    let ends_at = starts_at + TimeDelta::minutes(minutes);
    let doctor = doctor.clone();
    audit::in_transaction(conn, |tx| {
        let current = get(&tx, id)?;
        if current.status != Status::Booked {
            return Err(ClinicError::Conflict(format!(
                "Only a booked appointment can be rescheduled; this one is {}.",
                current.status.label().to_lowercase()
            )));
        }
        check_free(&tx, &doctor, starts_at, ends_at, id.get())?;
        let diff = Diff::new()
            .field(
                "starts_at",
                format_time(current.starts_at),
                format_time(starts_at),
            )
            .field(
                "ends_at",
                format_time(current.ends_at),
                format_time(ends_at),
            )
            .field("doctor_id", current.doctor_id.clone(), doctor.id.clone())
            .field(
                "doctor_name",
                current.doctor_name.clone(),
                doctor.name.clone(),
            );
        if diff.is_empty() {
            return Ok(());
        }
        crate::rights::check_processable(&tx, current.patient_id)?;
        tx.execute(
            "UPDATE appointments SET starts_at = ?2, ends_at = ?3, doctor_id = ?4, doctor_name = ?5, updated_at = ?6 WHERE id = ?1",
            ward_tenancy::sql::params![id, format_time(starts_at), format_time(ends_at), doctor.id.clone(), doctor.name.clone(), format_time(at)],
        )?;
        audit::record(&tx, &entry.entity("appointment", id).diff(diff))?;
        Ok(())
    })
}

/// A slot as the clinic reads it: a local day, start time and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSlot {
    /// The local day.
    pub date: NaiveDate,
    /// The local start time.
    pub time: NaiveTime,
    /// Length in minutes.
    pub minutes: i64,
}

impl LocalSlot {
    /// Its start in UTC, in the clinic's timezone (see [`local_to_utc`]).
    fn starts_at(&self, conn: &Db) -> Result<DateTime<Utc>, ClinicError> {
        let tz = crate::settings::load(conn)?.timezone;
        local_to_utc(tz, self.date, self.time)
    }
}

/// Books `patient` with `doctor` at local `slot` (see [`book`]). Returns the new
/// appointment's id.
pub fn book_local(
    conn: &Db,
    (patient, doctor): (PatientChoice, Doctor),
    slot: LocalSlot,
    reason: String,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<AppointmentId, ClinicError> {
    let new = NewAppointment {
        patient,
        doctor,
        starts_at: slot.starts_at(conn)?,
        minutes: slot.minutes,
        reason,
    };
    book(conn, &new, at, entry)
}

/// Moves appointment `id` to local `slot` with `doctor` (see [`reschedule`]); a missing
/// appointment is [`ClinicError::NotFound`] before the slot is judged.
pub fn reschedule_local(
    conn: &Db,
    id: AppointmentId,
    doctor: &Doctor,
    slot: LocalSlot,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<(), ClinicError> {
    get(conn, id)?;
    let starts_at = slot.starts_at(conn)?;
    reschedule(conn, id, doctor, starts_at, slot.minutes, at, entry)
}

/// An appointment with the clinic's settings, to show it.
pub fn get_with_settings(
    conn: &Db,
    id: AppointmentId,
) -> Result<(crate::settings::ClinicSettings, Appointment), ClinicError> {
    Ok((crate::settings::load(conn)?, get(conn, id)?))
}

/// A day of the appointment book, with the booking form's patient search.
#[derive(Debug, Clone)]
pub struct DayBook {
    /// The clinic's settings (timezone).
    pub settings: crate::settings::ClinicSettings,
    /// The day shown.
    pub date: NaiveDate,
    /// Today, in the clinic's timezone.
    pub today: NaiveDate,
    /// Why the day shown is not the one asked for.
    pub notice: Option<String>,
    /// The day's appointments (of one doctor, when filtered).
    pub list: Vec<Appointment>,
    /// The booking form's patient search.
    pub pick: PatientPick,
}

/// The book of local day `date` (`YYYY-MM-DD`; blank or unreadable is today at `now`,
/// the latter with a notice), of `doctor` only if given, with the search for `query`
/// and the patient `chosen`.
pub fn day_book(
    conn: &Db,
    now: DateTime<Utc>,
    (date, doctor): (&str, Option<&str>),
    query: &str,
    chosen: Option<PatientId>,
) -> Result<DayBook, ClinicError> {
    let settings = crate::settings::load(conn)?;
    let today = settings.local(now).date_naive();
    let (date, notice) = if date.trim().is_empty() {
        (today, None)
    } else {
        match parse_date("date", date) {
            Ok(d) => (d, None),
            Err(_) => (
                today,
                Some("That date could not be read; showing today.".to_owned()),
            ),
        }
    };
    Ok(DayBook {
        list: for_day(conn, settings.timezone, date, doctor)?,
        pick: pick_patient(conn, query, chosen)?,
        settings,
        date,
        today,
        notice,
    })
}

/// The clinic's start page: today's appointments and, if asked for, the recent
/// patients.
#[derive(Debug, Clone)]
pub struct Today {
    /// The clinic's settings (timezone).
    pub settings: crate::settings::ClinicSettings,
    /// Today, in the clinic's timezone at `now`.
    pub date: NaiveDate,
    /// Today's appointments.
    pub list: Vec<Appointment>,
    /// The patients most recently seen (see [`recent_patients`]); empty unless asked.
    pub recent: Vec<PatientHit>,
}

/// Today at `now`, with the ten most recent patients if `with_recent`.
pub fn today(conn: &Db, now: DateTime<Utc>, with_recent: bool) -> Result<Today, ClinicError> {
    let settings = crate::settings::load(conn)?;
    let date = settings.local(now).date_naive();
    let list = for_day(conn, settings.timezone, date, None)?;
    let recent = if with_recent {
        recent_patients(conn, 10)?
    } else {
        Vec::new()
    };
    Ok(Today {
        settings,
        date,
        list,
        recent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_day() {
        assert!(Status::Booked.next().contains(&Status::Arrived));
        assert!(!Status::Booked.next().contains(&Status::Done));
        assert!(Status::Done.next().is_empty());
        assert!(!Status::Cancelled.blocks_slot());
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn local_times_convert_to_utc_and_gaps_are_refused() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let t = local_to_utc(tz, d, NaiveTime::from_hms_opt(9, 0, 0).unwrap()).unwrap();
        assert_eq!(format_time(t), "2026-03-01T03:30:00.000Z");
        let (from, to) = day_bounds(tz, d);
        assert_eq!(format_time(from), "2026-02-28T18:30:00.000Z");
        assert_eq!(to - from, TimeDelta::hours(24));
        let ny: Tz = "America/New_York".parse().unwrap();
        let gap = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert!(local_to_utc(ny, gap, NaiveTime::from_hms_opt(2, 30, 0).unwrap()).is_err());
    }
}
