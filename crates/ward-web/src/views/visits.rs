//! Visits: recording a consultation, correcting it, reading it back, and the printable
//! prescription. Only roles with the clinical permissions reach any of it.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ward_clinic::audit::Action;
use ward_clinic::patients::Patient;
use ward_clinic::settings::{self, ClinicSettings};
use ward_clinic::visits::{
    self, Doctor, Favourite, Item, MAX_DIAGNOSES, MAX_ITEMS, Target, Visit, VisitForm,
};
use ward_clinic::{PatientId, VisitId};
use ward_core::Permission;

use crate::extract::RecordRequest;
use crate::extract::{AppForm, ClinicAccess};
use crate::form::FormErrors;
use crate::views::frame::ClinicFrame;
use crate::views::history::HistoryEntry;
use crate::views::patients::{age_sex, patients_frame, today};
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// Empty prescription rows a new form offers (more with "Add a row").
const BLANK_ITEMS: usize = 3;
/// Empty diagnosis rows a new form offers.
const BLANK_DIAGNOSES: usize = 2;

#[derive(Template)]
#[template(path = "visit_form.html")]
struct FormPage {
    frame: ClinicFrame,
    /// "New visit" or "Edit visit".
    heading: &'static str,
    /// Where the form posts.
    action: String,
    /// Where "Cancel" leads.
    cancel: String,
    /// The clinic's currency code, for the fee's label.
    currency: &'static str,
    patient: Patient,
    age_sex: String,
    form: VisitForm,
    errors: FormErrors,
    favourites: Vec<Favourite>,
    favourite_name: String,
    notice: Option<String>,
    can_add_item: bool,
    can_add_diagnosis: bool,
    /// Correcting a saved visit: the form asks why (`Some`, with what was typed).
    reason: Option<String>,
}

/// Pads the form with blank rows so there is always room to type: at least the default
/// number of rows, and at least one blank one (within the caps).
fn padded(mut form: VisitForm) -> VisitForm {
    if !form.items.iter().any(|i| *i == Item::default()) && form.items.len() < MAX_ITEMS {
        form.items.push(Item::default());
    }
    if form.items.len() < BLANK_ITEMS {
        form.items.resize(BLANK_ITEMS, Item::default());
    }
    if !form.diagnoses.iter().any(|d| d.is_empty()) && form.diagnoses.len() < MAX_DIAGNOSES {
        form.diagnoses.push(String::new());
    }
    if form.diagnoses.len() < BLANK_DIAGNOSES {
        form.diagnoses.resize(BLANK_DIAGNOSES, String::new());
    }
    form
}

/// What a visit form shows besides the frame.
struct FormParts {
    patient: Patient,
    form: VisitForm,
    errors: FormErrors,
    favourites: Vec<Favourite>,
    favourite_name: String,
    notice: Option<String>,
    /// The reason typed for a correction.
    reason: String,
}

impl FormParts {
    /// `form` as first shown: no errors, no notice.
    fn fresh(patient: Patient, form: VisitForm, favourites: Vec<Favourite>) -> Self {
        Self {
            patient,
            form,
            errors: FormErrors::default(),
            favourites,
            favourite_name: String::new(),
            notice: None,
            reason: String::new(),
        }
    }

    /// Redraws the form for a button that only changes its rows: one added or removed,
    /// or a favourite's items added.
    fn press(&mut self, button: &Button) -> Result<StatusCode, AppError> {
        let form = &mut self.form;
        match *button {
            Button::AddItem if form.items.len() < MAX_ITEMS => form.items.push(Item::default()),
            Button::AddDiagnosis if form.diagnoses.len() < MAX_DIAGNOSES => {
                form.diagnoses.push(String::new());
            }
            Button::RemoveItem(n) if n < form.items.len() => {
                form.items.remove(n);
            }
            Button::ApplyFavourite(n) => return apply_favourite(self, n),
            _ => {}
        }
        Ok(StatusCode::OK)
    }
}

