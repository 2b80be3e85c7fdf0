//! Attachments on the patient page: upload (a plain multipart form), view, download
//! and delete (docs/attachments.md).

use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_clinic::attachments::{self, Attachment, Kind, NewAttachment};
use ward_clinic::audit::Action;
use ward_clinic::settings::ClinicSettings;

use crate::attachments::AttachmentError;
use crate::extract::parse_id;
use crate::extract::{AppForm, ClinicAccess};
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// The sandbox an attachment is shown in: no script, nothing loaded from elsewhere.
const ATTACHMENT_CSP: &str =
    "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'";

/// One attachment in the patient page's list.
pub struct AttachmentLine {
    /// Its view link.
    pub href: String,
    /// Its title.
    pub title: String,
    /// Its kind, as read.
    pub kind: &'static str,
    /// Its type, short.
    pub content_type: &'static str,
    /// Its size, readable.
    pub size: String,
    /// Who uploaded it, when (clinic time).
    pub uploaded: String,
    /// Whether this person may delete it.
    pub can_delete: bool,
    /// The delete form's action.
    pub delete_href: String,
}

/// The attachments box on the patient page.
pub struct AttachmentsBox {
    /// What this person may see.
    pub lines: Vec<AttachmentLine>,
    /// The upload form's action (with the form token), when they may upload any kind.
    pub upload_href: Option<String>,
    /// The kinds they may upload: (value, label).
    pub kinds: Vec<(&'static str, &'static str)>,
    /// On a visit page: the visit new files belong to.
    pub visit: Option<i64>,
}

fn short_type(ct: &str) -> &'static str {
    match ct {
        "application/pdf" => "PDF",
        "image/jpeg" => "JPEG",
        "image/png" => "PNG",
        "image/webp" => "WebP",
        "application/dicom" => "DICOM",
        _ => "file",
    }
}

fn readable_size(n: i64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    }
}

impl AttachmentsBox {
    /// The box for patient `id`, or `None` when this person may neither see nor upload
    /// any kind.
    pub fn new(
        access: &ClinicAccess,
        s: &ClinicSettings,
        csrf: &str,
        id: i64,
        all: Vec<Attachment>,
    ) -> Option<Self> {
        let base = format!("/c/{}/patients/{id}/attachments", access.slug);
        let kinds: Vec<_> = Kind::ALL
            .into_iter()
            .filter(|k| access.can(k.write_permission()))
            .map(|k| (k.as_str(), k.label()))
            .collect();
        let sees_any = Kind::ALL.iter().any(|k| access.can(k.view_permission()));
        if kinds.is_empty() && !sees_any {
            return None;
        }
        let lines = all
            .into_iter()
            .filter(|a| access.can(a.kind.view_permission()))
            .map(|a| AttachmentLine {
                href: format!("{base}/{}", a.id),
                delete_href: format!("{base}/{}/delete", a.id),
                can_delete: access.can(a.kind.write_permission()),
                title: a.title,
                kind: a.kind.label(),
                content_type: short_type(&a.content_type),
                size: readable_size(a.size),
                uploaded: format!(
                    "{}, {}",
                    a.uploaded_by_name,
                    s.local(a.uploaded_at).format("%Y-%m-%d %H:%M")
                ),
            })
            .collect();
        let token: String = form_urlencoded::byte_serialize(csrf.as_bytes()).collect();
        Some(Self {
            lines,
            upload_href: (!kinds.is_empty()).then(|| format!("{base}?_csrf={token}")),
            kinds,
            visit: None,
        })
    }

    /// The box on visit `visit`'s page: that visit's files, and new ones attached to it.
    pub fn for_visit(
        access: &ClinicAccess,
        s: &ClinicSettings,
        csrf: &str,
        patient: i64,
        visit: i64,
        all: Vec<Attachment>,
    ) -> Option<Self> {
        let theirs = all
            .into_iter()
            .filter(|a| a.visit_id == Some(visit))
            .collect();
        Self::new(access, s, csrf, patient, theirs).map(|b| Self {
            visit: Some(visit),
            ..b
        })
    }
}

