//! Visits: a consultation's complaints, examination, diagnoses, prescription, advice and
//! follow-up, recorded by the doctor who saw the patient; and each doctor's prescription
//! favourites.

use chrono::{DateTime, NaiveDate, Utc};
use ward_core::format_time;
use ward_tenancy::Db;
use ward_tenancy::sql::params;

use crate::ClinicError;
use crate::audit::{self, Diff, Entry};
use crate::fields::{Field, FieldErrors};
use crate::history::{self, Change, Kind, Saved, Version};
use crate::ids::{FavouriteId, PatientId, VisitId};
use crate::patients::{self, Patient, check_text, parse_date, time};
use crate::settings::{self, ClinicSettings, Currency};

/// Most diagnoses on one visit.
pub const MAX_DIAGNOSES: usize = 20;
/// Most prescription items on one visit (and in one favourite).
pub const MAX_ITEMS: usize = 30;
/// The largest fee, in minor units: far beyond any consultation, and (like a payment's
/// cap) keeps a patient's sum of charges far from overflow.
pub const MAX_FEE_MINOR: i64 = 1_000_000_000_000;

/// One prescription line.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// Drug name.
    pub drug: String,
    /// Strength / dose, e.g. "500 mg".
    pub dose: String,
    /// How often, e.g. "1-0-1" or "twice a day".
    pub frequency: String,
    /// For how long, e.g. "5 days".
    pub duration: String,
    /// Anything else: "after food".
    pub instructions: String,
}

impl Item {
    fn is_blank(&self) -> bool {
        [
            &self.drug,
            &self.dose,
            &self.frequency,
            &self.duration,
            &self.instructions,
        ]
        .iter()
        .all(|s| s.trim().is_empty())
    }
}

/// What the visit form holds, unchecked (blank rows included, so it can be shown again).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VisitForm {
    /// Presenting complaints.
    pub presenting_complaints: String,
    /// Examination notes.
    pub examination_notes: String,
    /// Diagnoses, one per row.
    pub diagnoses: Vec<String>,
    /// Prescription rows.
    pub items: Vec<Item>,
    /// Advice.
    pub advice: String,
    /// Follow-up date `YYYY-MM-DD`, or empty.
    pub follow_up_on: String,
    /// The fee as typed in the clinic's currency ("500", "1,250.50"), or empty.
    pub fee: String,
}

impl VisitForm {
    /// The form filled with stored visit `v`, for editing; the fee written plainly in
    /// `currency` so it reads back to the same amount.
    pub fn from_visit(v: &Visit, currency: &Currency) -> Self {
        Self {
            presenting_complaints: v.presenting_complaints.clone(),
            examination_notes: v.examination_notes.clone(),
            diagnoses: v.diagnoses.clone(),
            items: v.items.clone(),
            advice: v.advice.clone(),
            follow_up_on: v.follow_up_on.map(|d| d.to_string()).unwrap_or_default(),
            fee: v
                .fee_minor
                .map(|m| currency.format_plain(m))
                .unwrap_or_default(),
        }
    }

