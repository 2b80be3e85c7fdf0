//! A patient's rights over their data: their whole record on request, erasure where the
//! law allows it, a legal hold that keeps a record from erasure, and restriction of
//! processing, which keeps the record but records nothing new about the patient
//! (docs/patients.md).

use std::io::Write;

use chrono::{DateTime, Utc};
use ward_core::format_time;
use ward_tenancy::Db;

use crate::ClinicError;
use crate::audit::{self, Diff, Entry};
use crate::export::{ExportError, columns, write_table};
use crate::ids::PatientId;

/// The `format` of a patient's record.
pub const FORMAT: &str = "ward-patient-record";
/// Its version.
pub const VERSION: u32 = 1;

/// Every table that holds a patient's data, with the condition that picks their rows
/// (`?1` is the patient's id). A table with a `patient_id`, `visit_id` or `payment_id`
/// column must be here (a test checks it), so a new kind of record cannot be left out of
/// a patient's record or their erasure.
pub const PATIENT_TABLES: [(&str, &str); 12] = [
    ("patients", "id = ?1"),
    ("patient_versions", "patient_id = ?1"),
    ("visits", "patient_id = ?1"),
    (
        "visit_versions",
        "visit_id IN (SELECT id FROM visits WHERE patient_id = ?1)",
    ),
    (
        "diagnoses",
        "visit_id IN (SELECT id FROM visits WHERE patient_id = ?1)",
    ),
    (
        "prescription_items",
        "visit_id IN (SELECT id FROM visits WHERE patient_id = ?1)",
    ),
    ("appointments", "patient_id = ?1"),
    ("payments", "patient_id = ?1"),
    (
        "payment_items",
        "payment_id IN (SELECT id FROM payments WHERE patient_id = ?1)",
    ),
    (
        "payment_corrections",
        "payment_id IN (SELECT id FROM payments WHERE patient_id = ?1)",
    ),
    ("patient_merges", "survivor_id = ?1 OR merged_id = ?1"),
    ("attachments", "patient_id = ?1"),
];

/// Tables that name a patient, visit or payment but are not the patient's data: the
/// search index (rebuilt from the name) is left out of the record.
pub const NOT_PATIENT_DATA: [&str; 1] = ["patient_name_tokens"];

/// Columns never written into a patient's record: the per-file keys of attachments
/// and of their thumbnails.
pub const SECRET_COLUMNS: [&str; 2] = ["file_key", "thumbnail_key"];

/// What a patient's record says about itself.
#[derive(Debug, Clone)]
pub struct RecordHeader {
    /// The clinic's name.
    pub clinic: String,
    /// When it was produced.
    pub generated_at: DateTime<Utc>,
    /// By whom (a name).
    pub generated_by: String,
}

/// Writes patient `patient_id`'s whole record as one JSON document to `out`: every row
/// of [`PATIENT_TABLES`] that is theirs, every column, including every kept version of
/// their details and visits. A table with no rows of theirs is written empty.
pub fn write_record<W: Write>(
    conn: &Db,
    patient_id: PatientId,
    header: &RecordHeader,
    out: W,
) -> Result<(), ExportError> {
    let mut w = std::io::BufWriter::new(out);
    write!(
        w,
        "{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"clinic\":"
    )?;
    serde_json::to_writer(&mut w, &header.clinic)?;
    write!(w, ",\"generated_at\":")?;
    serde_json::to_writer(&mut w, &format_time(header.generated_at))?;
    write!(w, ",\"generated_by\":")?;
    serde_json::to_writer(&mut w, &header.generated_by)?;
    write!(w, ",\"patient_id\":{patient_id},\"tables\":{{")?;
    for (t, (table, condition)) in PATIENT_TABLES.iter().enumerate() {
        // Keys stay in Ward: a patient's record is their data, not the means to open
        // the clinic's stored files.
        let cols: Vec<String> = columns(conn, table)?
            .into_iter()
            .filter(|c| !SECRET_COLUMNS.contains(&c.as_str()))
            .collect();
        if t > 0 {
            w.write_all(b",")?;
        }
        write_table(conn, &mut w, table, &cols, condition, [patient_id])?;
    }
    w.write_all(b"}}\n")?;
    w.flush()?;
    Ok(())
}

/// Why a record is erased: a fixed list, so the audit log names the ground without free
/// text that could describe the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ground {
    /// The patient asked for their data to be erased.
    PatientRequest,
    /// The record was entered by mistake (a test, a wrong person).
    EnteredByMistake,
    /// The clinic's retention period for the record is over.
    RetentionOver,
}

