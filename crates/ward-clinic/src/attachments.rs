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
use crate::ids::{AttachmentId, PatientId, VisitId};

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

/// What is kept about an attachment's file, from its upload on: whose it is, what it
/// is, and its object in the store.
#[derive(Debug, Clone)]
pub struct AttachedFile {
    /// The patient.
    pub patient_id: PatientId,
    /// The visit, if it belongs to one (of the same patient).
    pub visit_id: Option<VisitId>,
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
}

/// A new attachment, its object already written.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    /// The file.
    pub file: AttachedFile,
    /// The file's own 256-bit key.
    pub key: [u8; 32],
    /// The random key of the upload it came in (the form's `upload_key`), if given.
    pub upload_key: Option<String>,
}

/// An image's thumbnail: its own object, key and digest.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    /// The object's name in the store.
    pub object_name: String,
    /// Its key.
    pub key: Vec<u8>,
    /// Hex SHA-256 of the thumbnail's plaintext.
    pub sha256: String,
}

/// An attachment row.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Row id.
    pub id: AttachmentId,
    /// The file; its fields read as the attachment's own.
    pub file: AttachedFile,
    /// The file's key.
    pub key: Vec<u8>,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// Who uploaded it.
    pub uploaded_by_name: String,
    /// When it was deleted, if it was.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Its thumbnail, for an image whose thumbnail could be made.
    pub thumbnail: Option<Thumbnail>,
}

impl std::ops::Deref for Attachment {
    type Target = AttachedFile;

    fn deref(&self) -> &AttachedFile {
        &self.file
    }
}

impl Attachment {
    /// The names of every object this attachment has in the store: the file's and its
    /// thumbnail's.
    pub fn object_names(&self) -> Vec<String> {
        let mut out = vec![self.object_name.clone()];
        if let Some(t) = &self.thumbnail {
            out.push(t.object_name.clone());
        }
        out
    }
}

const COLUMNS: &str = "id, patient_id, visit_id, kind, title, content_type, size, sha256, \
     object_name, file_key, uploaded_at, uploaded_by_name, deleted_at, thumbnail_object, \
     thumbnail_key, thumbnail_sha256";