    /// Reads the form's fields: `diagnosis_N` and `item_N_drug|dose|frequency|duration|instructions`
    /// rows (N < the caps), in row order. Unknown fields are ignored.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut form = Self::default();
        let mut diagnoses: Vec<(usize, String)> = Vec::new();
        let mut items: std::collections::BTreeMap<usize, Item> = Default::default();
        for (key, value) in pairs {
            match key.as_str() {
                "presenting_complaints" => form.presenting_complaints = value.clone(),
                "examination_notes" => form.examination_notes = value.clone(),
                "advice" => form.advice = value.clone(),
                "follow_up_on" => form.follow_up_on = value.clone(),
                "fee" => form.fee = value.clone(),
                _ => {
                    if let Some(n) = key.strip_prefix("diagnosis_")
                        && let Ok(n) = n.parse::<usize>()
                        && n < MAX_DIAGNOSES
                    {
                        diagnoses.push((n, value.clone()));
                    } else if let Some(rest) = key.strip_prefix("item_")
                        && let Some((n, field)) = rest.split_once('_')
                        && let Ok(n) = n.parse::<usize>()
                        && n < MAX_ITEMS
                    {
                        let item = items.entry(n).or_default();
                        match field {
                            "drug" => item.drug = value.clone(),
                            "dose" => item.dose = value.clone(),
                            "frequency" => item.frequency = value.clone(),
                            "duration" => item.duration = value.clone(),
                            "instructions" => item.instructions = value.clone(),
                            _ => {}
                        }
                    }
                }
            }
        }
        diagnoses.sort_by_key(|(n, _)| *n);
        form.diagnoses = diagnoses.into_iter().map(|(_, d)| d).collect();
        form.items = items.into_values().collect();
        form
    }

    /// Checks the form. `today` is the clinic's local date (the follow-up cannot be
    /// before it); the fee is read in `currency`. Blank rows are dropped. All field
    /// errors at once.
    pub fn validate(&self, today: NaiveDate, currency: &Currency) -> Result<NewVisit, FieldErrors> {
        let mut errors = FieldErrors::new();
        let presenting_complaints = check_text(
            &mut errors,
            "presenting_complaints",
            &self.presenting_complaints,
            4000,
            true,
        );
        let examination_notes = check_text(
            &mut errors,
            "examination_notes",
            &self.examination_notes,
            8000,
            true,
        );
        let advice = check_text(&mut errors, "advice", &self.advice, 4000, true);
        let follow_up_on = match self.follow_up_on.trim() {
            "" => None,
            t => match parse_date(t) {
                Some(d) if d < today => {
                    errors.add("follow_up_on", "The follow-up date has passed.");
                    None
                }
                Some(d) if d > today + chrono::Days::new(3660) => {
                    errors.add("follow_up_on", "Check the year.");
                    None
                }
                Some(d) => Some(d),
                None => {
                    errors.add(
                        "follow_up_on",
                        "Enter the date as YYYY-MM-DD, e.g. 2026-03-15.",
                    );
                    None
                }
            },
        };
        let fee_minor = check_fee(&mut errors, &self.fee, currency);
        let mut diagnoses = Vec::new();
        for (i, d) in self.diagnoses.iter().enumerate() {
            let d = check_text(&mut errors, Field::diagnosis(i), d, 300, false);
            if !d.is_empty() {
                diagnoses.push(d);
            }
        }
        let mut items = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            if item.is_blank() {
                continue;
            }
            let e = &mut errors;
            let checked = Item {
                drug: check_text(e, Field::item(i, "drug"), &item.drug, 200, false),
                dose: check_text(e, Field::item(i, "dose"), &item.dose, 100, false),
                frequency: check_text(e, Field::item(i, "frequency"), &item.frequency, 100, false),
                duration: check_text(e, Field::item(i, "duration"), &item.duration, 100, false),
                instructions: check_text(
                    e,
                    Field::item(i, "instructions"),
                    &item.instructions,
                    300,
                    false,
                ),
            };
            if checked.drug.is_empty() {
                e.add(Field::item(i, "drug"), "Enter the drug, or clear the row.");
            }
            items.push(checked);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let visit = NewVisit {
            presenting_complaints,
            examination_notes,
            diagnoses,
            items,
            advice,
            follow_up_on,
            fee_minor,
        };
        if visit.is_empty() {
            return Err(FieldErrors::one(
                "presenting_complaints",
                "Record at least the complaints, a diagnosis or a prescription.",
            ));
        }
        Ok(visit)
    }
}

fn check_fee(errors: &mut FieldErrors, typed: &str, currency: &Currency) -> Option<i64> {
    let typed = typed.trim();
    if typed.is_empty() {
        return None;
    }
    if typed.starts_with('-') {
        errors.add("fee", "A fee cannot be negative.");
        return None;
    }
    match currency.parse_amount(typed) {
        Some(m) if m > MAX_FEE_MINOR => {
            errors.add("fee", "That fee is too large.");
            None
        }
        Some(m) => Some(m),
        None => {
            let example = if currency.minor_units == 0 {
                "e.g. 500"
            } else {
                "e.g. 500 or 500.50"
            };
            errors.add(
                "fee",
                format!("Enter the fee in {} as a number, {example}.", currency.code),
            );
            None
        }
    }
}

/// A checked visit, ready to store; also the content of one kept version of a visit
/// (see [`crate::history`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewVisit {
    /// Presenting complaints.
    pub presenting_complaints: String,
    /// Examination notes.
    pub examination_notes: String,
    /// Diagnoses, non-empty.
    pub diagnoses: Vec<String>,
    /// Prescription items, each with a drug.
    pub items: Vec<Item>,
    /// Advice.
    pub advice: String,
    /// Follow-up date.
    pub follow_up_on: Option<NaiveDate>,
    /// The fee charged, in minor units of the clinic's currency.
    pub fee_minor: Option<i64>,
}