impl Ground {
    /// Every ground, in the order the form offers them.
    pub const ALL: [Ground; 3] = [
        Self::PatientRequest,
        Self::EnteredByMistake,
        Self::RetentionOver,
    ];

    /// The stored and posted form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PatientRequest => "patient_request",
            Self::EnteredByMistake => "entered_by_mistake",
            Self::RetentionOver => "retention_over",
        }
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            Self::PatientRequest => "The patient asked for their data to be erased",
            Self::EnteredByMistake => "The record was entered by mistake",
            Self::RetentionOver => "The clinic's time to keep the record is over",
        }
    }

    /// Parses the posted form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// Where a patient's record stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Held from erasure since.
    pub legal_hold_since: Option<DateTime<Utc>>,
    /// Erased at.
    pub erased_at: Option<DateTime<Utc>>,
    /// Processing restricted since.
    pub restricted_since: Option<DateTime<Utc>>,
    /// Why, as the clinic wrote it (part of the patient's record, never audited).
    pub restriction_reason: Option<String>,
}

/// Patient `id`'s hold and erasure, or [`ClinicError::NotFound`].
pub fn standing(conn: &Db, id: PatientId) -> Result<Standing, ClinicError> {
    let time = |t: Option<String>| t.as_deref().and_then(ward_core::parse_time);
    conn.row(
        "SELECT legal_hold_since, erased_at, restricted_since, restriction_reason FROM patients WHERE id = ?1",
        [id],
        |row| {
            Ok::<_, ClinicError>(Standing {
                legal_hold_since: time(row.get(0)?),
                erased_at: time(row.get(1)?),
                restricted_since: time(row.get(2)?),
                restriction_reason: row.get(3)?,
            })
        },
    )?
    .ok_or(ClinicError::NotFound)
}

/// Puts patient `id`'s record under a legal hold (`hold`) or lifts it, recording `entry`
/// (an `update` of `legal_hold`). Nothing is written when it is already so.
pub fn set_legal_hold(
    conn: &Db,
    id: PatientId,
    hold: bool,
    entry: Entry,
) -> Result<(), ClinicError> {
    audit::in_transaction(conn, |tx| {
        let now = standing(&tx, id)?;
        if now.legal_hold_since.is_some() == hold {
            return Ok(());
        }
        let since = hold.then(|| format_time(entry.at));
        tx.execute(
            "UPDATE patients SET legal_hold_since = ?2 WHERE id = ?1",
            ward_tenancy::sql::params![id, since],
        )?;
        let (old, new) = if hold { ("off", "on") } else { ("on", "off") };
        audit::record(
            &tx,
            &entry
                .entity("patient", id)
                .diff(Diff::new().field("legal_hold", old, new)),
        )?;
        Ok(())
    })
}

/// The longest restriction reason, in characters.
pub const RESTRICTION_REASON_MAX: usize = 500;

/// What a refused change says while a record is restricted.
pub const RESTRICTED: &str = "Processing of this patient's record is restricted: it can be read, but nothing new can be recorded until the owner lifts the restriction (on the patient's page).";

/// Refuses ([`ClinicError::Conflict`]) to record anything new about patient `id` while
/// their record is restricted; [`ClinicError::NotFound`] if there is no such patient.
/// Every write that adds to or changes a patient's record calls this inside its
/// transaction: visits and their corrections, corrections of the details, booking and
/// moving appointments, payments, files, merging. Reading, exporting, erasing, cancelling
/// an appointment, refunding or voiding a payment and deleting a file stay possible: they
/// record nothing new about the patient, or undo what was recorded.
pub fn check_processable(conn: &Db, id: PatientId) -> Result<(), ClinicError> {
    let restricted: Option<Option<String>> = conn.row(
        "SELECT restricted_since FROM patients WHERE id = ?1",
        [id],
        |row| Ok::<_, ClinicError>(row.get(0)?),
    )?;
    match restricted {
        None => Err(ClinicError::NotFound),
        Some(Some(_)) => Err(ClinicError::Conflict(RESTRICTED.into())),
        Some(None) => Ok(()),
    }
}

