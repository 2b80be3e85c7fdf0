//! The patient register: registration with a sequential patient number, duplicate
//! detection, edits with a field-level audit diff, and search by name, phone or number.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::Value;
use ward_core::{format_time, parse_time};
use ward_tenancy::Db;
use ward_tenancy::sql::{Row, params};

use crate::ClinicError;
use crate::audit::{self, Diff, Entry};
use crate::fields::{Field, FieldErrors};
use crate::history::{self, Change, Kind, Saved, Version};
use crate::ids::PatientId;

/// Most patients a search returns.
pub const SEARCH_LIMIT: usize = 50;

/// What a person typed into the patient form, unchecked.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct PatientForm {
    /// Full name.
    pub full_name: String,
    /// `YYYY-MM-DD`, or empty when unknown.
    pub date_of_birth: String,
    /// Age in whole years, when the date of birth is unknown.
    pub age_years: String,
    /// `female`, `male`, `other` or `unknown`.
    pub sex: String,
    /// Phone number, any formatting.
    pub phone: String,
    /// Postal address.
    pub address: String,
    /// Email address (optional).
    pub email: String,
    /// Free notes (optional).
    pub notes: String,
}

/// A checked patient form, ready to store; also the content of one kept version of a
/// patient's record (see [`crate::history`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewPatient {
    /// Full name, trimmed.
    pub full_name: String,
    /// Date of birth, when known.
    pub date_of_birth: Option<NaiveDate>,
    /// Age in years, when only that is known.
    pub age_years: Option<i64>,
    /// One of [`SEXES`].
    pub sex: String,
    /// Phone number as typed.
    pub phone: String,
    /// Postal address.
    pub address: String,
    /// Email address.
    pub email: String,
    /// Notes.
    pub notes: String,
}

/// The values `sex` may take, with labels.
pub const SEXES: [(&str, &str); 4] = [
    ("female", "Female"),
    ("male", "Male"),
    ("other", "Other"),
    ("unknown", "Not stated"),
];

pub(crate) fn check_text(
    errors: &mut FieldErrors,
    field: impl Into<Field>,
    value: &str,
    max: usize,
    multiline: bool,
) -> String {
    let value = value.trim();
    if value.chars().count() > max {
        errors.add(field, format!("At most {max} characters."));
    } else if value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        errors.add(field, "Remove the control characters.");
    }
    value.to_owned()
}

/// Parses a `YYYY-MM-DD` date typed in a form.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

/// Digits only, for searching phone numbers typed in any format.
pub fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

impl PatientForm {
    /// Checks the form; `today` is the clinic's local date. All field errors at once.
    pub fn validate(&self, today: NaiveDate) -> Result<NewPatient, FieldErrors> {
        let mut errors = FieldErrors::new();
        let full_name = check_text(&mut errors, "full_name", &self.full_name, 200, false);
        if full_name.is_empty() {
            errors.add("full_name", "Enter the patient's full name.");
        }
        let date_of_birth = match self.date_of_birth.trim() {
            "" => None,
            text => match parse_date(text) {
                Some(d) if d > today => {
                    errors.add("date_of_birth", "The date of birth is in the future.");
                    None
                }
                Some(d) if d.year() < 1880 => {
                    errors.add("date_of_birth", "Check the year.");
                    None
                }
                Some(d) => Some(d),
                None => {
                    errors.add(
                        "date_of_birth",
                        "Enter the date as YYYY-MM-DD, e.g. 1984-07-21.",
                    );
                    None
                }
            },
        };
        let age_years = match self.age_years.trim() {
            "" => None,
            text => match text.parse::<i64>() {
                Ok(n) if (0..=130).contains(&n) => Some(n),
                _ => {
                    errors.add("age_years", "Enter the age in whole years (0–130).");
                    None
                }
            },
        };
        if date_of_birth.is_some() && age_years.is_some() {
            errors.add(
                "age_years",
                "Give either the date of birth or the age, not both.",
            );
        }
        let sex = self.sex.trim().to_owned();
        if !SEXES.iter().any(|(v, _)| *v == sex) {
            errors.add("sex", "Choose one.");
        }
        let phone = check_text(&mut errors, "phone", &self.phone, 40, false);
        if !phone.is_empty() && digits(&phone).len() < 5 {
            errors.add("phone", "Enter a phone number with at least 5 digits.");
        }
        let address = check_text(&mut errors, "address", &self.address, 500, true);
        let email = check_text(&mut errors, "email", &self.email, 254, false);
        if !email.is_empty() && (!email.contains('@') || email.contains(char::is_whitespace)) {
            errors.add("email", "Enter an email address like name@example.com.");
        }
        let notes = check_text(&mut errors, "notes", &self.notes, 4000, true);
        if errors.is_empty() {
            Ok(NewPatient {
                full_name,
                date_of_birth,
                age_years,
                sex,
                phone,
                address,
                email,
                notes,
            })
        } else {
            Err(errors)
        }
    }
}