impl NewVisit {
    fn is_empty(&self) -> bool {
        self.presenting_complaints.is_empty()
            && self.examination_notes.is_empty()
            && self.diagnoses.is_empty()
            && self.items.is_empty()
            && self.advice.is_empty()
            && self.follow_up_on.is_none()
    }
}

/// The doctor recording a visit: the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doctor {
    /// User id in the control plane.
    pub id: String,
    /// Display name, kept on the visit as it was.
    pub name: String,
}

/// One stored visit: who recorded it and when, and what it says.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Visit {
    /// Id (in URLs).
    pub id: VisitId,
    /// The patient's id.
    pub patient_id: PatientId,
    /// The doctor's user id.
    pub doctor_id: String,
    /// The doctor's name at the time.
    pub doctor_name: String,
    /// When (UTC).
    pub visited_at: DateTime<Utc>,
    /// What the visit records, as of [`Self::version`]; its fields read as the visit's own.
    #[serde(flatten)]
    pub content: NewVisit,
    /// Which version the record is at: 1 as first saved, one more for each amendment.
    pub version: i64,
}

impl std::ops::Deref for Visit {
    type Target = NewVisit;

    fn deref(&self) -> &NewVisit {
        &self.content
    }
}

impl From<&Visit> for NewVisit {
    fn from(v: &Visit) -> Self {
        v.content.clone()
    }
}

/// Records visit `v` of patient `patient_id` by `doctor`, with `entry` (a `create`).
/// [`ClinicError::NotFound`] if the patient does not exist. Returns the visit's id.
pub fn create(
    conn: &Db,
    patient_id: PatientId,
    v: &NewVisit,
    doctor: &Doctor,
    entry: Entry,
) -> Result<VisitId, ClinicError> {
    let v = v.clone();
    let doctor = doctor.clone();
    let now = format_time(entry.at);
    audit::in_transaction(conn, |tx| {
        crate::rights::check_processable(&tx, patient_id)?;
        tx.execute(
            "INSERT INTO visits (patient_id, doctor_id, doctor_name, visited_at, presenting_complaints, examination_notes, advice, follow_up_on, fee_minor, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?4, ?4)",
            params![
                patient_id,
                doctor.id.clone(),
                doctor.name.clone(),
                now,
                v.presenting_complaints.clone(),
                v.examination_notes.clone(),
                v.advice.clone(),
                v.follow_up_on.map(|d| d.to_string()),
                v.fee_minor
            ],
        )?;
        let id = VisitId::new(tx.last_insert_rowid());
        write_lists(&tx, id, &v)?;
        history::insert(&tx, Kind::Visit, id.get(), &v, &Saved::by(&entry, 1, None))?;
        // The log says which record and what it holds in outline; the record itself is
        // the copy of the clinical content.
        let diff = Diff::new()
            .field("patient_id", serde_json::Value::Null, patient_id.get())
            .field("version", serde_json::Value::Null, 1)
            .field("diagnoses", serde_json::Value::Null, v.diagnoses.len())
            .field("prescription_items", serde_json::Value::Null, v.items.len())
            .field("fee_minor", serde_json::Value::Null, v.fee_minor);
        audit::record(&tx, &entry.entity("visit", id).diff(diff))?;
        Ok(id)
    })
}

/// What changed between two versions of a visit, for the log. Like [`create`]'s entry
/// it is an outline, not a second copy of the notes: free text and lists are told by
/// their size (with "edited" when only the wording changed); the follow-up date and the
/// fee by their values.
fn diff_of(old: &Visit, new: &NewVisit) -> Diff {
    fn outline(old: usize, new: usize, unit: &str) -> (String, String) {
        let edited = if old == new { ", edited" } else { "" };
        (format!("{old} {unit}"), format!("{new} {unit}{edited}"))
    }
    let mut diff = Diff::new();
    for (field, old_text, new_text) in [
        (
            "presenting_complaints",
            &old.presenting_complaints,
            &new.presenting_complaints,
        ),
        (
            "examination_notes",
            &old.examination_notes,
            &new.examination_notes,
        ),
        ("advice", &old.advice, &new.advice),
    ] {
        if old_text != new_text {
            let (o, n) = outline(
                old_text.chars().count(),
                new_text.chars().count(),
                "characters",
            );
            diff.add(field, o, n);
        }
    }
    if old.diagnoses != new.diagnoses {
        let (o, n) = outline(old.diagnoses.len(), new.diagnoses.len(), "entries");
        diff.add("diagnoses", o, n);
    }
    if old.items != new.items {
        let (o, n) = outline(old.items.len(), new.items.len(), "items");
        diff.add("prescription_items", o, n);
    }
    diff.add(
        "follow_up_on",
        old.follow_up_on.map(|d| d.to_string()),
        new.follow_up_on.map(|d| d.to_string()),
    );
    diff.add("fee_minor", old.fee_minor, new.fee_minor);
    diff
}