/// Restricts processing of patient `id`'s record for `reason` (`Some`, required, at most
/// [`RESTRICTION_REASON_MAX`] characters) or lifts the restriction (`None`), recording
/// `entry` (an `update` of `processing_restricted`; the reason stays in the record, not
/// in the log). Nothing is written when it is already so; refused once erased.
pub fn set_restriction(
    conn: &Db,
    id: PatientId,
    reason: Option<&str>,
    entry: Entry,
) -> Result<(), ClinicError> {
    let reason = match reason.map(str::trim) {
        Some("") => {
            return Err(ClinicError::invalid(
                "reason",
                "Write why processing is restricted (the patient's request, what they contest).",
            ));
        }
        Some(r) if r.chars().count() > RESTRICTION_REASON_MAX => {
            return Err(ClinicError::invalid(
                "reason",
                format!("Keep the reason under {RESTRICTION_REASON_MAX} characters."),
            ));
        }
        other => other.map(str::to_owned),
    };
    audit::in_transaction(conn, |tx| {
        let now = standing(&tx, id)?;
        if now.erased_at.is_some() {
            return Err(ClinicError::Conflict(
                "This patient's record has been erased: there is nothing left to restrict.".into(),
            ));
        }
        let restrict = reason.is_some();
        if now.restricted_since.is_some() == restrict {
            return Ok(());
        }
        let since = restrict.then(|| format_time(entry.at));
        tx.execute(
            "UPDATE patients SET restricted_since = ?2, restriction_reason = ?3 WHERE id = ?1",
            ward_tenancy::sql::params![id, since, reason.clone()],
        )?;
        let (old, new) = if restrict {
            ("off", "on")
        } else {
            ("on", "off")
        };
        audit::record(
            &tx,
            &entry
                .entity("patient", id)
                .diff(Diff::new().field("processing_restricted", old, new)),
        )?;
        Ok(())
    })
}

/// Erases patient `id` on `ground`, recording `entry` (a `delete` naming the ground):
/// the name becomes "Erased patient No. N", every other detail and every clinical text
/// is removed (visits' notes, diagnoses, prescription items, appointment reasons, all
/// kept versions), payment descriptions, references and correction reasons are replaced;
/// the number, the visits' dates and fees and the payments' amounts stay for the books,
/// and the audit log keeps that it happened and by whom. The records are left at version
/// 0 (no kept version: a later correction starts again at 1). Freed pages are overwritten
/// (`secure_delete`). Refused ([`ClinicError::Conflict`]) under a legal hold or when
/// already erased; nothing is written then.
pub fn erase(conn: &Db, id: PatientId, ground: Ground, entry: Entry) -> Result<(), ClinicError> {
    conn.execute_batch_now("PRAGMA secure_delete = ON")?;
    let result = audit::in_transaction(conn, |tx| {
        let now = standing(&tx, id)?;
        if now.erased_at.is_some() {
            return Err(ClinicError::Conflict(
                "This patient's record has already been erased.".into(),
            ));
        }
        if now.legal_hold_since.is_some() {
            return Err(ClinicError::Conflict(
                "This record is under a legal hold and cannot be erased. Lift the hold first, once the clinic no longer has to keep it.".into(),
            ));
        }
        let at = format_time(entry.at);
        let visits = "SELECT id FROM visits WHERE patient_id = ?1";
        let payments = "SELECT id FROM payments WHERE patient_id = ?1";
        // (statement, whether it takes the time as ?2)
        let steps: [(String, bool); 12] = [
            ("UPDATE patients SET full_name = 'Erased patient No. ' || number, date_of_birth = NULL, age_years = NULL, age_recorded_on = NULL, sex = 'unknown', phone = '', phone_digits = '', phone_digits_rev = '', address = '', email = '', notes = '', version = 0, erased_at = ?2, updated_at = ?2, restriction_reason = CASE WHEN restricted_since IS NULL THEN NULL ELSE 'Erased' END WHERE id = ?1".into(), true),
            ("DELETE FROM patient_name_tokens WHERE patient_id = ?1".into(), false),
            ("DELETE FROM patient_versions WHERE patient_id = ?1".into(), false),
            (format!("DELETE FROM visit_versions WHERE visit_id IN ({visits})"), false),
            (format!("DELETE FROM diagnoses WHERE visit_id IN ({visits})"), false),
            (format!("DELETE FROM prescription_items WHERE visit_id IN ({visits})"), false),
            ("UPDATE visits SET presenting_complaints = '', examination_notes = '', advice = '', follow_up_on = NULL, version = 0, updated_at = ?2 WHERE patient_id = ?1".into(), true),
            ("UPDATE appointments SET reason = '', updated_at = ?2 WHERE patient_id = ?1".into(), true),
            ("UPDATE payments SET reference = '' WHERE patient_id = ?1".into(), false),
            (format!("UPDATE payment_items SET description = 'Erased' WHERE payment_id IN ({payments})"), false),
            (format!("UPDATE payment_corrections SET reason = 'Erased' WHERE payment_id IN ({payments})"), false),
            // Files: the titles and reasons go, and the keys, so no copy of an object
            // opens again; the caller removes the objects (docs/attachments.md).
            ("UPDATE attachments SET title = 'Erased', file_key = zeroblob(32), thumbnail_key = CASE WHEN thumbnail_key IS NULL THEN NULL ELSE zeroblob(32) END, delete_reason = 'Erased', deleted_by_name = COALESCE(deleted_by_name, 'Erasure'), deleted_at = COALESCE(deleted_at, ?2) WHERE patient_id = ?1".into(), true),
        ];
        for (sql, timed) in &steps {
            if *timed {
                tx.execute(sql, ward_tenancy::sql::params![id, at.clone()])?;
            } else {
                tx.execute(sql, [id])?;
            }
        }
        audit::record(
            &tx,
            &entry
                .entity("patient", id)
                .detail(&format!("erased: {}", ground.as_str())),
        )?;
        Ok(())
    });
    conn.execute_batch_now("PRAGMA secure_delete = OFF")?;
    result
}