impl FormPage {
    /// The form for `target` showing `parts`.
    async fn new(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        target: Target,
        s: &ClinicSettings,
        parts: FormParts,
    ) -> Result<Self, AppError> {
        let form = padded(parts.form);
        let slug = &access.slug;
        let (heading, action, cancel) = match target {
            Target::New { patient_id } => (
                "New visit",
                format!("/c/{slug}/patients/{patient_id}/visits"),
                format!("/c/{slug}/patients/{patient_id}"),
            ),
            Target::Edit { visit_id } => (
                "Correct the visit",
                format!("/c/{slug}/visits/{visit_id}/edit"),
                format!("/c/{slug}/visits/{visit_id}"),
            ),
        };
        Ok(Self {
            heading,
            action,
            cancel,
            currency: s.currency.code,
            age_sex: age_sex(&parts.patient, today(app, s)),
            patient: parts.patient,
            can_add_item: form.items.len() < MAX_ITEMS,
            can_add_diagnosis: form.diagnoses.len() < MAX_DIAGNOSES,
            form,
            errors: parts.errors,
            favourites: parts.favourites,
            favourite_name: parts.favourite_name,
            notice: parts.notice,
            reason: matches!(target, Target::Edit { .. }).then_some(parts.reason),
            frame: patients_frame(app, access, csrf).await?,
        })
    }
}

async fn render_form(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    target: Target,
    s: &ClinicSettings,
    parts: FormParts,
    status: StatusCode,
) -> Page {
    let page = FormPage::new(app, access, csrf, target, s, parts).await?;
    crate::views::respond::html(status, &page)
}

/// What the form for `target` shows (the patient, the doctor's favourites, the settings
/// and, when correcting, the visit).
async fn form_data(access: &ClinicAccess, target: Target) -> Result<visits::FormData, AppError> {
    let doctor = access.session.user.id.clone();
    Ok(access
        .tenant
        .with(|conn| visits::form_data(&conn, target, &doctor))
        .await?)
}

/// `GET /c/{slug}/patients/{id}/visits/new`: the visit form.
pub async fn new_get(RecordRequest(app, access, csrf, id): RecordRequest<PatientId>) -> Page {
    access.require(Permission::WriteClinical)?;
    let target = Target::New { patient_id: id };
    let data = form_data(&access, target).await?;
    let parts = FormParts::fresh(data.patient, VisitForm::default(), data.favourites);
    render_form(
        &app,
        &access,
        csrf,
        target,
        &data.settings,
        parts,
        StatusCode::OK,
    )
    .await
}

/// `GET /c/{slug}/visits/{id}/edit`: the visit form filled with the stored visit. It
/// shows the whole visit, so it is audited as a `view` like the visit page.
pub async fn edit_get(RecordRequest(app, access, csrf, id): RecordRequest<VisitId>) -> Page {
    access.require(Permission::WriteClinical)?;
    let target = Target::Edit { visit_id: id };
    let data = form_data(&access, target).await?;
    access.note_view(
        &app,
        access.view_entry(&app, "visit", id).detail("edit form"),
    )?;
    let s = data.settings;
    let form = (data.visit.as_ref()).map(|v| VisitForm::from_visit(v, &s.currency));
    let parts = FormParts::fresh(data.patient, form.unwrap_or_default(), data.favourites);
    render_form(&app, &access, csrf, target, &s, parts, StatusCode::OK).await
}

/// `POST /c/{slug}/patients/{id}/visits`: saves a new visit, or redraws its form (see
/// [`form_post`]).
pub async fn create_post(
    RecordRequest(app, access, csrf, id): RecordRequest<PatientId>,
    AppForm(pairs): AppForm<Vec<(String, String)>>,
) -> Page {
    access.require(Permission::WriteClinical)?;
    form_post(&app, &access, csrf, Target::New { patient_id: id }, &pairs).await
}

/// `POST /c/{slug}/visits/{id}/edit`: saves the correction as the visit's next version
/// with its reason (`reason`, required), audited as one `update` naming the versions
/// (diagnoses and items replaced in the same transaction), or redraws its form (see
/// [`form_post`]).
pub async fn edit_post(
    RecordRequest(app, access, csrf, id): RecordRequest<VisitId>,
    AppForm(pairs): AppForm<Vec<(String, String)>>,
) -> Page {
    access.require(Permission::WriteClinical)?;
    form_post(&app, &access, csrf, Target::Edit { visit_id: id }, &pairs).await
}