/// One patient as stored: the record's content and what the clinic keeps about it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Patient {
    /// Internal id (in URLs).
    pub id: PatientId,
    /// The clinic-visible patient number.
    pub number: i64,
    /// What the record says, as of [`Self::version`]; its fields read as the patient's own.
    #[serde(flatten)]
    pub content: NewPatient,
    /// The date the age was given (when the date of birth was unknown).
    pub age_recorded_on: Option<NaiveDate>,
    /// When registered.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
    /// Which version the record is at: 1 as registered, one more for each correction.
    pub version: i64,
}

impl std::ops::Deref for Patient {
    type Target = NewPatient;

    fn deref(&self) -> &NewPatient {
        &self.content
    }
}

impl Patient {
    /// Age in whole years on `today` (from the date of birth, or the recorded age grown
    /// by the years since it was given).
    pub fn age_on(&self, today: NaiveDate) -> Option<i64> {
        if let Some(dob) = self.date_of_birth {
            return today.years_since(dob).map(i64::from);
        }
        let age = self.age_years?;
        let grown = self
            .age_recorded_on
            .and_then(|d| today.years_since(d))
            .map_or(0, i64::from);
        Some(age + grown)
    }

    /// The label of the patient's sex.
    pub fn sex_label(&self) -> &'static str {
        SEXES
            .iter()
            .find(|(v, _)| *v == self.sex)
            .map_or("Not stated", |(_, l)| l)
    }

    /// The form filled with this patient's details, for editing.
    pub fn to_form(&self) -> PatientForm {
        PatientForm {
            full_name: self.full_name.clone(),
            date_of_birth: self
                .date_of_birth
                .map(|d| d.to_string())
                .unwrap_or_default(),
            age_years: self.age_years.map(|a| a.to_string()).unwrap_or_default(),
            sex: self.sex.clone(),
            phone: self.phone.clone(),
            address: self.address.clone(),
            email: self.email.clone(),
            notes: self.notes.clone(),
        }
    }
}

const COLUMNS: &str = "id, number, full_name, date_of_birth, age_years, age_recorded_on, sex, phone, address, email, notes, created_at, updated_at, version";

pub(crate) fn time(row: &Row, i: i32) -> Result<DateTime<Utc>, ClinicError> {
    let text: String = row.get(i)?;
    parse_time(&text).ok_or_else(|| ClinicError::invalid("stored time", "unreadable time"))
}

fn date(row: &Row, i: i32) -> Result<Option<NaiveDate>, ClinicError> {
    Ok(row
        .get::<Option<String>>(i)?
        .as_deref()
        .and_then(parse_date))
}

fn from_row(row: &Row) -> Result<Patient, ClinicError> {
    Ok(Patient {
        id: row.get(0)?,
        number: row.get(1)?,
        content: NewPatient {
            full_name: row.get(2)?,
            date_of_birth: date(row, 3)?,
            age_years: row.get(4)?,
            sex: row.get(6)?,
            phone: row.get(7)?,
            address: row.get(8)?,
            email: row.get(9)?,
            notes: row.get(10)?,
        },
        age_recorded_on: date(row, 5)?,
        created_at: time(row, 11)?,
        updated_at: time(row, 12)?,
        version: row.get(13)?,
    })
}