/// Writes `entry` (an export of the patient's record) in its own transaction: the
/// record leaves Ward only once the log says so.
pub fn record_export(conn: &Db, entry: &Entry) -> Result<(), ClinicError> {
    audit::in_transaction(conn, |tx| {
        audit::record(&tx, entry)?;
        Ok::<_, ClinicError>(())
    })
}

/// Patient `id`'s whole record as one JSON document (see [`write_record`]), once
/// `entry`, its export, is written. Returns the patient's number and the document.
pub fn export_record_json(
    conn: &Db,
    id: PatientId,
    header: &RecordHeader,
    entry: &Entry,
) -> Result<(i64, Vec<u8>), ClinicError> {
    let p = crate::patients::get(conn, id)?;
    record_export(conn, entry)?;
    let mut body = Vec::new();
    write_record(conn, id, header, &mut body)
        .map_err(|e| ClinicError::invalid("record", format!("could not write the record: {e}")))?;
    Ok((p.number, body))
}

/// What the printable record of a patient shows.
#[derive(Debug, Clone)]
pub struct PrintedRecord {
    /// The patient.
    pub patient: crate::patients::Patient,
    /// The clinic's settings (timezone, currency).
    pub settings: crate::settings::ClinicSettings,
    /// Hold, restriction, erasure.
    pub standing: Standing,
    /// Their visits.
    pub visits: Vec<crate::visits::Visit>,
    /// Their appointments.
    pub appointments: Vec<crate::appointments::Appointment>,
    /// Their payments, each with its refunds and void.
    pub payments: Vec<(crate::payments::Payment, Vec<crate::payments::Correction>)>,
}

/// Patient `id`'s record to print, once `entry`, its export, is written.
pub fn export_record(
    conn: &Db,
    id: PatientId,
    entry: &Entry,
) -> Result<PrintedRecord, ClinicError> {
    let patient = crate::patients::get(conn, id)?;
    let settings = crate::settings::load(conn)?;
    let standing = standing(conn, id)?;
    let visits = crate::visits::for_patient(conn, id)?;
    let appointments = crate::appointments::for_patient(conn, id)?;
    let mut payments = Vec::new();
    for pay in crate::payments::for_patient(conn, id)? {
        let fixes = crate::payments::corrections_of(conn, pay.id)?;
        payments.push((pay, fixes));
    }
    record_export(conn, entry)?;
    Ok(PrintedRecord {
        patient,
        settings,
        standing,
        visits,
        appointments,
        payments,
    })
}

/// What a patient's access report shows: who saw or changed anything about them.
#[derive(Debug, Clone)]
pub struct AccessReport {
    /// The patient.
    pub patient: crate::patients::Patient,
    /// The accesses, newest first, at most [`audit::MAX_PATIENT_REPORT`].
    pub accesses: Vec<audit::Access>,
    /// The clinic's settings (timezone).
    pub settings: crate::settings::ClinicSettings,
}

/// Patient `id`'s access report (see [`audit::accessed_by_patient`]).
pub fn access_report(conn: &Db, id: PatientId) -> Result<AccessReport, ClinicError> {
    let patient = crate::patients::get(conn, id)?;
    let accesses = audit::accessed_by_patient(conn, id, audit::MAX_PATIENT_REPORT)?;
    let settings = crate::settings::load(conn)?;
    Ok(AccessReport {
        patient,
        accesses,
        settings,
    })
}

/// Erases patient `id` (see [`erase`]) and returns the object names of their
/// attachments, whose keys went with the erasure, for the caller to remove.
pub fn erase_with_files(
    conn: &Db,
    id: PatientId,
    ground: Ground,
    entry: Entry,
) -> Result<Vec<String>, ClinicError> {
    let files = crate::attachments::all_of(conn, id)?;
    erase(conn, id, ground, entry)?;
    Ok(files
        .iter()
        .flat_map(crate::attachments::Attachment::object_names)
        .collect())
}