/// Amends visit `id`: its notes, diagnoses, items, follow-up and fee become `v`, kept as
/// the visit's next version with `reason` (required, see [`history::check_reason`]) and
/// the author and time of `entry` (an `update`, with an outline of what changed and the
/// version numbers: no clinical text). The earlier versions stay as they were written.
/// The doctor and time of the visit stay as recorded. Nothing is written (not even an
/// audit row) when nothing changed; returns the version the visit is now at.
/// [`ClinicError::NotFound`] if there is no such visit.
pub fn update(
    conn: &Db,
    id: VisitId,
    v: &NewVisit,
    reason: &str,
    entry: Entry,
) -> Result<i64, ClinicError> {
    let v = v.clone();
    let reason = reason.to_owned();
    let now = format_time(entry.at);
    audit::in_transaction(conn, |tx| {
        let old = get(&tx, id)?;
        let mut diff = diff_of(&old, &v);
        if diff.is_empty() {
            return Ok(old.version);
        }
        crate::rights::check_processable(&tx, old.patient_id)?;
        let reason = history::check_reason(&reason)?;
        let version = old.version + 1;
        diff.add("version", old.version, version);
        tx.execute(
            "UPDATE visits SET presenting_complaints = ?2, examination_notes = ?3, advice = ?4, follow_up_on = ?5, fee_minor = ?6, updated_at = ?7, version = ?8 WHERE id = ?1",
            params![
                id,
                v.presenting_complaints.clone(),
                v.examination_notes.clone(),
                v.advice.clone(),
                v.follow_up_on.map(|d| d.to_string()),
                v.fee_minor,
                now,
                version
            ],
        )?;
        tx.execute("DELETE FROM diagnoses WHERE visit_id = ?1", [id])?;
        tx.execute("DELETE FROM prescription_items WHERE visit_id = ?1", [id])?;
        write_lists(&tx, id, &v)?;
        history::insert(
            &tx,
            Kind::Visit,
            id.get(),
            &v,
            &Saved::by(&entry, version, Some(&reason)),
        )?;
        audit::record(
            &tx,
            &entry.entity("visit", id).diff(diff).detail("amendment"),
        )?;
        Ok(version)
    })
}

/// Every kept version of visit `id`, oldest first (empty if there is no such visit).
pub fn versions(conn: &Db, id: VisitId) -> Result<Vec<Version<NewVisit>>, ClinicError> {
    history::list(conn, Kind::Visit, id.get())
}

/// Version `number` of visit `id`, or [`ClinicError::NotFound`].
pub fn version(conn: &Db, id: VisitId, number: i64) -> Result<Version<NewVisit>, ClinicError> {
    history::one(conn, Kind::Visit, id.get(), number)
}

/// Visit `id` as it read in version `number`: the stored visit (doctor, time, patient)
/// with that version's content. [`ClinicError::NotFound`] if either does not exist.
pub fn as_of(conn: &Db, id: VisitId, number: i64) -> Result<Visit, ClinicError> {
    let mut visit = get(conn, id)?;
    if number == visit.version {
        return Ok(visit);
    }
    let v = version(conn, id, number)?.content;
    visit.content = v;
    visit.version = number;
    Ok(visit)
}

/// One prescription line as one line of text, for differences between versions.
fn item_line(i: &Item) -> String {
    [&i.drug, &i.dose, &i.frequency, &i.duration, &i.instructions]
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · ")
}

/// How version `new` differs from `old`, field by field, readably: free text word by
/// word, diagnoses and prescription lines entry by entry; `money` formats the fee.
pub fn changes(old: &NewVisit, new: &NewVisit, money: impl Fn(i64) -> String) -> Vec<Change> {
    let mut found = Vec::new();
    for (label, o, n) in [
        (
            "Presenting complaints",
            &old.presenting_complaints,
            &new.presenting_complaints,
        ),
        (
            "Examination",
            &old.examination_notes,
            &new.examination_notes,
        ),
    ] {
        if o != n {
            found.push(Change::text(label, o, n));
        }
    }
    if old.diagnoses != new.diagnoses {
        found.push(Change::lines("Diagnoses", &old.diagnoses, &new.diagnoses));
    }
    if old.items != new.items {
        // Word by word across the lines: a changed dose reads as just that.
        let lines = |items: &[Item]| items.iter().map(item_line).collect::<Vec<_>>().join("\n");
        found.push(Change::text(
            "Prescription",
            &lines(&old.items),
            &lines(&new.items),
        ));
    }
    if old.advice != new.advice {
        found.push(Change::text("Advice", &old.advice, &new.advice));
    }
    if old.follow_up_on != new.follow_up_on {
        let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        found.push(Change::value(
            "Follow-up",
            &date(old.follow_up_on),
            &date(new.follow_up_on),
        ));
    }
    if old.fee_minor != new.fee_minor {
        let fee = |f: Option<i64>| f.map(&money).unwrap_or_default();
        found.push(Change::value(
            "Fee",
            &fee(old.fee_minor),
            &fee(new.fee_minor),
        ));
    }
    found
}

