//! Attachments on the patient page: upload (a plain multipart form), view, download
//! and delete (docs/attachments.md).

use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::Deserialize;
use ward_clinic::attachments::{
    self, AttachedFile, Attachment, Batch, Kind, NewAttachment, Thumbnail,
};
use ward_clinic::audit::Action;
use ward_clinic::settings::ClinicSettings;
use ward_clinic::{AttachmentId, PatientId, VisitId};

use crate::attachments::{AttachmentError, Stored};
use crate::extract::{AppForm, AttachmentRequest, ClinicAccess, RecordId, parse_id};
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// The sandbox an attachment is shown in: no script, nothing loaded from elsewhere.
const ATTACHMENT_CSP: &str =
    "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'";

/// One attachment in the patient page's list.
pub struct AttachmentLine {
    /// Its view link.
    pub href: String,
    /// Its thumbnail's address, for an image that has one.
    pub thumbnail: Option<String>,
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
    pub visit: Option<VisitId>,
    /// A fresh random key for this form's upload: a retried upload with the same key
    /// is stored once.
    pub upload_key: String,
}

/// A fresh upload key: 128 random bits, hex.
fn new_upload_key() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
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

/// A size in bytes as people read it: "812 B", "4.2 KB", "1.2 MB", "5 GB".
pub fn readable_size(n: i64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    let short = |v: f64, unit: &str| {
        if v.fract() == 0.0 {
            format!("{v:.0} {unit}")
        } else {
            format!("{v:.1} {unit}")
        }
    };
    if n < 1024 {
        format!("{n} B")
    } else if f < K * K {
        short(f / K, "KB")
    } else if f < K * K * K {
        short(f / (K * K), "MB")
    } else {
        short(f / (K * K * K), "GB")
    }
}

fn bytes_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The clinic's use of its attachment quota, for the owner's settings page: "1.2 GB
/// of 5 GB".
pub async fn usage_line(app: &AppState, access: &ClinicAccess) -> Result<String, AppError> {
    let used = access.tenant.with(|conn| attachments::usage(&conn)).await?;
    Ok(format!(
        "{} of {}",
        readable_size(bytes_i64(used)),
        readable_size(bytes_i64(app.attachments.quota_bytes))
    ))
}

