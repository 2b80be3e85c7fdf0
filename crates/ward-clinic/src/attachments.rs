//! Files kept next to a patient (or one of their visits): lab reports, imaging, photos,
//! signed consent forms (docs/attachments.md).
//!
//! This module keeps the rows; the bytes are encrypted and stored by the web layer. A
//! row holds the file's own key, so an object can be read only with this database.
//! Audit entries name the attachment by id and its kind; never its title, which may
//! describe the patient.

use chrono::{DateTime, Utc};
use ward_core::{Permission, format_time, parse_time};
use ward_tenancy::Db;
use ward_tenancy::sql::params;

use crate::ClinicError;
use crate::audit::{self, Entry};

/// What an attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A laboratory's report.
    LabReport,
    /// X-rays, scans.
    Imaging,
    /// Treatment photos.
    Photo,
    /// A signed consent form: the front desk handles these too.
    Consent,
    /// Anything else (clinical).
    Other,
}

impl Kind {
    /// Every kind, in form order.
    pub const ALL: [Kind; 5] = [
        Self::LabReport,
        Self::Imaging,
        Self::Photo,
        Self::Consent,
        Self::Other,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LabReport => "lab_report",
            Self::Imaging => "imaging",
            Self::Photo => "photo",
            Self::Consent => "consent",
            Self::Other => "other",
        }
    }

    /// How people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::LabReport => "Lab report",
            Self::Imaging => "Imaging",
            Self::Photo => "Photo",
            Self::Consent => "Consent form",
            Self::Other => "Other",
        }
    }

    /// The stored form back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The permission that lets someone see attachments of this kind.
    pub fn view_permission(self) -> Permission {
        match self {
            Self::Consent => Permission::ConsentForms,
            _ => Permission::ViewClinical,
        }
    }

    /// The permission that lets someone upload or delete attachments of this kind.
    pub fn write_permission(self) -> Permission {
        match self {
            Self::Consent => Permission::ConsentForms,
            _ => Permission::WriteClinical,
        }
    }
}

/// A new attachment, its object already written.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    /// The patient.
    pub patient_id: i64,
    /// The visit, if it belongs to one (of the same patient).
    pub visit_id: Option<i64>,
    /// What it is.
    pub kind: Kind,
    /// The title people gave it.
    pub title: String,
    /// The sniffed content type.
    pub content_type: String,
    /// Plaintext size in bytes.
    pub size: i64,
    /// Hex SHA-256 of the plaintext.
    pub sha256: String,
    /// The object's random name in the store.
    pub object_name: String,
    /// The file's own 256-bit key.
    pub key: [u8; 32],
}

/// An attachment row.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Row id.
    pub id: i64,
    /// The patient.
    pub patient_id: i64,
    /// The visit, if any.
    pub visit_id: Option<i64>,
    /// What it is.
    pub kind: Kind,
    /// Its title.
    pub title: String,
    /// The sniffed content type.
    pub content_type: String,
    /// Plaintext size in bytes.
    pub size: i64,
    /// Hex SHA-256 of the plaintext.
    pub sha256: String,
    /// The object's name in the store.
    pub object_name: String,
    /// The file's key.
    pub key: Vec<u8>,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// Who uploaded it.
    pub uploaded_by_name: String,
    /// When it was deleted, if it was.
    pub deleted_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, patient_id, visit_id, kind, title, content_type, size, sha256, \
     object_name, file_key, uploaded_at, uploaded_by_name, deleted_at";

fn from_row(r: &ward_tenancy::sql::Row) -> Result<Attachment, ClinicError> {
    let kind: String = r.get(3)?;
    let uploaded_at: String = r.get(10)?;
    let deleted_at: Option<String> = r.get(12)?;
    Ok(Attachment {
        id: r.get(0)?,
        patient_id: r.get(1)?,
        visit_id: r.get(2)?,
        kind: Kind::parse(&kind).unwrap_or(Kind::Other),
        title: r.get(4)?,
        content_type: r.get(5)?,
        size: r.get(6)?,
        sha256: r.get(7)?,
        object_name: r.get(8)?,
        key: r.get(9)?,
        uploaded_at: parse_time(&uploaded_at).unwrap_or_default(),
        uploaded_by_name: r.get(11)?,
        deleted_at: deleted_at.as_deref().and_then(parse_time),
    })
}

/// The longest title kept.
pub const MAX_TITLE: usize = 200;

/// Checks a title: required, one line, at most [`MAX_TITLE`] characters.
pub fn check_title(title: &str) -> Result<String, ClinicError> {
    let t = title.trim();
    if t.is_empty() {
        return Err(ClinicError::invalid("title", "Give the file a title."));
    }
    if t.chars().count() > MAX_TITLE || t.contains(['\n', '\r']) {
        return Err(ClinicError::invalid(
            "title",
            format!("A title is one line of at most {MAX_TITLE} characters."),
        ));
    }
    Ok(t.to_owned())
}

