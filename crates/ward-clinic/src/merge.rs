//! Merging duplicates: a patient registered twice becomes one record, and the merge can
//! be undone exactly.
//!
//! Merging moves the duplicate's visits, appointments and payments to the survivor, marks
//! the duplicate `merged_into` the survivor (it leaves search and lists; its number
//! still finds the survivor) and keeps a `patient_merges` row listing what moved. Undoing
//! moves those records back. Both are audited on both records; nothing is deleted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ward_core::{format_time, parse_time};
use ward_tenancy::Db;
use ward_tenancy::sql::{FromValue, Value, params};

use crate::ClinicError;
use crate::audit::{self, Diff, Entry};
use crate::history::author;
use crate::ids::{AppointmentId, AttachmentId, MergeId, PatientId, PaymentId, VisitId};
use crate::patients;

/// What a merge moved, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// Visits.
    pub visits: Vec<VisitId>,
    /// Appointments.
    pub appointments: Vec<AppointmentId>,
    /// Payments (their items, refunds and voids follow them).
    pub payments: Vec<PaymentId>,
    /// Attachments (files); absent from merges made before files existed.
    #[serde(default)]
    pub attachments: Vec<AttachmentId>,
}

/// One merge, as the survivor's page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// Row id.
    pub id: MergeId,
    /// The record kept.
    pub survivor_id: PatientId,
    /// The duplicate.
    pub merged_id: PatientId,
    /// The duplicate's number.
    pub merged_number: i64,
    /// The duplicate's name.
    pub merged_name: String,
    /// What moved.
    pub moved: Moved,
    /// When.
    pub merged_at: DateTime<Utc>,
    /// By whom.
    pub merged_by_name: String,
    /// When it was undone, if it was.
    pub undone_at: Option<DateTime<Utc>>,
}

fn ids<T: FromValue>(tx: &Db, table: &str, patient: PatientId) -> Result<Vec<T>, ClinicError> {
    tx.rows(
        &format!("SELECT id FROM {table} WHERE patient_id = ?1 ORDER BY id"),
        [patient],
        |row| Ok::<_, ClinicError>(row.get(0)?),
    )
}

fn move_to<T: Copy + Into<Value>>(
    tx: &Db,
    table: &str,
    list: &[T],
    to: PatientId,
) -> Result<(), ClinicError> {
    for id in list {
        tx.execute(
            &format!("UPDATE {table} SET patient_id = ?2 WHERE id = ?1"),
            params![(*id).into(), to],
        )?;
    }
    Ok(())
}

/// Moves the rows of `list` still with `survivor` back to `merged` (`back` is
/// (`merged`, `survivor`)), undoing [`move_to`].
fn move_back<T: Copy + Into<Value>>(
    tx: &Db,
    table: &str,
    list: &[T],
    (merged, survivor): (PatientId, PatientId),
) -> Result<(), ClinicError> {
    for row in list {
        tx.execute(
            &format!("UPDATE {table} SET patient_id = ?2 WHERE id = ?1 AND patient_id = ?3"),
            params![(*row).into(), merged, survivor],
        )?;
    }
    Ok(())
}

/// Merges patient `merged` into `survivor`, recording `entry` (an `update`) on both.
/// Refused ([`ClinicError::Conflict`]) when they are the same record, when either is
/// already merged into another, or when either was erased. Returns the merge's id.
pub fn merge(
    conn: &Db,
    survivor: PatientId,
    merged: PatientId,
    entry: Entry,
) -> Result<MergeId, ClinicError> {
    audit::in_transaction(conn, |tx| {
        if survivor == merged {
            return Err(ClinicError::Conflict(
                "A record cannot be merged into itself.".into(),
            ));
        }
        let s = patients::get(&tx, survivor)?;
        let m = patients::get(&tx, merged)?;
        for (p, which) in [(&s, "kept"), (&m, "merged")] {
            let (into, erased): (Option<i64>, Option<String>) = tx
                .row(
                    "SELECT merged_into, erased_at FROM patients WHERE id = ?1",
                    [p.id],
                    |row| Ok::<_, ClinicError>((row.get(0)?, row.get(1)?)),
                )?
                .ok_or(ClinicError::NotFound)?;
            if into.is_some() {
                return Err(ClinicError::Conflict(format!(
                    "No. {} (the record to be {which}) is already merged into another record.",
                    p.number
                )));
            }
            if erased.is_some() {
                return Err(ClinicError::Conflict(format!(
                    "No. {} (the record to be {which}) was erased and cannot be merged.",
                    p.number
                )));
            }
            if let Err(ClinicError::Conflict(_)) = crate::rights::check_processable(&tx, p.id) {
                return Err(ClinicError::Conflict(format!(
                    "No. {} (the record to be {which}) is restricted: nothing can be merged into or out of it until the owner lifts the restriction.",
                    p.number
                )));
            }
        }
        let moved = Moved {
            visits: ids(&tx, "visits", merged)?,
            appointments: ids(&tx, "appointments", merged)?,
            payments: ids(&tx, "payments", merged)?,
            attachments: ids(&tx, "attachments", merged)?,
        };
        move_to(&tx, "visits", &moved.visits, survivor)?;
        move_to(&tx, "appointments", &moved.appointments, survivor)?;
        move_to(&tx, "payments", &moved.payments, survivor)?;
        move_to(&tx, "attachments", &moved.attachments, survivor)?;
        tx.execute(
            "UPDATE patients SET merged_into = ?2, updated_at = ?3 WHERE id = ?1",
            params![merged, survivor, format_time(entry.at)],
        )?;
        // Out of name search; its number still leads to the survivor.
        tx.execute(
            "DELETE FROM patient_name_tokens WHERE patient_id = ?1",
            [merged],
        )?;
        let (by_id, by_name) = author(&entry.actor);
        let json = serde_json::to_string(&moved)
            .map_err(|e| ClinicError::invalid("merge", format!("cannot keep the merge: {e}")))?;
        tx.execute(
            "INSERT INTO patient_merges (survivor_id, merged_id, moved, merged_at, merged_by_id, merged_by_name) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![survivor, merged, json, format_time(entry.at), by_id, by_name],
        )?;
        let id = MergeId::new(tx.last_insert_rowid());
        let counts = format!(
            "{} visits, {} appointments, {} payments",
            moved.visits.len(),
            moved.appointments.len(),
            moved.payments.len()
        );
        record_links(&tx, &entry, id, (&s, &m), &Link::Made { counts })?;
        Ok(id)
    })
}