impl AttachmentsBox {
    /// The box for patient `id`, or `None` when this person may neither see nor upload
    /// any kind.
    pub fn new(
        access: &ClinicAccess,
        s: &ClinicSettings,
        csrf: &str,
        id: PatientId,
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
                thumbnail: a
                    .thumbnail
                    .as_ref()
                    .map(|_| format!("{base}/{}/thumbnail", a.id)),
                delete_href: format!("{base}/{}/delete", a.id),
                can_delete: access.can(a.kind.write_permission()),
                title: a.file.title,
                kind: a.file.kind.label(),
                content_type: short_type(&a.file.content_type),
                size: readable_size(a.file.size),
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
            upload_key: new_upload_key(),
        })
    }

    /// The box on visit `visit`'s page: that visit's files, and new ones attached to it.
    pub fn for_visit(
        access: &ClinicAccess,
        s: &ClinicSettings,
        csrf: &str,
        patient: PatientId,
        visit: VisitId,
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

/// The most files one upload takes.
pub const MAX_FILES: usize = 20;

/// The largest upload body: [`MAX_FILES`] files at the cap, and 1 MiB for the form's
/// other fields and the multipart framing. Each file is still capped as it streams.
pub fn body_limit(store: &crate::attachments::AttachmentStore) -> usize {
    usize::try_from(store.max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_mul(MAX_FILES)
        .saturating_add(1024 * 1024)
}

/// What to call file `n` (from 1) of an upload, named `name` by the browser, in a
/// message to the person who sent it.
fn which(n: usize, name: Option<&str>) -> String {
    match name.filter(|s| !s.is_empty()) {
        Some(name) => format!("\u{201c}{name}\u{201d} (file {n} of this upload)"),
        None => format!("File {n} of this upload"),
    }
}

fn store_error(
    e: AttachmentError,
    store: &crate::attachments::AttachmentStore,
    file: String,
) -> AppError {
    match e {
        AttachmentError::Unsupported => AppError::Refused(format!(
            "{file}: Ward keeps PDF, JPEG, PNG, WebP and DICOM files; this file is none of \
             those (its content was checked, not its name). Nothing was stored."
        )),
        AttachmentError::TooLarge => AppError::TooLarge(format!(
            "{file} is larger than {}, the most Ward accepts. Nothing was stored.",
            readable_size(bytes_i64(store.max_bytes))
        )),
        AttachmentError::OverQuota => over_quota(store),
        AttachmentError::Upload(why) => {
            tracing::warn!(why, "an attachment upload broke off");
            AppError::Refused("The upload broke off. Nothing was stored; try again.".into())
        }
        e @ (AttachmentError::Store(_) | AttachmentError::Integrity) => {
            AppError::Internal(Box::new(e))
        }
    }
}

fn over_quota(store: &crate::attachments::AttachmentStore) -> AppError {
    AppError::TooLarge(format!(
        "This upload would take the clinic's files past its quota of {}. Nothing was \
         stored. The clinic's owner sees how much is used on the settings page; deleting \
         files no longer needed makes room.",
        readable_size(bytes_i64(store.quota_bytes))
    ))
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

/// What an upload's form said, its files stored.
struct Received {
    title: String,
    kind: Kind,
    visit_id: Option<VisitId>,
    upload_key: Option<String>,
}

impl Received {
    /// The rows of patient `id`'s files `stored`: one title for all, numbered when
    /// there are several.
    fn files(&self, id: PatientId, stored: &[Stored]) -> Vec<NewAttachment> {
        let count = stored.len();
        (1..)
            .zip(stored)
            .map(|(n, s)| NewAttachment {
                file: AttachedFile {
                    patient_id: id,
                    visit_id: self.visit_id,
                    kind: self.kind,
                    title: if count == 1 {
                        self.title.clone()
                    } else {
                        format!("{} ({n} of {count})", self.title)
                    },
                    content_type: s.content_type.to_owned(),
                    size: bytes_i64(s.size),
                    sha256: s.sha256.clone(),
                    object_name: s.object_name.clone(),
                },
                key: s.key,
                upload_key: self.upload_key.clone(),
            })
            .collect()
    }
}

/// The page an upload goes back to.
fn back_to(slug: &ward_core::Slug, patient: PatientId, visit: Option<VisitId>) -> Response {
    let back = match visit {
        Some(v) => format!("/c/{slug}/visits/{v}#attachments"),
        None => format!("/c/{slug}/patients/{patient}#attachments"),
    };
    Redirect::to(&back).into_response()
}

/// An upload key as the form sends it: 16 to 64 letters, digits, `-` or `_`.
fn check_upload_key(key: &str) -> Result<String, AppError> {
    let k = key.trim();
    if (16..=64).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(k.to_owned())
    } else {
        Err(bad_form())
    }
}

/// The answer to an upload of patient `id` whose key `key` was stored before (a retry),
/// if it was; refused if it was stored for another record.
async fn stored_before(
    access: &ClinicAccess,
    id: PatientId,
    key: &str,
) -> Result<Option<Response>, AppError> {
    let k = key.to_owned();
    let before = access
        .tenant
        .with(move |conn| attachments::find_upload(&conn, &k))
        .await?;
    match before {
        Some((patient, _)) if patient != id => Err(AppError::Refused(
            "This upload form was already used for another record. Reload the page and \
             upload again."
                .into(),
        )),
        Some((patient, visit)) => Ok(Some(back_to(&access.slug, patient, visit))),
        None => Ok(None),
    }
}

/// An upload's form as read so far.
#[derive(Default)]
struct Reading {
    title: Option<String>,
    kind: Option<Kind>,
    visit_id: Option<VisitId>,
    upload_key: Option<String>,
    /// Bytes left in the clinic's quota, once the first file's target was checked.
    room: Option<u64>,
}

impl Reading {
    /// Stores one `file` part into `stored`, within the quota. Before the first, the
    /// kind's permission, the title and the patient (and visit) are checked.
    async fn file(
        &mut self,
        app: &AppState,
        access: &ClinicAccess,
        id: PatientId,
        field: axum::extract::multipart::Field<'_>,
        stored: &mut Vec<Stored>,
    ) -> Result<(), AppError> {
        let name = field.file_name().map(str::to_owned);
        // A file input left empty sends one part with no name and no bytes.
        if name.as_deref() == Some("") {
            return Ok(());
        }
        let (Some(t), Some(k)) = (self.title.as_deref(), self.kind) else {
            return Err(bad_form());
        };
        if stored.len() >= MAX_FILES {
            return Err(AppError::Refused(format!(
                "At most {MAX_FILES} files can be sent at once. Nothing was stored."
            )));
        }
        let store = &app.attachments;
        let left = match self.room {
            Some(left) => left,
            None => {
                access.require(k.write_permission())?;
                self.title = Some(attachments::check_title(t)?);
                // The patient must exist before anything is stored.
                let vid = self.visit_id;
                let used = access
                    .tenant
                    .with(move |conn| attachments::check_upload(&conn, id, vid))
                    .await?;
                store.quota_bytes.saturating_sub(used)
            }
        };
        let n = stored.len() + 1;
        let s = store
            .put_within(field, left)
            .await
            .map_err(|e| store_error(e, store, which(n, name.as_deref())))?;
        self.room = Some(left.saturating_sub(s.size));
        stored.push(s);
        Ok(())
    }

    /// The form, complete: a title, a kind and at least one file.
    fn finish(self, stored: &[Stored]) -> Result<Received, AppError> {
        let (Some(title), Some(kind), false) = (self.title, self.kind, stored.is_empty()) else {
            return Err(bad_form());
        };
        Ok(Received {
            title,
            kind,
            visit_id: self.visit_id,
            upload_key: self.upload_key,
        })
    }
}

/// Reads the form, storing each file as it streams in (into `stored`, which the caller
/// empties from the store on failure). `Ok(Err(response))`: the upload was stored
/// before (a retry), and this is its answer.
async fn receive(
    app: &AppState,
    access: &ClinicAccess,
    id: PatientId,
    form: &mut Multipart,
    stored: &mut Vec<Stored>,
) -> Result<Result<Received, Response>, AppError> {
    let mut r = Reading::default();
    while let Some(field) = form.next_field().await.map_err(|_| bad_form())? {
        match field.name().unwrap_or_default() {
            "upload_key" => {
                let key = check_upload_key(&small_text(field).await?)?;
                if let Some(answer) = stored_before(access, id, &key).await? {
                    return Ok(Err(answer));
                }
                r.upload_key = Some(key);
            }
            "title" => r.title = Some(small_text(field).await?),
            "kind" => {
                let k = small_text(field).await?;
                r.kind = Some(Kind::parse(k.trim()).ok_or_else(bad_form)?);
            }
            "visit" => {
                let v = small_text(field).await?;
                if !v.trim().is_empty() {
                    r.visit_id = Some(parse_id(v.trim())?);
                }
            }
            "file" => r.file(app, access, id, field, stored).await?,
            _ => {}
        }
    }
    r.finish(stored).map(Ok)
}

/// What an upload came to, its files stored.
enum Upload {
    /// Its rows were written: their ids, in the upload's order, and its visit.
    Created {
        ids: Vec<AttachmentId>,
        visit_id: Option<VisitId>,
    },
    /// It was stored before (a retry): the answer given then; its files are not needed.
    Before(Response),
}

/// Receives the upload into `stored` and writes its rows (with their audit rows) in
/// one transaction, unless it was stored before or takes the clinic past its quota.
async fn upload(
    app: &AppState,
    access: &ClinicAccess,
    id: PatientId,
    form: &mut Multipart,
    stored: &mut Vec<Stored>,
) -> Result<Upload, AppError> {
    let received = match receive(app, access, id, form, stored).await? {
        Ok(r) => r,
        Err(answer) => return Ok(Upload::Before(answer)),
    };
    let files = received.files(id, stored);
    let entry = access.audit_entry(app.clock.now(), Action::Create);
    let quota = app.attachments.quota_bytes;
    let created = access
        .tenant
        .with(move |conn| attachments::create_batch(&conn, &files, quota, entry))
        .await;
    let e = match created {
        Ok(Batch::Created(ids)) => {
            let visit_id = received.visit_id;
            return Ok(Upload::Created { ids, visit_id });
        }
        Ok(Batch::AlreadyStored {
            patient_id,
            visit_id,
        }) => return Ok(Upload::Before(back_to(&access.slug, patient_id, visit_id))),
        Ok(Batch::OverQuota { .. }) => return Err(over_quota(&app.attachments)),
        Err(e) => e,
    };
    // The same upload, retried while the first copy was being written, loses the race
    // on the key's unique index: answer with the first copy.
    if let Some(key) = received.upload_key
        && let Ok(Some(answer)) = stored_before(access, id, &key).await
    {
        return Ok(Upload::Before(answer));
    }
    Err(e.into())
}

/// A body stream that gives way after every piece (it wakes itself and answers
/// "not ready" once), so that the multipart parser, which reads whatever is ready in
/// one go, takes one piece at a time instead of buffering a fast sender's whole file:
/// the upload's memory stays a few pieces, whatever the file's size.
struct Paced<S> {
    inner: S,
    gave_way: bool,
}

impl<S: futures::Stream + Unpin> futures::Stream for Paced<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        if !self.gave_way {
            self.gave_way = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let next = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if next.is_ready() {
            self.gave_way = false;
        }
        next
    }
}

/// The request's multipart form, read through [`Paced`].
async fn paced_form(
    request: axum::extract::Request,
    app: &AppState,
) -> Result<Multipart, AppError> {
    use axum::extract::FromRequest as _;
    let (parts, body) = request.into_parts();
    let paced = Body::from_stream(Paced {
        inner: body.into_data_stream(),
        gave_way: true,
    });
    Multipart::from_request(axum::extract::Request::from_parts(parts, paced), app)
        .await
        .map_err(|_| bad_form())
}

/// Removes what an upload that failed had stored.
async fn discard(app: &AppState, stored: &[Stored]) {
    for s in stored {
        if let Err(gone) = app.attachments.remove(&s.object_name).await {
            tracing::error!(error = %gone, "could not remove the object of a failed upload");
        }
    }
}

/// Makes and stores the thumbnail of attachment `aid` (an image, stored as `s`): the
/// file is read back decrypted, decoded on a blocking thread within the decoder's
/// limits, and its thumbnail stored encrypted under its own key. A failure is logged
/// (by id) and leaves the attachment without a thumbnail.
async fn make_thumbnail(app: &AppState, access: &ClinicAccess, aid: AttachmentId, s: &Stored) {
    let ct = s.content_type;
    let made = async {
        let bytes = app
            .attachments
            .read_all(&s.object_name, &s.key, &s.sha256, app.attachments.max_bytes)
            .await
            .map_err(|e| e.to_string())?;
        let jpeg = tokio::task::spawn_blocking(move || crate::thumbnail::make(ct, &bytes))
            .await
            .map_err(|e| e.to_string())??;
        let t = app
            .attachments
            .put_bytes(jpeg)
            .await
            .map_err(|e| e.to_string())?;
        let thumb = Thumbnail {
            object_name: t.object_name.clone(),
            key: t.key.to_vec(),
            sha256: t.sha256,
        };
        let saved = access
            .tenant
            .with(move |conn| attachments::set_thumbnail(&conn, aid, &thumb))
            .await;
        if let Err(e) = saved {
            let _ = app.attachments.remove(&t.object_name).await;
            return Err(e.to_string());
        }
        Ok::<_, String>(())
    }
    .await;
    if let Err(why) = made {
        tracing::warn!(attachment = aid.get(), why, "no thumbnail could be made");
    }
}

/// `POST /c/{slug}/patients/{id}/attachments`: one or several files (`file`, repeated),
/// with one title and kind for all of them, as a multipart form (an optional
/// `upload_key`, then title and kind, before the files). Each file is streamed:
/// sniffed, encrypted chunk by chunk into the store while its size is counted against
/// the cap and the clinic's quota. All or nothing: the rows are written (and audited)
/// in one transaction once every object is complete, and every object of the upload
/// removed if any file is refused or the rows cannot be written. An upload whose key
/// was stored before is answered as it was, storing nothing again. Images then get
/// their thumbnails.
pub async fn upload_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    RecordId(id): RecordId<PatientId>,
    request: axum::extract::Request,
) -> Page {
    if !Kind::ALL.iter().any(|k| access.can(k.write_permission())) {
        return Err(AppError::Forbidden);
    }
    let mut form = paced_form(request, &app).await?;
    let mut stored = Vec::new();
    match upload(&app, &access, id, &mut form, &mut stored).await {
        Ok(Upload::Created { ids, visit_id }) => {
            for (aid, s) in ids.into_iter().zip(&stored) {
                if crate::thumbnail::applies(s.content_type) {
                    make_thumbnail(&app, &access, aid, s).await;
                }
            }
            Ok(back_to(&access.slug, id, visit_id))
        }
        Ok(Upload::Before(answer)) => {
            discard(&app, &stored).await;
            Ok(answer)
        }
        Err(e) => {
            discard(&app, &stored).await;
            Err(e)
        }
    }
}