/// Path of one attachment.
#[derive(Deserialize)]
pub struct AttachmentPath {
    id: String,
    attachment: String,
}

/// Path of a patient.
#[derive(Deserialize)]
pub struct PatientPath {
    id: String,
}

fn store_error(e: AttachmentError, max_bytes: u64) -> AppError {
    match e {
        AttachmentError::Unsupported => AppError::Refused(
            "Ward keeps PDF, JPEG, PNG, WebP and DICOM files; this file is none of those \
             (its content was checked, not its name). Nothing was stored."
                .into(),
        ),
        AttachmentError::TooLarge => AppError::Refused(format!(
            "This file is larger than {}, the most Ward accepts. Nothing was stored.",
            readable_size(i64::try_from(max_bytes).unwrap_or(i64::MAX))
        )),
        AttachmentError::Upload(why) => {
            tracing::warn!(why, "an attachment upload broke off");
            AppError::Refused("The upload broke off. Nothing was stored; try again.".into())
        }
        e @ (AttachmentError::Store(_) | AttachmentError::Integrity) => {
            AppError::Internal(Box::new(e))
        }
    }
}

/// A text field of the upload form, read up to a few KB (a title, a kind, a visit).
async fn small_text(mut field: axum::extract::multipart::Field<'_>) -> Result<String, AppError> {
    let mut buf = Vec::new();
    while let Some(piece) = field.chunk().await.map_err(|_| bad_form())? {
        buf.extend_from_slice(&piece);
        if buf.len() > 4096 {
            return Err(AppError::Refused(format!(
                "A title is one line of at most {} characters.",
                attachments::MAX_TITLE
            )));
        }
    }
    String::from_utf8(buf).map_err(|_| bad_form())
}

fn bad_form() -> AppError {
    AppError::Refused("The upload form was incomplete: give a title, a kind and a file.".into())
}

/// `POST /c/{slug}/patients/{id}/attachments`: one file, with a title and a kind, as a
/// multipart form (title and kind before the file). Streamed: encrypted chunk by chunk
/// into the store while its size is counted; the row is written (and audited) only once
/// the object is complete, and the object removed if the row cannot be.
pub async fn upload_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Path(PatientPath { id }): Path<PatientPath>,
    mut form: Multipart,
) -> Page {
    let id = parse_id(&id)?;
    if !Kind::ALL.iter().any(|k| access.can(k.write_permission())) {
        return Err(AppError::Forbidden);
    }
    let mut title = None;
    let mut kind = None;
    let mut visit_id = None;
    let mut stored = None;
    let store = &app.attachments;
    while let Some(field) = form.next_field().await.map_err(|_| bad_form())? {
        match field.name().unwrap_or_default() {
            "title" => title = Some(small_text(field).await?),
            "kind" => {
                let k = small_text(field).await?;
                kind = Some(Kind::parse(k.trim()).ok_or_else(bad_form)?);
            }
            "visit" => {
                let v = small_text(field).await?;
                if !v.trim().is_empty() {
                    visit_id = Some(parse_id(v.trim())?);
                }
            }
            "file" if stored.is_none() => {
                let (Some(t), Some(k)) = (title.as_deref(), kind) else {
                    return Err(bad_form());
                };
                access.require(k.write_permission())?;
                let t = attachments::check_title(t)?;
                // The patient must exist before anything is stored.
                let vid = visit_id;
                access
                    .tenant
                    .with(move |conn| attachments::check_target(&conn, id, vid))
                    .await?;
                let s = store
                    .put(field)
                    .await
                    .map_err(|e| store_error(e, store.max_bytes))?;
                title = Some(t);
                stored = Some(s);
            }
            _ => {}
        }
    }
    let (Some(title), Some(kind), Some(s)) = (title, kind, stored) else {
        return Err(bad_form());
    };
    let new = NewAttachment {
        patient_id: id,
        visit_id,
        kind,
        title,
        content_type: s.content_type.to_owned(),
        size: i64::try_from(s.size).unwrap_or(i64::MAX),
        sha256: s.sha256.clone(),
        object_name: s.object_name.clone(),
        key: s.key,
    };
    let entry = access.audit_entry(app.clock.now(), Action::Create);
    let created = access
        .tenant
        .with(move |conn| attachments::create(&conn, &new, entry))
        .await;
    if let Err(e) = created {
        if let Err(gone) = store.remove(&s.object_name).await {
            tracing::error!(error = %gone, "could not remove the object of a failed upload");
        }
        return Err(e.into());
    }
    let back = match visit_id {
        Some(v) => format!("/c/{}/visits/{v}#attachments", access.slug),
        None => format!("/c/{}/patients/{id}#attachments", access.slug),
    };
    Ok(Redirect::to(&back).into_response())
}