/// The patient with id `id`, or [`ClinicError::NotFound`].
pub fn get(conn: &Db, id: PatientId) -> Result<Patient, ClinicError> {
    conn.row(
        &format!("SELECT {COLUMNS} FROM patients WHERE id = ?1"),
        [id],
        from_row,
    )?
    .ok_or(ClinicError::NotFound)
}

/// The id of the patient with register number `number`, if there is one.
pub fn id_by_number(conn: &Db, number: i64) -> Result<Option<PatientId>, ClinicError> {
    conn.row(
        "SELECT id FROM patients WHERE number = ?1",
        [number],
        |r| -> Result<PatientId, ClinicError> { Ok(r.get(0)?) },
    )
}

/// The lower-cased words of a name, as searched.
pub fn name_tokens(name: &str) -> Vec<String> {
    let mut tokens: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    tokens.sort();
    tokens.dedup();
    tokens
}

pub(crate) fn write_tokens(conn: &Db, id: PatientId, name: &str) -> Result<(), ClinicError> {
    conn.execute(
        "DELETE FROM patient_name_tokens WHERE patient_id = ?1",
        [id],
    )?;
    for token in name_tokens(name) {
        conn.execute(
            "INSERT INTO patient_name_tokens (token, patient_id) VALUES (?1, ?2)",
            params![token, id],
        )?;
    }
    Ok(())
}

/// The columns of content `p` in the order both the insert and the update bind them,
/// `full_name` to `notes`: with the date its age was given, and the phone also as
/// digits, forwards and reversed, for search.
fn content_values(
    p: &NewPatient,
    age_recorded_on: Option<String>,
) -> Vec<ward_tenancy::sql::Value> {
    let phone_digits = digits(&p.phone);
    let digits_reversed = reversed(&phone_digits);
    vec![
        p.full_name.clone().into(),
        p.date_of_birth.map(|d| d.to_string()).into(),
        p.age_years.into(),
        age_recorded_on.into(),
        p.sex.clone().into(),
        p.phone.clone().into(),
        phone_digits.into(),
        digits_reversed.into(),
        p.address.clone().into(),
        p.email.clone().into(),
        p.notes.clone().into(),
    ]
}

fn reversed(s: &str) -> String {
    s.chars().rev().collect()
}

/// Registered patients whose name matches `p`'s (ignoring case) and whose phone or
/// date of birth also matches: probably the same person. Phones match on their last ten
/// digits, so one typed with and one without the country code are the same number. `except` leaves one out (the
/// record being edited).
pub fn find_duplicates(
    conn: &Db,
    p: &NewPatient,
    except: Option<PatientId>,
) -> Result<Vec<Patient>, ClinicError> {
    let phone = digits(&p.phone);
    let dob = p.date_of_birth.map(|d| d.to_string());
    conn
        .rows(
            &format!(
                "SELECT {COLUMNS} FROM patients WHERE full_name = ?1 COLLATE NOCASE \
                 AND ((length(?2) >= 7 AND length(phone_digits) >= 7 AND substr(phone_digits, -10) = substr(?2, -10)) OR (?3 IS NOT NULL AND date_of_birth = ?3)) \
                 AND id IS NOT ?4 AND merged_into IS NULL ORDER BY number LIMIT 10"
            ),
            params![p.full_name.clone(), phone, dob, except],
            from_row,
        )
}

/// Registers `p` with the next patient number as the record's version 1, recording
/// `entry` (a `create` by the signed-in user) with the number and the names of the fields
/// given, not their values (see [`diff_of`]). Returns the new patient.
pub fn create(conn: &Db, p: &NewPatient, entry: Entry) -> Result<Patient, ClinicError> {
    let p = p.clone();
    let (id, _) = audit::in_transaction(conn, |tx| insert(&tx, &p, entry))?;
    get(conn, id)
}