/// The headers every attachment response carries, and its body.
fn sandboxed(
    content_type: String,
    length: Option<i64>,
    disposition: String,
    body: futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>,
) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_SECURITY_POLICY, ATTACHMENT_CSP.to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response();
    if let Some(n) = length
        && let Ok(v) = header::HeaderValue::from_str(&n.to_string())
    {
        r.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    r
}

/// Attachment `aid` of patient `id`, if this role may see its kind.
async fn visible(
    access: &ClinicAccess,
    id: PatientId,
    aid: AttachmentId,
) -> Result<Attachment, AppError> {
    let a = access
        .tenant
        .with(move |conn| attachments::get(&conn, id, aid))
        .await?;
    access.require(a.kind.view_permission())?;
    Ok(a)
}

/// Records that `a` was opened (`action`), then opens the stored object `object`
/// (its name, key and digest): the file or its thumbnail (`what`, for the log).
async fn open_audited(
    app: &AppState,
    access: &ClinicAccess,
    a: Attachment,
    action: Action,
    (object, key, sha256): (&str, &[u8], &str),
    what: &'static str,
) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>, AppError> {
    let aid = a.id;
    let entry = access.audit_entry(app.clock.now(), action);
    access
        .tenant
        .with(move |conn| attachments::record_access(&conn, &a, entry))
        .await?;
    app.attachments
        .open(object, key, sha256)
        .await
        .map_err(|e| {
            tracing::error!(attachment = aid.get(), error = %e, "{what} could not be read");
            AppError::Internal(Box::new(e))
        })
}