/// Writes `v`'s diagnoses and prescription items, in order, for visit `id` (which has
/// none).
fn write_lists(tx: &Db, id: VisitId, v: &NewVisit) -> Result<(), ClinicError> {
    for (i, d) in v.diagnoses.iter().enumerate() {
        tx.execute(
            "INSERT INTO diagnoses (visit_id, position, text) VALUES (?1, ?2, ?3)",
            params![id, i as i64, d.clone()],
        )?;
    }
    insert_items(tx, "prescription_items", "visit_id", id.get(), &v.items)
}

fn insert_items(
    tx: &Db,
    table: &str,
    owner: &str,
    owner_id: i64,
    items: &[Item],
) -> Result<(), ClinicError> {
    let sql = format!(
        "INSERT INTO {table} ({owner}, position, drug, dose, frequency, duration, instructions) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    );
    for (i, item) in items.iter().enumerate() {
        tx.execute(
            &sql,
            params![
                owner_id,
                i as i64,
                item.drug.clone(),
                item.dose.clone(),
                item.frequency.clone(),
                item.duration.clone(),
                item.instructions.clone()
            ],
        )?;
    }
    Ok(())
}

fn items_of(conn: &Db, table: &str, owner: &str, owner_id: i64) -> Result<Vec<Item>, ClinicError> {
    conn.rows(
        &format!("SELECT drug, dose, frequency, duration, instructions FROM {table} WHERE {owner} = ?1 ORDER BY position"),
        [owner_id],
        |row| Ok(row.decode()?),
    )
}

fn diagnoses_of(conn: &Db, visit_id: VisitId) -> Result<Vec<String>, ClinicError> {
    conn.rows(
        "SELECT text FROM diagnoses WHERE visit_id = ?1 ORDER BY position",
        [visit_id],
        |row| Ok(row.get(0)?),
    )
}

const COLUMNS: &str = "id, patient_id, doctor_id, doctor_name, visited_at, presenting_complaints, examination_notes, advice, follow_up_on, fee_minor, version";

fn head_from_row(row: &ward_tenancy::sql::Row) -> Result<Visit, ClinicError> {
    Ok(Visit {
        id: row.get(0)?,
        patient_id: row.get(1)?,
        doctor_id: row.get(2)?,
        doctor_name: row.get(3)?,
        visited_at: time(row, 4)?,
        content: NewVisit {
            presenting_complaints: row.get(5)?,
            examination_notes: row.get(6)?,
            diagnoses: Vec::new(),
            items: Vec::new(),
            advice: row.get(7)?,
            follow_up_on: row
                .get::<Option<String>>(8)?
                .as_deref()
                .and_then(parse_date),
            fee_minor: row.get(9)?,
        },
        version: row.get(10)?,
    })
}

fn fill(conn: &Db, mut visit: Visit) -> Result<Visit, ClinicError> {
    visit.content.diagnoses = diagnoses_of(conn, visit.id)?;
    visit.content.items = items_of(conn, "prescription_items", "visit_id", visit.id.get())?;
    Ok(visit)
}

/// Visit `id` with its diagnoses and items, or [`ClinicError::NotFound`].
pub fn get(conn: &Db, id: VisitId) -> Result<Visit, ClinicError> {
    let head = conn
        .row(
            &format!("SELECT {COLUMNS} FROM visits WHERE id = ?1"),
            [id],
            head_from_row,
        )?
        .ok_or(ClinicError::NotFound)?;
    fill(conn, head)
}

/// Patient `patient_id`'s visits, newest first (at most 200).
pub fn for_patient(conn: &Db, patient_id: PatientId) -> Result<Vec<Visit>, ClinicError> {
    let heads = conn.rows(
        &format!(
            "SELECT {COLUMNS} FROM visits WHERE patient_id = ?1 ORDER BY visited_at DESC, id DESC LIMIT 200"
        ),
        [patient_id],
        head_from_row,
    )?;
    let mut visits = Vec::with_capacity(heads.len());
    for head in heads {
        visits.push(fill(conn, head)?);
    }
    Ok(visits)
}

/// A visit as one line of a patient's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VisitSummary {
    /// Id.
    pub id: VisitId,
    /// When (UTC).
    pub visited_at: DateTime<Utc>,
    /// The doctor's name at the time.
    pub doctor_name: String,
    /// The diagnoses, in order, joined with "; ".
    pub diagnoses: String,
    /// How many prescription items.
    pub items: i64,
}