async fn send(app: &AppState, access: &ClinicAccess, path: AttachmentPath, download: bool) -> Page {
    let id = parse_id(&path.id)?;
    let aid = parse_id(&path.attachment)?;
    let a = access
        .tenant
        .with(move |conn| attachments::get(&conn, id, aid))
        .await?;
    access.require(a.kind.view_permission())?;
    let download = download || !crate::attachments::inline(&a.content_type);
    let action = if download {
        Action::Export
    } else {
        Action::View
    };
    let entry = access.audit_entry(app.clock.now(), action);
    let row = a.clone();
    access
        .tenant
        .with(move |conn| attachments::record_access(&conn, &row, entry))
        .await?;
    let body = app
        .attachments
        .open(&a.object_name, &a.key, &a.sha256)
        .await
        .map_err(|e| {
            tracing::error!(attachment = a.id, error = %e, "an attachment could not be read");
            AppError::Internal(Box::new(e))
        })?;
    let ext = match a.content_type.as_str() {
        "application/pdf" => "pdf",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "application/dicom" => "dcm",
        _ => "bin",
    };
    let disposition = if download {
        format!("attachment; filename=\"attachment-{}.{ext}\"", a.id)
    } else {
        "inline".to_owned()
    };
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type.clone()),
            (header::CONTENT_LENGTH, a.size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_SECURITY_POLICY, ATTACHMENT_CSP.to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// `GET /c/{slug}/patients/{id}/attachments/{attachment}`: shown inline (images and
/// PDFs, sandboxed) or downloaded (DICOM); audited as a `view` (or an `export`).
pub async fn view_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Path(path): Path<AttachmentPath>,
) -> Page {
    send(&app, &access, path, false).await
}

/// `GET /c/{slug}/patients/{id}/attachments/{attachment}/download`: as a download;
/// audited as an `export`.
pub async fn download_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Path(path): Path<AttachmentPath>,
) -> Page {
    send(&app, &access, path, true).await
}

/// The delete form.
#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    reason: String,
}

/// `POST /c/{slug}/patients/{id}/attachments/{attachment}/delete`: with a required
/// reason (kept on the row). The row is marked deleted (and audited) first, then the
/// object removed from the store.
pub async fn delete_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Path(path): Path<AttachmentPath>,
    AppForm(form): AppForm<DeleteForm>,
) -> Page {
    let id = parse_id(&path.id)?;
    let aid = parse_id(&path.attachment)?;
    let a = access
        .tenant
        .with(move |conn| attachments::get(&conn, id, aid))
        .await?;
    if !access.can(a.kind.view_permission()) {
        return Err(AppError::NotFound);
    }
    access.require(a.kind.write_permission())?;
    let entry = access.audit_entry(app.clock.now(), Action::Delete);
    let reason = form.reason;
    let gone = access
        .tenant
        .with(move |conn| attachments::delete(&conn, id, aid, &reason, entry))
        .await?;
    if let Err(e) = app.attachments.remove(&gone.object_name).await {
        tracing::error!(attachment = gone.id, error = %e, "could not remove a deleted attachment's object");
    }
    Ok(Redirect::to(&format!("/c/{}/patients/{id}#attachments", access.slug)).into_response())
}