/// [`create`]'s work inside the caller's transaction `tx`, for workflows that register a
/// patient as part of something else (a booking at the front desk): the row, its search
/// tokens, version 1 and the audit row. Returns the id and the patient number.
pub(crate) fn insert(
    tx: &Db,
    p: &NewPatient,
    entry: Entry,
) -> Result<(PatientId, i64), ClinicError> {
    let at = entry.at;
    let now = format_time(at);
    let mut rows = tx.query("SELECT COALESCE(MAX(number), 0) + 1 FROM patients", ())?;
    let number: i64 = match rows.next()? {
        Some(row) => row.get(0)?,
        None => 1,
    };
    drop(rows);
    // The age was given on the clinic's date, not UTC's.
    let today = crate::settings::load(tx)?.local(at).date_naive();
    let mut values = vec![number.into()];
    values.extend(content_values(p, p.age_years.map(|_| today.to_string())));
    values.push(now.into());
    tx.execute(
        "INSERT INTO patients (number, full_name, date_of_birth, age_years, age_recorded_on, sex, phone, phone_digits, phone_digits_rev, address, email, notes, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
        values,
    )?;
    let id = PatientId::new(tx.last_insert_rowid());
    write_tokens(tx, id, &p.full_name)?;
    history::insert(tx, Kind::Patient, id.get(), p, &Saved::by(&entry, 1, None))?;
    let diff = diff_of(&blank(), p, 0, 1).field("number", Value::Null, number);
    audit::record(tx, &entry.entity("patient", id).diff(diff))?;
    Ok((id, number))
}

fn blank() -> NewPatient {
    NewPatient {
        full_name: String::new(),
        date_of_birth: None,
        age_years: None,
        sex: String::new(),
        phone: String::new(),
        address: String::new(),
        email: String::new(),
        notes: String::new(),
    }
}

/// Which fields differ between two versions, for the log: each changed field's entry
/// names the versions before and after (`null` before for a new record), never the
/// values, so the audit log holds no demographics; the versions themselves hold them.
fn diff_of(old: &NewPatient, new: &NewPatient, from: i64, to: i64) -> Diff {
    let before = if from == 0 {
        Value::Null
    } else {
        Value::String(format!("version {from}"))
    };
    let after = Value::String(format!("version {to}"));
    let mut diff = Diff::new();
    for (field, changed) in [
        ("full_name", old.full_name != new.full_name),
        ("date_of_birth", old.date_of_birth != new.date_of_birth),
        ("age_years", old.age_years != new.age_years),
        ("sex", old.sex != new.sex),
        ("phone", old.phone != new.phone),
        ("address", old.address != new.address),
        ("email", old.email != new.email),
        ("notes", old.notes != new.notes),
    ] {
        if changed {
            diff.add(field, before.clone(), after.clone());
        }
    }
    diff
}

impl From<&Patient> for NewPatient {
    fn from(p: &Patient) -> Self {
        p.content.clone()
    }
}