/// Whether a merge's link between two records was made (with what it moved, told as
/// counts) or undone.
enum Link {
    Made { counts: String },
    Undone,
}

/// Records with `entry` on both records of merge `id`, `(survivor, merged)`, that their
/// link fields were made or undone: the survivor's `merged` names the other's number,
/// the merged record's `merged_into` the survivor's.
fn record_links(
    tx: &Db,
    entry: &Entry,
    id: MergeId,
    (survivor, merged): (&patients::Patient, &patients::Patient),
    link: &Link,
) -> Result<(), ClinicError> {
    let details = match link {
        Link::Made { counts } => [
            format!("merge {id}: took in No. {} ({counts})", merged.number),
            format!("merge {id}: merged into No. {}", survivor.number),
        ],
        Link::Undone => [
            format!("merge {id} undone: No. {} is separate again", merged.number),
            format!("merge {id} undone"),
        ],
    };
    let sides = [
        (survivor.id, "merged", merged.number),
        (merged.id, "merged_into", survivor.number),
    ];
    for ((patient, field, number), detail) in sides.into_iter().zip(details) {
        let named = serde_json::Value::from(format!("No. {number}"));
        let (old, new) = match link {
            Link::Made { .. } => (serde_json::Value::Null, named),
            Link::Undone => (named, serde_json::Value::Null),
        };
        audit::record(
            tx,
            &entry
                .clone()
                .entity("patient", patient)
                .diff(Diff::new().field(field, old, new))
                .detail(&detail),
        )?;
    }
    Ok(())
}

/// Undoes merge `id` of survivor `survivor`: the records it moved go back to the
/// duplicate (those still with the survivor), which returns to search; recorded with
/// `entry` (an `update`) on both. [`ClinicError::NotFound`] for an unknown merge,
/// [`ClinicError::Conflict`] if it was undone already.
pub fn undo(conn: &Db, survivor: PatientId, id: MergeId, entry: Entry) -> Result<(), ClinicError> {
    audit::in_transaction(conn, |tx| {
        let m = one(&tx, id)?
            .filter(|m| m.survivor_id == survivor)
            .ok_or(ClinicError::NotFound)?;
        if m.undone_at.is_some() {
            return Err(ClinicError::Conflict(
                "This merge was already undone.".into(),
            ));
        }
        let back = (m.merged_id, survivor);
        move_back(&tx, "visits", &m.moved.visits, back)?;
        move_back(&tx, "appointments", &m.moved.appointments, back)?;
        move_back(&tx, "payments", &m.moved.payments, back)?;
        move_back(&tx, "attachments", &m.moved.attachments, back)?;
        tx.execute(
            "UPDATE patients SET merged_into = NULL, updated_at = ?2 WHERE id = ?1",
            params![m.merged_id, format_time(entry.at)],
        )?;
        let dup = patients::get(&tx, m.merged_id)?;
        patients::write_tokens(&tx, dup.id, &dup.full_name)?;
        let (_, by_name) = author(&entry.actor);
        tx.execute(
            "UPDATE patient_merges SET undone_at = ?2, undone_by_name = ?3 WHERE id = ?1",
            params![id, format_time(entry.at), by_name],
        )?;
        let kept = patients::get(&tx, survivor)?;
        record_links(&tx, &entry, id, (&kept, &dup), &Link::Undone)?;
        Ok(())
    })
}