/// Attachment `aid` of patient `id`, inline or as a `download`.
async fn send(
    app: &AppState,
    access: &ClinicAccess,
    (id, aid): (PatientId, AttachmentId),
    download: bool,
) -> Page {
    let a = visible(access, id, aid).await?;
    let download = download || !crate::attachments::inline(&a.content_type);
    let (action, disposition) = if download {
        let ext = ward_clinic::archive::extension(&a.content_type);
        let name = format!("attachment; filename=\"attachment-{}.{ext}\"", a.id);
        (Action::Export, name)
    } else {
        (Action::View, "inline".to_owned())
    };
    let object = (a.object_name.as_str(), &a.key[..], a.sha256.as_str());
    let body = open_audited(app, access, a.clone(), action, object, "an attachment").await?;
    Ok(sandboxed(
        a.content_type.clone(),
        Some(a.size),
        disposition,
        body,
    ))
}

/// `GET /c/{slug}/patients/{id}/attachments/{attachment}/thumbnail`: an image's
/// thumbnail (a small JPEG), under the same rules as the file: the same permission,
/// sandboxed, uncached, audited as a `view` of the attachment. "Not found" when it
/// has none.
pub async fn thumbnail_get(AttachmentRequest(app, access, (id, aid)): AttachmentRequest) -> Page {
    let a = visible(&access, id, aid).await?;
    let Some(t) = a.thumbnail.clone() else {
        return Err(AppError::NotFound);
    };
    let object = (t.object_name.as_str(), &t.key[..], t.sha256.as_str());
    let body = open_audited(&app, &access, a, Action::View, object, "a thumbnail").await?;
    let inline = "inline".to_owned();
    Ok(sandboxed("image/jpeg".to_owned(), None, inline, body))
}