/// Checks that the patient exists (and was not erased or merged away), and that the
/// visit, if given, is theirs.
pub fn check_target(conn: &Db, patient_id: i64, visit_id: Option<i64>) -> Result<(), ClinicError> {
    crate::patients::get(conn, patient_id)?;
    if crate::rights::standing(conn, patient_id)?
        .erased_at
        .is_some()
    {
        return Err(ClinicError::Conflict(
            "This record was erased: nothing can be attached to it.".into(),
        ));
    }
    if let Some((_, number)) = crate::merge::merged_into(conn, patient_id)? {
        return Err(ClinicError::Conflict(format!(
            "This record was merged into No. {number}: attach the file there."
        )));
    }
    if let Some(v) = visit_id {
        let theirs = conn.row(
            "SELECT 1 FROM visits WHERE id = ?1 AND patient_id = ?2",
            params![v, patient_id],
            |_| Ok::<_, ClinicError>(()),
        )?;
        if theirs.is_none() {
            return Err(ClinicError::NotFound);
        }
    }
    Ok(())
}

/// Adds the row for `new` (its object already stored), recording `entry` (a `create`
/// of entity `attachment`, detail the kind) in the same transaction. Returns the id.
pub fn create(conn: &Db, new: &NewAttachment, entry: Entry) -> Result<i64, ClinicError> {
    audit::in_transaction(conn, |tx| {
        check_target(&tx, new.patient_id, new.visit_id)?;
        let at = format_time(entry.at);
        let (by_id, by_name) = crate::history::author(&entry.actor);
        tx.execute(
            "INSERT INTO attachments (patient_id, visit_id, kind, title, content_type, size, \
             sha256, object_name, file_key, uploaded_at, uploaded_by_id, uploaded_by_name) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                new.patient_id,
                new.visit_id,
                new.kind.as_str(),
                new.title.as_str(),
                new.content_type.as_str(),
                new.size,
                new.sha256.as_str(),
                new.object_name.as_str(),
                new.key.to_vec(),
                at,
                by_id,
                by_name
            ],
        )?;
        let id = tx
            .row("SELECT last_insert_rowid()", (), |r| {
                Ok::<i64, ClinicError>(r.get(0)?)
            })?
            .ok_or(ClinicError::NotFound)?;
        audit::record(
            &tx,
            &entry.entity("attachment", id).detail(new.kind.as_str()),
        )?;
        Ok(id)
    })
}

/// The attachment `id` of patient `patient_id`, unless deleted.
pub fn get(conn: &Db, patient_id: i64, id: i64) -> Result<Attachment, ClinicError> {
    conn.row(
        &format!(
            "SELECT {COLUMNS} FROM attachments \
             WHERE id = ?1 AND patient_id = ?2 AND deleted_at IS NULL"
        ),
        params![id, patient_id],
        from_row,
    )?
    .ok_or(ClinicError::NotFound)
}

/// The patient's attachments that are not deleted, newest first.
pub fn list(conn: &Db, patient_id: i64) -> Result<Vec<Attachment>, ClinicError> {
    conn.rows(
        &format!(
            "SELECT {COLUMNS} FROM attachments \
             WHERE patient_id = ?1 AND deleted_at IS NULL ORDER BY id DESC"
        ),
        [patient_id],
        from_row,
    )
}

/// Every attachment of the patient, deleted or not (for erasure).
pub fn all_of(conn: &Db, patient_id: i64) -> Result<Vec<Attachment>, ClinicError> {
    conn.rows(
        &format!("SELECT {COLUMNS} FROM attachments WHERE patient_id = ?1 ORDER BY id"),
        [patient_id],
        from_row,
    )
}

/// Records that attachment `a` was viewed or downloaded (`entry`, a `view` or an
/// `export`), before any byte is sent.
pub fn record_access(conn: &Db, a: &Attachment, entry: Entry) -> Result<(), ClinicError> {
    audit::in_transaction(conn, |tx| {
        audit::record(
            &tx,
            &entry.entity("attachment", a.id).detail(a.kind.as_str()),
        )?;
        Ok(())
    })
}

/// Marks attachment `id` deleted with `reason` (required; kept on the row, not in the
/// log), recording `entry` (a `delete`). Returns the row as it was, whose object the
/// caller removes from the store.
pub fn delete(
    conn: &Db,
    patient_id: i64,
    id: i64,
    reason: &str,
    entry: Entry,
) -> Result<Attachment, ClinicError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ClinicError::invalid(
            "reason",
            "Say why this file is deleted.",
        ));
    }
    audit::in_transaction(conn, |tx| {
        let a = get(&tx, patient_id, id)?;
        let (_, by_name) = crate::history::author(&entry.actor);
        tx.execute(
            "UPDATE attachments SET deleted_at = ?2, deleted_by_name = ?3, delete_reason = ?4 \
             WHERE id = ?1",
            params![id, format_time(entry.at), by_name, reason],
        )?;
        audit::record(&tx, &entry.entity("attachment", id).detail(a.kind.as_str()))?;
        Ok(a)
    })
}