/// Corrects patient `id` to `p`: kept as the record's next version with `reason`
/// (required, see [`history::check_reason`]) and the author and time of `entry` (an
/// `update` naming the changed fields and the versions, not the values). Earlier
/// versions stay as written. Nothing is written (not even an audit row) when nothing
/// changed.
pub fn update(
    conn: &Db,
    id: PatientId,
    p: &NewPatient,
    reason: &str,
    entry: Entry,
) -> Result<Patient, ClinicError> {
    let p = p.clone();
    let reason = reason.to_owned();
    let at = entry.at;
    audit::in_transaction(conn, |tx| {
        let old = get(&tx, id)?;
        let version = old.version + 1;
        let diff = diff_of(&NewPatient::from(&old), &p, old.version, version);
        if diff.is_empty() {
            return Ok::<_, ClinicError>(());
        }
        crate::rights::check_processable(&tx, id)?;
        let reason = history::check_reason(&reason)?;
        // A newly given age starts growing from today; an unchanged one keeps its date.
        let age_recorded_on = match (p.age_years, old.age_years == p.age_years) {
            (None, _) => None,
            (Some(_), true) => old.age_recorded_on.map(|d| d.to_string()),
            (Some(_), false) => Some(
                crate::settings::load(&tx)?
                    .local(at)
                    .date_naive()
                    .to_string(),
            ),
        };
        let mut values = vec![id.into()];
        values.extend(content_values(&p, age_recorded_on));
        values.extend([format_time(at).into(), version.into()]);
        tx.execute(
            "UPDATE patients SET full_name = ?2, date_of_birth = ?3, age_years = ?4, age_recorded_on = ?5, sex = ?6, phone = ?7, phone_digits = ?8, phone_digits_rev = ?9, address = ?10, email = ?11, notes = ?12, updated_at = ?13, version = ?14 WHERE id = ?1",
            values,
        )?;
        if old.full_name != p.full_name {
            write_tokens(&tx, id, &p.full_name)?;
        }
        history::insert(
            &tx,
            Kind::Patient,
            id.get(),
            &p,
            &Saved::by(&entry, version, Some(&reason)),
        )?;
        audit::record(
            &tx,
            &entry.entity("patient", id).diff(diff).detail("correction"),
        )?;
        Ok(())
    })?;
    get(conn, id)
}

/// What the registration form came to.
#[derive(Debug)]
pub enum Registration {
    /// The patient was registered.
    Registered(Patient),
    /// The form is shown again: with its `errors`, or (none) with the possible
    /// `duplicates` to confirm. `today` is the clinic's date, for their ages.
    Refused {
        /// The fields to correct.
        errors: FieldErrors,
        /// Patients who are probably the same person.
        duplicates: Vec<Patient>,
        /// The clinic's local date.
        today: NaiveDate,
    },
}

/// The registration form's post: checks `form` against the clinic's date at `entry`'s
/// time, warns of possible duplicates unless `confirmed_duplicate`, and registers the
/// patient with `entry` (a `create`).
pub fn register(
    conn: &Db,
    form: &PatientForm,
    confirmed_duplicate: bool,
    entry: Entry,
) -> Result<Registration, ClinicError> {
    let today = crate::settings::load(conn)?.local(entry.at).date_naive();
    let refused = |errors, duplicates| Registration::Refused {
        errors,
        duplicates,
        today,
    };
    let valid = match form.validate(today) {
        Ok(v) => v,
        Err(errors) => return Ok(refused(errors, Vec::new())),
    };
    if !confirmed_duplicate {
        let duplicates = find_duplicates(conn, &valid, None)?;
        if !duplicates.is_empty() {
            return Ok(refused(FieldErrors::new(), duplicates));
        }
    }
    Ok(Registration::Registered(create(conn, &valid, entry)?))
}

/// What the correction form came to.
#[derive(Debug)]
pub enum Correction {
    /// The correction was saved (or changed nothing).
    Saved,
    /// The form is shown again with its `errors`, for `patient` as stored.
    Refused {
        /// The fields to correct (the reason among them).
        errors: FieldErrors,
        /// The record as it stands.
        patient: Box<Patient>,
    },
}

/// The correction form's post: checks `form` against the clinic's date at `entry`'s
/// time and saves it as patient `id`'s next version with `reason` (see [`update`]).
pub fn correct(
    conn: &Db,
    id: PatientId,
    form: &PatientForm,
    reason: &str,
    entry: Entry,
) -> Result<Correction, ClinicError> {
    let patient = get(conn, id)?;
    let today = crate::settings::load(conn)?.local(entry.at).date_naive();
    let errors = match form.validate(today) {
        Ok(valid) => match update(conn, id, &valid, reason, entry) {
            Ok(_) => return Ok(Correction::Saved),
            Err(ClinicError::Invalid {
                field: "reason",
                message,
            }) => FieldErrors::one("reason", message),
            Err(e) => return Err(e),
        },
        Err(errors) => errors,
    };
    Ok(Correction::Refused {
        errors,
        patient: Box::new(patient),
    })
}