/// The button a visit form was sent with (`action`).
enum Button {
    /// `save` (or none): save the visit.
    Save,
    /// `add_item`: one more prescription row.
    AddItem,
    /// `add_diagnosis`: one more diagnosis row.
    AddDiagnosis,
    /// `remove_item_N`: remove row N.
    RemoveItem(usize),
    /// `apply_favourite_N`: add the items of favourite N.
    ApplyFavourite(i64),
    /// `save_favourite`: keep the items as a favourite.
    SaveFavourite,
}

impl Button {
    fn parse(action: &str) -> Result<Self, AppError> {
        let number = |prefix: &str| action.strip_prefix(prefix).and_then(|n| n.parse().ok());
        Ok(match action {
            "save" | "" => Self::Save,
            "add_item" => Self::AddItem,
            "add_diagnosis" => Self::AddDiagnosis,
            "save_favourite" => Self::SaveFavourite,
            _ => match (number("remove_item_"), number("apply_favourite_")) {
                (Some(n), _) => Self::RemoveItem(usize::try_from(n).unwrap_or(usize::MAX)),
                (_, Some(n)) => Self::ApplyFavourite(n),
                _ => {
                    return Err(AppError::Refused(
                        "That button is not known here. Go back and try again.".into(),
                    ));
                }
            },
        })
    }
}

/// A visit form's post, read: the button, the visit as typed, and the favourite's name
/// and the correction's reason (each cut to its longest).
struct VisitPost {
    button: Button,
    form: VisitForm,
    favourite_name: String,
    reason: String,
}

impl VisitPost {
    fn parse(pairs: &[(String, String)]) -> Result<Self, AppError> {
        let field = |name: &str, max: usize| {
            let value = pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            value
                .unwrap_or_default()
                .chars()
                .take(max)
                .collect::<String>()
        };
        Ok(Self {
            button: Button::parse(&field("action", 100))?,
            form: VisitForm::from_pairs(pairs),
            favourite_name: field("favourite_name", 200),
            reason: field("reason", 1000),
        })
    }
}

/// A visit form's post: saves the visit (`action=save`), or redraws the form with a row
/// added (`add_item`, `add_diagnosis`) or removed (`remove_item_N`), a favourite's items
/// added (`apply_favourite_N`), or the items saved as a favourite (`save_favourite`).
/// Everything typed is kept across redraws.
async fn form_post(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    target: Target,
    pairs: &[(String, String)],
) -> Page {
    let post = VisitPost::parse(pairs)?;
    let data = form_data(access, target).await?;
    let (s, mut parts) = (
        data.settings,
        FormParts::fresh(data.patient, post.form, data.favourites),
    );
    (parts.favourite_name, parts.reason) = (post.favourite_name, post.reason);
    let today = s.local(app.clock.now()).date_naive();
    let status = match post.button {
        Button::Save => match save(app, access, target, &s, today, &mut parts).await? {
            Some(visit_id) => {
                let to = format!("/c/{}/visits/{visit_id}", access.slug);
                return Ok(Redirect::to(&to).into_response());
            }
            None => StatusCode::UNPROCESSABLE_ENTITY,
        },
        Button::SaveFavourite => save_favourite(app, access, &s, today, &mut parts).await?,
        ref other => parts.press(other)?,
    };
    render_form(app, access, csrf, target, &s, parts, status).await
}