/// `GET /static/upload.js`: the upload form's progress bar and retries (the form works
/// without it).
pub async fn upload_js_get() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../../static/upload.js"),
    )
}

/// `GET /c/{slug}/patients/{id}/attachments/{attachment}`: shown inline (images and
/// PDFs, sandboxed) or downloaded (DICOM); audited as a `view` (or an `export`).
pub async fn view_get(AttachmentRequest(app, access, at): AttachmentRequest) -> Page {
    send(&app, &access, at, false).await
}

/// `GET /c/{slug}/patients/{id}/attachments/{attachment}/download`: as a download;
/// audited as an `export`.
pub async fn download_get(AttachmentRequest(app, access, at): AttachmentRequest) -> Page {
    send(&app, &access, at, true).await
}

/// The delete form.
#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    reason: String,
}

/// `POST /c/{slug}/patients/{id}/attachments/{attachment}/delete`: with a required
/// reason (kept on the row). The row is marked deleted (and audited); its objects stay
/// in the store until the sweep removes them after the retention for deleted records
/// (`WARD_RETENTION_DAYS`).
pub async fn delete_post(
    AttachmentRequest(app, access, (id, aid)): AttachmentRequest,
    AppForm(form): AppForm<DeleteForm>,
) -> Page {
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
    access
        .tenant
        .with(move |conn| attachments::delete(&conn, id, aid, &reason, entry))
        .await?;
    Ok(Redirect::to(&format!("/c/{}/patients/{id}#attachments", access.slug)).into_response())
}