/// A patient's record with every kept version, for its history page.
#[derive(Debug)]
pub struct History {
    /// The record as it stands.
    pub patient: Patient,
    /// Every kept version, oldest first.
    pub versions: Vec<Version<NewPatient>>,
    /// The clinic's settings (its timezone, for the times).
    pub settings: crate::settings::ClinicSettings,
}

/// Patient `id`, its kept versions and the clinic's settings.
pub fn with_history(conn: &Db, id: PatientId) -> Result<History, ClinicError> {
    Ok(History {
        patient: get(conn, id)?,
        versions: versions(conn, id)?,
        settings: crate::settings::load(conn)?,
    })
}

/// Every kept version of patient `id`'s record, oldest first.
pub fn versions(conn: &Db, id: PatientId) -> Result<Vec<Version<NewPatient>>, ClinicError> {
    history::list(conn, Kind::Patient, id.get())
}

/// How version `new` of a patient's record differs from `old`, field by field.
pub fn changes(old: &NewPatient, new: &NewPatient) -> Vec<Change> {
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let age = |a: Option<i64>| a.map(|a| a.to_string()).unwrap_or_default();
    let sex = |s: &str| {
        SEXES
            .iter()
            .find(|(v, _)| *v == s)
            .map_or("Not stated", |(_, l)| l)
            .to_owned()
    };
    let mut found = Vec::new();
    let mut value = |label, o: String, n: String| {
        if o != n {
            found.push(Change::value(label, &o, &n));
        }
    };
    value("Name", old.full_name.clone(), new.full_name.clone());
    value(
        "Date of birth",
        date(old.date_of_birth),
        date(new.date_of_birth),
    );
    value("Age", age(old.age_years), age(new.age_years));
    value("Sex", sex(&old.sex), sex(&new.sex));
    value("Phone", old.phone.clone(), new.phone.clone());
    value("Email", old.email.clone(), new.email.clone());
    for (label, o, n) in [
        ("Address", &old.address, &new.address),
        ("Notes", &old.notes, &new.notes),
    ] {
        if o != n {
            found.push(Change::text(label, o, n));
        }
    }
    found
}

/// The most recently registered patients.
pub fn recent(conn: &Db, limit: usize) -> Result<Vec<Patient>, ClinicError> {
    let limit = i64::try_from(limit.min(SEARCH_LIMIT)).unwrap_or(50);
    conn.rows(
        &format!(
            "SELECT {COLUMNS} FROM patients WHERE merged_into IS NULL ORDER BY id DESC LIMIT ?1"
        ),
        [limit],
        from_row,
    )
}