/// Saves the visit: a new one, or a correction (which needs a reason). `None`, with
/// the errors in `parts`, when the form is refused.
async fn save(
    app: &AppState,
    access: &ClinicAccess,
    target: Target,
    s: &ClinicSettings,
    today: chrono::NaiveDate,
    parts: &mut FormParts,
) -> Result<Option<VisitId>, AppError> {
    let valid = match parts.form.validate(today, &s.currency) {
        Ok(valid) => valid,
        Err(e) => {
            parts.errors = e.into();
            return Ok(None);
        }
    };
    let entry = access.audit_entry(app.clock.now(), target.action());
    let doctor = Doctor {
        id: access.session.user.id.clone(),
        name: access.session.user.name.clone(),
    };
    let why = parts.reason.clone();
    let saved = access
        .tenant
        .with(|conn| visits::save(&conn, target, &valid, &doctor, &why, entry))
        .await;
    match (saved, target) {
        (Ok(id), _) => Ok(Some(id)),
        // A correction can be refused (no reason given); a new visit's refusal is not
        // about the form.
        (Err(e), Target::Edit { .. }) => parts.errors.absorb(e).map(|()| None),
        (Err(e), Target::New { .. }) => Err(e.into()),
    }
}

/// Adds the items of favourite `n` after the rows already filled.
fn apply_favourite(parts: &mut FormParts, n: i64) -> Result<StatusCode, AppError> {
    let Some(f) = parts.favourites.iter().find(|f| f.id.get() == n) else {
        return Err(AppError::NotFound);
    };
    let items = &mut parts.form.items;
    items.retain(|i| !i.drug.trim().is_empty() || !i.dose.trim().is_empty());
    for item in &f.items {
        if items.len() < MAX_ITEMS {
            items.push(item.clone());
        }
    }
    parts.notice = Some(format!("Added the items of “{}”.", f.name));
    Ok(StatusCode::OK)
}

/// Keeps the form's items (the valid ones, or every row with a drug) as a favourite of
/// the doctor, named as typed.
async fn save_favourite(
    app: &AppState,
    access: &ClinicAccess,
    s: &ClinicSettings,
    today: chrono::NaiveDate,
    parts: &mut FormParts,
) -> Result<StatusCode, AppError> {
    let items: Vec<Item> = match parts.form.validate(today, &s.currency) {
        Ok(v) => v.items,
        Err(_) => (parts.form.items.iter())
            .filter(|i| !i.drug.trim().is_empty())
            .cloned()
            .collect(),
    };
    let entry = access.audit_entry(app.clock.now(), Action::Create);
    let (doctor_id, name) = (access.session.user.id.clone(), parts.favourite_name.clone());
    let saved = access
        .tenant
        .with(|conn| visits::keep_favourite(&conn, &doctor_id, &name, &items, entry))
        .await;
    match saved {
        Ok(list) => {
            parts.favourites = list;
            let name = parts.favourite_name.trim();
            parts.notice = Some(format!("Saved the items as the favourite “{name}”."));
            Ok(StatusCode::OK)
        }
        Err(e) => parts
            .errors
            .absorb(e)
            .map(|()| StatusCode::UNPROCESSABLE_ENTITY),
    }
}

/// `?version=N`: a kept version of the visit instead of the current one.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(crate) struct VersionQuery {
    version: String,
    paper: String,
}

impl VersionQuery {
    /// The version asked for, if any; a malformed one is a 404 like an unknown one.
    fn number(&self) -> Result<Option<i64>, AppError> {
        if self.version.is_empty() {
            return Ok(None);
        }
        match self.version.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(AppError::NotFound),
        }
    }
}

/// How a page names a visit's versions: the amendment line of the current version, or
/// for an earlier one what superseded it.
struct VersionNote {
    /// The version shown.
    number: i64,
    /// The visit's current version.
    current: i64,
    /// "Version 2 of 3, saved 2026-03-01 10:15 by Dr Rao (reason: …)".
    text: String,
}

fn version_note(
    s: &settings::ClinicSettings,
    shown: i64,
    versions: &[ward_clinic::history::Version<visits::NewVisit>],
) -> Option<VersionNote> {
    let current = versions.last()?.number;
    if current <= 1 {
        return None;
    }
    let v = versions.iter().find(|v| v.number == shown)?;
    let when = s.local(v.saved_at).format("%Y-%m-%d %H:%M");
    let text = match &v.reason {
        Some(reason) => format!(
            "Version {shown} of {current}, corrected {when} by {} (reason: {reason})",
            v.author_name
        ),
        None => format!(
            "Version {shown} of {current}, first saved {when} by {}",
            v.author_name
        ),
    };
    Some(VersionNote {
        number: shown,
        current,
        text,
    })
}