/// Patient `patient_id`'s visits as history lines, newest first (at most 200), in one
/// query: the patient page is the busiest page there is.
pub fn summaries(conn: &Db, patient_id: PatientId) -> Result<Vec<VisitSummary>, ClinicError> {
    conn.rows(
        "SELECT v.id, v.visited_at, v.doctor_name,                (SELECT group_concat(text, '; ') FROM (SELECT text FROM diagnoses WHERE visit_id = v.id ORDER BY position)),                (SELECT COUNT(*) FROM prescription_items WHERE visit_id = v.id)              FROM visits v WHERE v.patient_id = ?1 ORDER BY v.visited_at DESC, v.id DESC LIMIT 200",
        [patient_id],
        |row| {
            Ok(VisitSummary {
                id: row.get(0)?,
                visited_at: time(row, 1)?,
                doctor_name: row.get(2)?,
                diagnoses: row.get::<Option<String>>(3)?.unwrap_or_default(),
                items: row.get(4)?,
            })
        },
    )
}

/// A doctor's named set of prescription items.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Favourite {
    /// Id.
    pub id: FavouriteId,
    /// The name the doctor gave it.
    pub name: String,
    /// The items.
    pub items: Vec<Item>,
}

/// Doctor `doctor_id`'s favourites, by name.
pub fn favourites(conn: &Db, doctor_id: &str) -> Result<Vec<Favourite>, ClinicError> {
    let heads = conn.rows(
        "SELECT id, name FROM favourites WHERE doctor_id = ?1 ORDER BY name COLLATE NOCASE",
        [doctor_id],
        |row| Ok::<_, ClinicError>((row.get::<FavouriteId>(0)?, row.get::<String>(1)?)),
    )?;
    let mut found = Vec::with_capacity(heads.len());
    for (id, name) in heads {
        let items = items_of(conn, "favourite_items", "favourite_id", id.get())?;
        found.push(Favourite { id, name, items });
    }
    Ok(found)
}

/// Favourite `id` if it belongs to `doctor_id`, else [`ClinicError::NotFound`].
pub fn favourite(conn: &Db, doctor_id: &str, id: FavouriteId) -> Result<Favourite, ClinicError> {
    let mut rows = conn.query(
        "SELECT name FROM favourites WHERE id = ?1 AND doctor_id = ?2",
        params![id, doctor_id],
    )?;
    let name: String = rows.next()?.ok_or(ClinicError::NotFound)?.get(0)?;
    drop(rows);
    let items = items_of(conn, "favourite_items", "favourite_id", id.get())?;
    Ok(Favourite { id, name, items })
}

/// Saves `items` as doctor `doctor_id`'s favourite `name` (replacing a favourite of the
/// same name), with `entry` (a `create`). Returns its id.
pub fn save_favourite(
    conn: &Db,
    doctor_id: &str,
    name: &str,
    items: &[Item],
    entry: Entry,
) -> Result<FavouriteId, ClinicError> {
    let mut errors = FieldErrors::new();
    let name = check_text(&mut errors, "favourite_name", name, 100, false);
    if let Some((_, message)) = errors.iter().next() {
        return Err(ClinicError::invalid("favourite_name", message.clone()));
    }
    if name.is_empty() {
        return Err(ClinicError::invalid(
            "favourite_name",
            "Give the favourite a name.",
        ));
    }
    if items.is_empty() {
        return Err(ClinicError::invalid(
            "favourite_name",
            "Add at least one prescription item to save as a favourite.",
        ));
    }
    let items: Vec<Item> = items.iter().take(MAX_ITEMS).cloned().collect();
    let doctor_id = doctor_id.to_owned();
    let now = format_time(entry.at);
    audit::in_transaction(conn, |tx| {
        tx.execute(
            "DELETE FROM favourites WHERE doctor_id = ?1 AND name = ?2",
            params![doctor_id.clone(), name.clone()],
        )?;
        tx.execute(
            "INSERT INTO favourites (doctor_id, name, created_at) VALUES (?1, ?2, ?3)",
            params![doctor_id, name.clone(), now],
        )?;
        let id = FavouriteId::new(tx.last_insert_rowid());
        insert_items(&tx, "favourite_items", "favourite_id", id.get(), &items)?;
        let diff = Diff::new().field("name", serde_json::Value::Null, name);
        audit::record(&tx, &entry.entity("favourite", id).diff(diff))?;
        Ok(id)
    })
}