/// The exclusive upper bound of strings starting with `prefix` (binary collation).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Patients matching `query`, at most [`SEARCH_LIMIT`], best first:
///
/// - a query of digits (any formatting: spaces, dashes, `+`, brackets, a leading `#`)
///   finds the patient with that number, and phones starting or ending with those digits
///   (so a number typed with or without the country code is found);
/// - otherwise every word of the query must start a word of the name, in any order
///   ("ra an" finds "Ana Rao").
///
/// Every branch is an index range scan, so it stays fast on a large register.
pub fn search(conn: &Db, query: &str) -> Result<Vec<Patient>, ClinicError> {
    let query = query.trim();
    if query.is_empty() {
        return recent(conn, SEARCH_LIMIT);
    }
    let limit = SEARCH_LIMIT as i64;
    let has_letters = query.chars().any(char::is_alphabetic);
    if !has_letters {
        let d = digits(query);
        if d.is_empty() || d.len() > 20 {
            return Ok(Vec::new());
        }
        let number: Option<i64> = if d.len() <= 9 { d.parse().ok() } else { None };
        // Phones by prefix and suffix only from 4 digits: fewer would match half the
        // register.
        let phones = d.len() >= 4;
        let rev = reversed(&d);
        return conn
            .rows(
                &format!(
                    // A merged duplicate's number finds the record it went into.
                    "SELECT {COLUMNS} FROM patients WHERE merged_into IS NULL AND id IN ( \
                       SELECT coalesce(merged_into, id) FROM patients WHERE number = ?1 \
                       UNION SELECT id FROM patients WHERE ?2 AND phone_digits >= ?3 AND phone_digits < ?4 \
                       UNION SELECT id FROM patients WHERE ?2 AND phone_digits_rev >= ?5 AND phone_digits_rev < ?6 \
                     ) ORDER BY (number = ?1) DESC, full_name COLLATE NOCASE, number LIMIT ?7"
                ),
                params![
                    number,
                    phones,
                    d.clone(),
                    prefix_end(&d),
                    rev.clone(),
                    prefix_end(&rev),
                    limit
                ],
                from_row,
            );
    }
    let words: Vec<String> = name_tokens(query).into_iter().take(6).collect();
    let mut values: Vec<ward_tenancy::sql::Value> = Vec::with_capacity(words.len() * 2);
    for w in &words {
        values.push(ward_tenancy::sql::Value::Text(w.clone()));
        values.push(ward_tenancy::sql::Value::Text(prefix_end(w)));
    }
    let found = match words.len() {
        0 => return Ok(Vec::new()),
        // One word: walk its index range in order and stop at the limit. Sorting every
        // match by name instead would sort a quarter of the register for "r".
        1 => {
            let columns = ward_tenancy::sql::qualified("p", COLUMNS);
            // Twice the limit: a name can match twice ("Ravi Rao" for "ra").
            let sql = format!(
                "SELECT {columns} FROM patient_name_tokens t JOIN patients p ON p.id = t.patient_id \
                 WHERE t.token >= ?1 AND t.token < ?2 ORDER BY t.token, t.patient_id LIMIT {}",
                2 * limit
            );
            let mut found = conn.rows(&sql, values, from_row)?;
            let mut seen = std::collections::HashSet::new();
            found.retain(|p| seen.insert(p.id));
            found.truncate(SEARCH_LIMIT);
            found
        }
        // Several words: intersect their ranges (each an index range scan), which leaves
        // few enough patients to sort.
        n => {
            let one = "SELECT patient_id FROM patient_name_tokens WHERE token >= ? AND token < ?";
            let ranges = vec![one; n].join(" INTERSECT ");
            let sql = format!(
                "SELECT {COLUMNS} FROM patients WHERE id IN ({ranges}) \
                 ORDER BY full_name COLLATE NOCASE, number LIMIT {limit}"
            );
            conn.rows(&sql, values, from_row)?
        }
    };
    let mut found = found;
    found.sort_by_cached_key(|p| (p.full_name.to_lowercase(), p.number));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> PatientForm {
        PatientForm {
            full_name: " Ana Rao ".into(),
            sex: "female".into(),
            phone: "+91 98450-12345".into(),
            ..PatientForm::default()
        }
    }

    #[test]
    fn forms_are_checked_field_by_field() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let ok = form().validate(today).unwrap();
        assert_eq!(ok.full_name, "Ana Rao");
        let bad = PatientForm {
            full_name: "x".repeat(201),
            date_of_birth: "2027-01-01".into(),
            age_years: "abc".into(),
            sex: "robot".into(),
            phone: "12".into(),
            email: "nope".into(),
            ..PatientForm::default()
        };
        let errors = bad.validate(today).unwrap_err();
        let names: Vec<_> = errors.iter().map(|(f, _)| f.name()).collect();
        let fields: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
        for f in [
            "full_name",
            "date_of_birth",
            "age_years",
            "sex",
            "phone",
            "email",
        ] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
        let bad_date = PatientForm {
            date_of_birth: "2024-02-30".into(),
            ..form()
        };
        assert_eq!(bad_date.validate(today).unwrap_err()[0].0, "date_of_birth");
    }

    #[test]
    fn names_split_into_lower_case_words() {
        assert_eq!(
            name_tokens("Ana  María O'Rao"),
            ["ana", "maría", "o", "rao"]
        );
        assert_eq!(digits("+91 (984) 50-12"), "919845012");
    }
}