#[derive(Template)]
#[template(path = "visit.html")]
struct VisitPage {
    frame: ClinicFrame,
    patient: Patient,
    age_sex: String,
    visit: Visit,
    when: String,
    /// Whether the user may edit the visit (shows "Edit visit").
    can_edit: bool,
    /// The fee, formatted, for roles that may see payments; `None` hides the row.
    fee: Option<String>,
    /// For an amended visit: which version this is.
    note: Option<VersionNote>,
    /// This visit's files.
    attachments: Option<crate::views::attachments::AttachmentsBox>,
}

/// Visit `id` as `wanted` asks, in one hand-off to the database.
async fn record(
    access: &ClinicAccess,
    id: VisitId,
    wanted: visits::Wanted,
) -> Result<visits::Record, AppError> {
    Ok(access
        .tenant
        .with(|conn| visits::record(&conn, id, wanted))
        .await?)
}

/// The version `q` asks for, if any, and the visit as of it (with its files when `files`).
async fn versioned(
    access: &ClinicAccess,
    id: VisitId,
    q: &VersionQuery,
    files: bool,
) -> Result<(Option<i64>, visits::Record), AppError> {
    let asked = q.number()?;
    let wanted = visits::Wanted {
        version: asked,
        files,
        ..visits::Wanted::default()
    };
    Ok((asked, record(access, id, wanted).await?))
}

/// The note naming the version `record` shows, for an amended visit.
fn note_of(record: &visits::Record) -> Option<VersionNote> {
    let versions = record.versions.as_ref()?;
    version_note(&record.settings, record.visit.version, versions)
}

impl VisitPage {
    /// The page of `record` (read with its files) for this role.
    async fn new(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        record: visits::Record,
    ) -> Result<Self, AppError> {
        let note = note_of(&record);
        let visits::Record {
            visit,
            patient,
            settings: s,
            files,
            ..
        } = record;
        let (pid, id) = (patient.id, visit.id);
        let files = files.unwrap_or_default();
        Ok(Self {
            attachments: crate::views::attachments::AttachmentsBox::for_visit(
                access, &s, &csrf, pid, id, files,
            ),
            age_sex: age_sex(&patient, today(app, &s)),
            when: s
                .local(visit.visited_at)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            can_edit: access.can(Permission::WriteClinical)
                && note.as_ref().is_none_or(|n| n.number == n.current),
            note,
            fee: access
                .can(Permission::ViewPayments)
                .then(|| match visit.fee_minor {
                    Some(m) => s.money(m),
                    None => "None recorded".to_owned(),
                }),
            patient,
            visit,
            frame: patients_frame(app, access, csrf).await?,
        })
    }
}

/// `GET /c/{slug}/visits/{id}[?version=N]`: the visit (or one of its kept versions),
/// audited as a `view` (naming the version when an earlier one was asked for).
pub async fn show_get(
    RecordRequest(app, access, csrf, id): RecordRequest<VisitId>,
    Query(q): Query<VersionQuery>,
) -> Page {
    access.require(Permission::ViewClinical)?;
    let (asked, record) = versioned(&access, id, &q, true).await?;
    let mut entry = access.view_entry(&app, "visit", id);
    if asked.is_some() {
        entry = entry.detail(&format!("version {}", record.visit.version));
    }
    access.note_view(&app, entry)?;
    let page = VisitPage::new(&app, &access, csrf, record).await?;
    crate::views::respond::page(&page)
}

#[derive(Template)]
#[template(path = "prescription.html")]
struct PrescriptionPage {
    frame: ClinicFrame,
    letterhead: String,
    address: String,
    phone: String,
    patient: Patient,
    age_sex: String,
    date: String,
    visit: Visit,
    a5: bool,
    /// For an amended visit: which version this print shows.
    note: Option<VersionNote>,
    /// `&version=N` for the paper links of an earlier version's print.
    version_query: String,
}