/// Which visit a form records: a new one for a patient, or a stored one being corrected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A new visit of patient `patient_id`.
    New {
        /// The patient seen.
        patient_id: PatientId,
    },
    /// A correction of visit `visit_id`.
    Edit {
        /// The visit corrected.
        visit_id: VisitId,
    },
}

impl Target {
    /// What saving the form is audited as: a `create` or an `update`.
    pub fn action(self) -> audit::Action {
        match self {
            Self::New { .. } => audit::Action::Create,
            Self::Edit { .. } => audit::Action::Update,
        }
    }
}

/// What a visit form shows besides what was typed.
#[derive(Debug)]
pub struct FormData {
    /// The visit being corrected (`None` for a new one).
    pub visit: Option<Visit>,
    /// The patient the visit is of.
    pub patient: Patient,
    /// The doctor's favourites.
    pub favourites: Vec<Favourite>,
    /// The clinic's settings (its date and currency).
    pub settings: ClinicSettings,
}

/// What the form for `target` shows, for doctor `doctor_id`.
pub fn form_data(conn: &Db, target: Target, doctor_id: &str) -> Result<FormData, ClinicError> {
    let (visit, patient_id) = match target {
        Target::New { patient_id } => (None, patient_id),
        Target::Edit { visit_id } => {
            let v = get(conn, visit_id)?;
            let patient_id = v.patient_id;
            (Some(v), patient_id)
        }
    };
    Ok(FormData {
        visit,
        patient: patients::get(conn, patient_id)?,
        favourites: favourites(conn, doctor_id)?,
        settings: settings::load(conn)?,
    })
}

/// Saves checked form `v` for `target`: a new visit by `doctor` ([`create`]), or the
/// correction of a stored one with `reason` ([`update`]), with `entry` (see
/// [`Target::action`]). Returns the visit's id.
pub fn save(
    conn: &Db,
    target: Target,
    v: &NewVisit,
    doctor: &Doctor,
    reason: &str,
    entry: Entry,
) -> Result<VisitId, ClinicError> {
    match target {
        Target::New { patient_id } => create(conn, patient_id, v, doctor, entry),
        Target::Edit { visit_id } => update(conn, visit_id, v, reason, entry).map(|_| visit_id),
    }
}

/// Saves `items` as doctor `doctor_id`'s favourite `name` (see [`save_favourite`]) and
/// returns the doctor's favourites as they now are.
pub fn keep_favourite(
    conn: &Db,
    doctor_id: &str,
    name: &str,
    items: &[Item],
    entry: Entry,
) -> Result<Vec<Favourite>, ClinicError> {
    save_favourite(conn, doctor_id, name, items, entry)?;
    favourites(conn, doctor_id)
}

/// A visit as a page about it shows it.
#[derive(Debug)]
pub struct Record {
    /// The visit, as of the version asked for.
    pub visit: Visit,
    /// Its patient.
    pub patient: Patient,
    /// The clinic's settings.
    pub settings: ClinicSettings,
    /// Every kept version, oldest first, when the visit was amended or a version was
    /// asked for (or the history was); else `None`.
    pub versions: Option<Vec<Version<NewVisit>>>,
    /// The patient's files, when asked for.
    pub files: Option<Vec<crate::attachments::Attachment>>,
}

/// What a page about a visit reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    /// The version to show (the current one if `None`).
    pub version: Option<i64>,
    /// Every kept version, even of a visit never amended.
    pub history: bool,
    /// The patient's files.
    pub files: bool,
}