fn from_row(r: &ward_tenancy::sql::Row) -> Result<Attachment, ClinicError> {
    let kind: String = r.get(3)?;
    let uploaded_at: String = r.get(10)?;
    let deleted_at: Option<String> = r.get(12)?;
    let thumb_object: Option<String> = r.get(13)?;
    let thumb_key: Option<Vec<u8>> = r.get(14)?;
    let thumb_sha: Option<String> = r.get(15)?;
    let thumbnail = match (thumb_object, thumb_key, thumb_sha) {
        (Some(object_name), Some(key), Some(sha256)) => Some(Thumbnail {
            object_name,
            key,
            sha256,
        }),
        _ => None,
    };
    Ok(Attachment {
        id: r.get(0)?,
        file: AttachedFile {
            patient_id: r.get(1)?,
            visit_id: r.get(2)?,
            kind: Kind::parse(&kind).unwrap_or(Kind::Other),
            title: r.get(4)?,
            content_type: r.get(5)?,
            size: r.get(6)?,
            sha256: r.get(7)?,
            object_name: r.get(8)?,
        },
        key: r.get(9)?,
        uploaded_at: parse_time(&uploaded_at).unwrap_or_default(),
        uploaded_by_name: r.get(11)?,
        deleted_at: deleted_at.as_deref().and_then(parse_time),
        thumbnail,
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
pub fn check_target(
    conn: &Db,
    patient_id: PatientId,
    visit_id: Option<VisitId>,
) -> Result<(), ClinicError> {
    crate::patients::get(conn, patient_id)?;
    if crate::rights::standing(conn, patient_id)?
        .erased_at
        .is_some()
    {
        return Err(ClinicError::Conflict(
            "This record was erased: nothing can be attached to it.".into(),
        ));
    }
    crate::rights::check_processable(conn, patient_id)?;
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

/// Before an upload's first file is stored: checks its target (see [`check_target`])
/// and returns the bytes the clinic's files already take (see [`usage`]).
pub fn check_upload(
    conn: &Db,
    patient_id: PatientId,
    visit_id: Option<VisitId>,
) -> Result<u64, ClinicError> {
    check_target(conn, patient_id, visit_id)?;
    usage(conn)
}

/// What became of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// Its rows were written: their ids, in the upload's order.
    Created(Vec<AttachmentId>),
    /// An upload with the same key was stored before (a retry): nothing was written.
    /// The patient and visit it was stored for.
    AlreadyStored {
        /// The patient.
        patient_id: PatientId,
        /// The visit, if any.
        visit_id: Option<VisitId>,
    },
    /// Storing it would take the clinic past its quota: nothing was written. The bytes
    /// already in use.
    OverQuota {
        /// Bytes of the clinic's files (not deleted) before this upload.
        used: u64,
    },
}

/// The upload stored under `key`, if any: (patient, visit).
pub fn find_upload(
    conn: &Db,
    key: &str,
) -> Result<Option<(PatientId, Option<VisitId>)>, ClinicError> {
    conn.row(
        "SELECT patient_id, visit_id FROM attachments WHERE upload_key = ?1 \
         ORDER BY upload_part LIMIT 1",
        [key],
        |r| Ok::<_, ClinicError>((r.get(0)?, r.get(1)?)),
    )
}

/// Bytes of the clinic's files that are not deleted (what counts against the quota).
pub fn usage(conn: &Db) -> Result<u64, ClinicError> {
    let n: i64 = conn
        .row(
            "SELECT COALESCE(SUM(size), 0) FROM attachments WHERE deleted_at IS NULL",
            (),
            |r| Ok::<i64, ClinicError>(r.get(0)?),
        )?
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Adds the rows of one upload (their objects already stored), all or none, each with
/// its `create` audit row (`entry`, entity `attachment`, detail the kind), in one
/// transaction. Nothing is written when an upload with the same key is already stored
/// or when the clinic's files (not deleted) would pass `quota` bytes.
pub fn create_batch(
    conn: &Db,
    files: &[NewAttachment],
    quota: u64,
    entry: Entry,
) -> Result<Batch, ClinicError> {
    audit::in_transaction(conn, |tx| {
        if let Some(key) = files.iter().find_map(|f| f.upload_key.as_deref())
            && let Some((patient_id, visit_id)) = find_upload(&tx, key)?
        {
            return Ok(Batch::AlreadyStored {
                patient_id,
                visit_id,
            });
        }
        let used = usage(&tx)?;
        let adding: u64 = files
            .iter()
            .map(|f| u64::try_from(f.file.size).unwrap_or(0))
            .sum();
        if used.saturating_add(adding) > quota {
            return Ok(Batch::OverQuota { used });
        }
        let at = format_time(entry.at);
        let (by_id, by_name) = crate::history::author(&entry.actor);
        let mut ids = Vec::with_capacity(files.len());
        for (part, new) in (1i64..).zip(files) {
            let file = &new.file;
            check_target(&tx, file.patient_id, file.visit_id)?;
            tx.execute(
                "INSERT INTO attachments (patient_id, visit_id, kind, title, content_type, size, \
                 sha256, object_name, file_key, uploaded_at, uploaded_by_id, uploaded_by_name, \
                 upload_key, upload_part) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    file.patient_id,
                    file.visit_id,
                    file.kind.as_str(),
                    file.title.as_str(),
                    file.content_type.as_str(),
                    file.size,
                    file.sha256.as_str(),
                    file.object_name.as_str(),
                    new.key.to_vec(),
                    at.as_str(),
                    by_id.as_str(),
                    by_name.as_str(),
                    new.upload_key.as_deref(),
                    new.upload_key.as_ref().map(|_| part)
                ],
            )?;
            let id = tx
                .row("SELECT last_insert_rowid()", (), |r| {
                    Ok::<AttachmentId, ClinicError>(r.get(0)?)
                })?
                .ok_or(ClinicError::NotFound)?;
            audit::record(
                &tx,
                &entry
                    .clone()
                    .entity("attachment", id)
                    .detail(file.kind.as_str()),
            )?;
            ids.push(id);
        }
        Ok(Batch::Created(ids))
    })
}

/// Records attachment `id`'s thumbnail (its object already stored).
pub fn set_thumbnail(
    conn: &Db,
    id: AttachmentId,
    thumbnail: &Thumbnail,
) -> Result<(), ClinicError> {
    conn.execute(
        "UPDATE attachments SET thumbnail_object = ?2, thumbnail_key = ?3, thumbnail_sha256 = ?4 \
         WHERE id = ?1 AND deleted_at IS NULL",
        params![
            id,
            thumbnail.object_name.as_str(),
            thumbnail.key.clone(),
            thumbnail.sha256.as_str()
        ],
    )?;
    Ok(())
}

/// Deleted attachments whose objects are still in the store and that were deleted
/// before `before` (the retention for deleted records has passed).
pub fn due_for_removal(conn: &Db, before: DateTime<Utc>) -> Result<Vec<Attachment>, ClinicError> {
    conn.rows(
        &format!(
            "SELECT {COLUMNS} FROM attachments \
             WHERE deleted_at IS NOT NULL AND objects_removed_at IS NULL AND deleted_at < ?1 \
             ORDER BY id"
        ),
        [format_time(before)],
        from_row,
    )
}

/// Records that attachment `id`'s objects were removed from the store at `at`.
pub fn mark_removed(conn: &Db, id: AttachmentId, at: DateTime<Utc>) -> Result<(), ClinicError> {
    conn.execute(
        "UPDATE attachments SET objects_removed_at = ?2 WHERE id = ?1",
        params![id, format_time(at)],
    )?;
    Ok(())
}

/// The names of every object of every attachment of the clinic, deleted or not (for
/// a purge).
pub fn every_object(conn: &Db) -> Result<Vec<String>, ClinicError> {
    let rows: Vec<(String, Option<String>)> = conn.rows(
        "SELECT object_name, thumbnail_object FROM attachments ORDER BY id",
        (),
        |r| Ok::<_, ClinicError>((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows
        .into_iter()
        .flat_map(|(a, t)| std::iter::once(a).chain(t))
        .collect())
}

/// The attachment `id` of patient `patient_id`, unless deleted.
pub fn get(conn: &Db, patient_id: PatientId, id: AttachmentId) -> Result<Attachment, ClinicError> {
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
pub fn list(conn: &Db, patient_id: PatientId) -> Result<Vec<Attachment>, ClinicError> {
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
pub fn all_of(conn: &Db, patient_id: PatientId) -> Result<Vec<Attachment>, ClinicError> {
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
    patient_id: PatientId,
    id: AttachmentId,
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