const SELECT: &str = "SELECT g.id, g.survivor_id, g.merged_id, p.number, p.full_name, g.moved, g.merged_at, g.merged_by_name, g.undone_at \
                      FROM patient_merges g JOIN patients p ON p.id = g.merged_id";

fn from_row(row: &ward_tenancy::sql::Row) -> Result<Merge, ClinicError> {
    let time = |i: i32| -> Result<Option<DateTime<Utc>>, ClinicError> {
        Ok(row
            .get::<Option<String>>(i)?
            .as_deref()
            .and_then(parse_time))
    };
    let moved: String = row.get(5)?;
    Ok(Merge {
        id: row.get(0)?,
        survivor_id: row.get(1)?,
        merged_id: row.get(2)?,
        merged_number: row.get(3)?,
        merged_name: row.get(4)?,
        moved: serde_json::from_str(&moved)
            .map_err(|e| ClinicError::invalid("merge", format!("unreadable merge: {e}")))?,
        merged_at: time(6)?.ok_or_else(|| ClinicError::invalid("merge", "unreadable time"))?,
        merged_by_name: row.get(7)?,
        undone_at: time(8)?,
    })
}

fn one(conn: &Db, id: MergeId) -> Result<Option<Merge>, ClinicError> {
    conn.row(&format!("{SELECT} WHERE g.id = ?1"), [id], from_row)
}

/// The merges into `survivor`, newest first (undone ones too).
pub fn into(conn: &Db, survivor: PatientId) -> Result<Vec<Merge>, ClinicError> {
    conn.rows(
        &format!("{SELECT} WHERE g.survivor_id = ?1 ORDER BY g.id DESC"),
        [survivor],
        from_row,
    )
}

/// The record patient `id` was merged into, if it was: (id, number).
pub fn merged_into(conn: &Db, id: PatientId) -> Result<Option<(PatientId, i64)>, ClinicError> {
    conn.row(
        "SELECT s.id, s.number FROM patients p JOIN patients s ON s.id = p.merged_into WHERE p.id = ?1",
        [id],
        |row| Ok::<_, ClinicError>((row.get(0)?, row.get(1)?)),
    )
}

/// One record as the merge review shows it: the patient and how much they hold.
#[derive(Debug, Clone)]
pub struct Side {
    /// The patient.
    pub patient: patients::Patient,
    /// How many visits.
    pub visits: usize,
    /// How many payments.
    pub payments: usize,
}

/// Patient `id` for the merge review.
pub fn side(conn: &Db, id: PatientId) -> Result<Side, ClinicError> {
    Ok(Side {
        patient: patients::get(conn, id)?,
        visits: crate::visits::summaries(conn, id)?.len(),
        payments: crate::payments::for_patient(conn, id)?.len(),
    })
}

/// The merge review of patient `id` (who stays) and the patient numbered `number`, if
/// one is.
pub fn review(
    conn: &Db,
    id: PatientId,
    number: Option<i64>,
) -> Result<(Side, Option<Side>), ClinicError> {
    let keep = side(conn, id)?;
    let other = match number {
        Some(n) => match patients::id_by_number(conn, n)? {
            Some(o) => Some(side(conn, o)?),
            None => None,
        },
        None => None,
    };
    Ok((keep, other))
}

/// What became of a merge asked for by patient number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByNumber {
    /// Merged.
    Merged,
    /// No patient has the number.
    NoSuchNumber,
    /// The records cannot be merged; why, for the person.
    Refused(String),
}

/// Merges the patient numbered `number` into `survivor` (see [`merge`]); a conflict is
/// [`ByNumber::Refused`] with its message.
pub fn merge_by_number(
    conn: &Db,
    survivor: PatientId,
    number: i64,
    entry: Entry,
) -> Result<ByNumber, ClinicError> {
    let Some(other) = patients::id_by_number(conn, number)? else {
        return Ok(ByNumber::NoSuchNumber);
    };
    match merge(conn, survivor, other, entry) {
        Ok(_) => Ok(ByNumber::Merged),
        Err(ClinicError::Conflict(message)) => Ok(ByNumber::Refused(message)),
        Err(e) => Err(e),
    }
}

/// What a patient's page says about merging.
#[derive(Debug, Clone)]
pub struct Overview {
    /// The merges into this record.
    pub merges: Vec<Merge>,
    /// The record this one was merged into: (id, number).
    pub merged_into: Option<(PatientId, i64)>,
    /// Possible duplicates of this record (none once it was merged away).
    pub duplicates: Vec<patients::Patient>,
}

/// Patient `id`'s merges, the record it went into, and its possible duplicates.
pub fn overview(conn: &Db, id: PatientId) -> Result<Overview, ClinicError> {
    let merged_into = merged_into(conn, id)?;
    let duplicates = if merged_into.is_none() {
        let p = patients::get(conn, id)?;
        patients::find_duplicates(conn, &patients::NewPatient::from(&p), Some(id))?
    } else {
        Vec::new()
    };
    Ok(Overview {
        merges: into(conn, id)?,
        merged_into,
        duplicates,
    })
}