/// Visit `id` as `wanted` asks: the visit, its patient, the settings, its versions and
/// the patient's files.
pub fn record(conn: &Db, id: VisitId, wanted: Wanted) -> Result<Record, ClinicError> {
    let visit = match wanted.version {
        Some(n) => as_of(conn, id, n)?,
        None => get(conn, id)?,
    };
    let patient = patients::get(conn, visit.patient_id)?;
    let settings = settings::load(conn)?;
    let versions = if wanted.history || visit.version > 1 || wanted.version.is_some() {
        Some(versions(conn, id)?)
    } else {
        None
    };
    let files = if wanted.files {
        Some(crate::attachments::list(conn, patient.id)?)
    } else {
        None
    };
    Ok(Record {
        visit,
        patient,
        settings,
        versions,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::CURRENCIES;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn rows_are_read_in_order_and_blank_ones_dropped() {
        let form = VisitForm::from_pairs(&pairs(&[
            ("diagnosis_1", "Asthma"),
            ("diagnosis_0", "Fever"),
            ("diagnosis_2", " "),
            ("item_1_drug", "Salbutamol"),
            ("item_0_drug", "Paracetamol"),
            ("item_0_dose", "500 mg"),
            ("item_2_drug", ""),
            ("item_99999999999999999999_drug", "x"),
            ("item_x_drug", "x"),
        ]));
        assert_eq!(form.diagnoses, ["Fever", "Asthma", " "]);
        assert_eq!(form.items.len(), 3);
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let v = form.validate(today, &CURRENCIES[0]).unwrap();
        assert_eq!(v.diagnoses, ["Fever", "Asthma"]);
        assert_eq!(v.items.len(), 2);
        assert_eq!(v.items[0].dose, "500 mg");
    }

    #[test]
    fn a_row_without_a_drug_and_a_past_follow_up_are_refused() {
        let form = VisitForm::from_pairs(&pairs(&[
            ("item_0_dose", "500 mg"),
            ("follow_up_on", "2020-01-01"),
        ]));
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let errors = form.validate(today, &CURRENCIES[0]).unwrap_err();
        let names: Vec<_> = errors.iter().map(|(f, _)| f.name()).collect();
        let fields: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
        assert!(fields.contains(&"item_0_drug"), "{fields:?}");
        assert!(fields.contains(&"follow_up_on"), "{fields:?}");
        assert!(
            VisitForm::default()
                .validate(today, &CURRENCIES[0])
                .is_err()
        );
    }

    #[test]
    fn a_fee_is_read_in_minor_units_and_bad_ones_are_refused_on_the_fee_field() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let inr = &CURRENCIES[0];
        let with_fee = |fee: &str| {
            VisitForm::from_pairs(&pairs(&[("presenting_complaints", "Cough"), ("fee", fee)]))
        };
        assert_eq!(
            with_fee("1,250.5").validate(today, inr).unwrap().fee_minor,
            Some(125_050)
        );
        assert_eq!(with_fee(" ").validate(today, inr).unwrap().fee_minor, None);
        assert_eq!(
            with_fee("0").validate(today, inr).unwrap().fee_minor,
            Some(0)
        );
        for bad in ["12.345", "abc", "-5", "1e3", "99999999999999999999"] {
            let errors = with_fee(bad).validate(today, inr).unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].0, "fee", "{bad}");
        }
        let errors = with_fee("-5").validate(today, inr).unwrap_err();
        assert!(errors[0].1.contains("negative"));
    }

    #[test]
    fn a_stored_visit_fills_the_form_so_it_saves_back_unchanged() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let inr = &CURRENCIES[0];
        let visit = Visit {
            id: VisitId::new(1),
            patient_id: PatientId::new(1),
            doctor_id: "d".into(),
            doctor_name: "Dr".into(),
            visited_at: DateTime::default(),
            content: NewVisit {
                presenting_complaints: "Cough".into(),
                examination_notes: String::new(),
                diagnoses: vec!["Asthma".into()],
                items: vec![Item {
                    drug: "Salbutamol".into(),
                    ..Item::default()
                }],
                advice: "Rest".into(),
                follow_up_on: NaiveDate::from_ymd_opt(2026, 3, 9),
                fee_minor: Some(125_050),
            },
            version: 1,
        };
        let form = VisitForm::from_visit(&visit, inr);
        assert_eq!(form.fee, "1250.50");
        let back = form.validate(today, inr).unwrap();
        assert!(diff_of(&visit, &back).is_empty());
        let mut changed = back.clone();
        changed.advice = "Walk".into();
        changed.fee_minor = None;
        let diff = diff_of(&visit, &changed);
        let fields: Vec<_> = diff
            .fields()
            .map(|(f, o, n)| (f, o.clone(), n.clone()))
            .collect();
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert_eq!(fields[0].0, "advice");
        assert_eq!(
            fields[0].2, "4 characters, edited",
            "the words stay out of the log"
        );
        assert_eq!(fields[1].0, "fee_minor");
    }
}