impl PrescriptionPage {
    /// The print of `record` (as of version `asked`, if one was) on A5 or A4 paper.
    async fn new(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        record: visits::Record,
        (asked, a5): (Option<i64>, bool),
    ) -> Result<Self, AppError> {
        let note = note_of(&record);
        let visits::Record {
            visit,
            patient,
            settings: s,
            ..
        } = record;
        Ok(Self {
            age_sex: age_sex(&patient, s.local(visit.visited_at).date_naive()),
            date: s.local(visit.visited_at).format("%d %b %Y").to_string(),
            letterhead: s.letterhead.clone(),
            address: s.address.clone(),
            phone: s.phone.clone(),
            version_query: asked.map(|n| format!("&version={n}")).unwrap_or_default(),
            patient,
            visit,
            a5,
            note,
            frame: patients_frame(app, access, csrf).await?,
        })
    }
}

/// `GET /c/{slug}/visits/{id}/prescription?paper=a4|a5[&version=N]`: the printable
/// prescription, audited as a `print` naming the version printed, so a print of an
/// amended visit can be reproduced as it was (`version=N`).
pub async fn prescription_get(
    RecordRequest(app, access, csrf, id): RecordRequest<VisitId>,
    Query(q): Query<VersionQuery>,
) -> Page {
    access.require(Permission::WriteClinical)?;
    let (asked, record) = versioned(&access, id, &q, false).await?;
    let a5 = q.paper == "a5";
    let paper = if a5 { " (A5)" } else { "" };
    access.note_view(
        &app,
        access
            .audit_entry(app.clock.now(), Action::Print)
            .entity("visit", id)
            .detail(&format!(
                "prescription{paper}, version {}",
                record.visit.version
            )),
    )?;
    let page = PrescriptionPage::new(&app, &access, csrf, record, (asked, a5)).await?;
    crate::views::respond::page(&page)
}

#[derive(Template)]
#[template(path = "visit_history.html")]
struct HistoryPage {
    frame: ClinicFrame,
    patient: Patient,
    visit: Visit,
    when: String,
    /// Newest first.
    entries: Vec<HistoryEntry>,
    /// The visit as first saved.
    original: visits::NewVisit,
    /// The original's fee, formatted, for roles that may see payments.
    original_fee: Option<String>,
}

impl HistoryPage {
    /// The history of `record` (read with every version) for this role.
    async fn new(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        record: visits::Record,
    ) -> Result<Self, AppError> {
        let visits::Record {
            visit,
            patient,
            settings: s,
            versions,
            ..
        } = record;
        let versions = versions.unwrap_or_default();
        let payments = access.can(Permission::ViewPayments);
        let money = |m: i64| {
            if payments {
                s.money(m)
            } else {
                "(hidden)".to_owned()
            }
        };
        let entries = HistoryEntry::newest_first(&versions, &s, |old, new| {
            let mut changes = visits::changes(old, new, money);
            if !payments {
                changes.retain(|c| c.label != "Fee");
            }
            changes
        });
        let original = versions
            .into_iter()
            .next()
            .map_or_else(|| visits::NewVisit::from(&visit), |v| v.content);
        Ok(Self {
            when: s
                .local(visit.visited_at)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            original_fee: payments
                .then(|| original.fee_minor.map(|m| s.money(m)))
                .flatten(),
            original,
            entries,
            patient,
            visit,
            frame: patients_frame(app, access, csrf).await?,
        })
    }
}

/// `GET /c/{slug}/visits/{id}/history`: every version of the visit, newest first, each
/// with who saved it, when, why and what it changed; the original in full. Clinical
/// roles only (the changes are clinical text); audited as a `view`.
pub async fn history_get(RecordRequest(app, access, csrf, id): RecordRequest<VisitId>) -> Page {
    access.require(Permission::ViewClinical)?;
    let wanted = visits::Wanted {
        history: true,
        ..visits::Wanted::default()
    };
    let record = record(&access, id, wanted).await?;
    access.note_view(&app, access.view_entry(&app, "visit", id).detail("history"))?;
    let page = HistoryPage::new(&app, &access, csrf, record).await?;
    crate::views::respond::page(&page)
}
