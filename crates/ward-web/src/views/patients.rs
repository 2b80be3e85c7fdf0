//! The patient register: list and search, registration with a duplicate warning, the
//! patient page, editing.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use ward_clinic::PatientId;
use ward_clinic::audit::Action;
use ward_clinic::patients::{self, Correction, Patient, PatientForm, Registration};
use ward_clinic::payments::Account;
use ward_clinic::settings::{self, ClinicSettings};
use ward_clinic::visits::{self, VisitSummary};
use ward_core::Permission;

use crate::extract::{AppForm, ClinicAccess, ClinicPage, PageRequest, RecordRequest};
use crate::form::FormErrors;
use crate::views::frame::ClinicFrame;
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// A section of the patient page filled by another area (appointments, payments and
/// balance, "accessed by"): a title, a table and what to say when it is empty. Pages
/// build them in [`extra_sections`]; the template renders them all the same way.
pub struct Section {
    /// Anchor id.
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// A line under the heading (a balance, a total).
    pub summary: Option<String>,
    /// Column headings.
    pub columns: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<Cell>>,
    /// Shown when there are no rows.
    pub empty: String,
    /// Links under the table (e.g. "Book an appointment").
    pub actions: Vec<(String, String)>,
}

/// One table cell, optionally a link.
pub struct Cell {
    /// Text.
    pub text: String,
    /// Link target.
    pub href: Option<String>,
}

/// What the patient page shows besides the demographics, read in the same hand-off to
/// the database as the patient: each part only when the role may see it.
struct PatientExtras {
    visits: Vec<VisitSummary>,
    appointments: Option<Vec<ward_clinic::appointments::Appointment>>,
    payments: Option<(Vec<ward_clinic::payments::Payment>, Account)>,
    accessed_by: Option<Vec<ward_clinic::audit::Access>>,
    /// Hold, erasure and restriction (every role sees a restriction's notice).
    standing: ward_clinic::rights::Standing,
    /// Merges into this record, and possible duplicates (roles that edit details).
    merging: Option<crate::views::merge::Merging>,
}

impl PatientExtras {
    /// Reads the parts `access` may see, on the clinic's connection.
    fn load(
        conn: &ward_tenancy::Db,
        access: &Allowed,
        id: PatientId,
    ) -> Result<Self, ward_clinic::ClinicError> {
        Ok(Self {
            visits: if access.clinical {
                visits::summaries(conn, id)?
            } else {
                Vec::new()
            },
            appointments: if access.appointments {
                Some(ward_clinic::appointments::for_patient(conn, id)?)
            } else {
                None
            },
            payments: if access.payments {
                Some((
                    ward_clinic::payments::for_patient(conn, id)?,
                    ward_clinic::payments::account(conn, id)?,
                ))
            } else {
                None
            },
            accessed_by: if access.audit {
                Some(crate::views::audit::AccessedBy::patient_rows(conn, id)?)
            } else {
                None
            },
            standing: ward_clinic::rights::standing(conn, id)?,
            merging: if access.edit {
                Some(crate::views::merge::Merging::load(conn, id)?)
            } else {
                None
            },
        })
    }
}

/// Which parts of the patient page the user's role may see.
#[derive(Clone, Copy)]
struct Allowed {
    clinical: bool,
    appointments: bool,
    payments: bool,
    audit: bool,
    rights: bool,
    edit: bool,
}

impl Allowed {
    fn of(access: &ClinicAccess) -> Self {
        Self {
            clinical: access.can(Permission::ViewClinical),
            appointments: access.can(Permission::ViewAppointments),
            payments: access.can(Permission::ViewPayments),
            rights: access.can(Permission::PatientRights),
            edit: access.can(Permission::EditDemographics),
            audit: access.can(Permission::ViewAudit),
        }
    }
}

/// The sections other areas add to the patient page, in order, each behind its own
/// permission: the patient's appointments, then their payments with what they were
/// charged, paid and still owe.
fn extra_sections(
    access: &ClinicAccess,
    settings: &ClinicSettings,
    id: PatientId,
    appointments: Option<Vec<ward_clinic::appointments::Appointment>>,
    payments: Option<(Vec<ward_clinic::payments::Payment>, Account)>,
) -> Vec<Section> {
    let appointments = appointments.map(|a| appointments_section(access, settings, id, &a));
    let payments =
        payments.map(|(p, account)| payments_section(access, settings, id, &p, &account));
    appointments.into_iter().chain(payments).collect()
}

fn cell(text: String, href: Option<String>) -> Cell {
    Cell { text, href }
}

/// The patient's appointments, with a link to book one for roles that may.
fn appointments_section(
    access: &ClinicAccess,
    settings: &ClinicSettings,
    id: PatientId,
    appts: &[ward_clinic::appointments::Appointment],
) -> Section {
    let slug = access.slug.as_str();
    let mut actions = Vec::new();
    if access.can(Permission::ManageAppointments) {
        actions.push((
            format!("/c/{slug}/appointments?patient={id}"),
            "Book an appointment".to_owned(),
        ));
    }
    Section {
        id: "appointments",
        title: "Appointments".to_owned(),
        summary: None,
        columns: ["When", "Doctor", "Status", "Reason"]
            .map(str::to_owned)
            .to_vec(),
        rows: appts
            .iter()
            .map(|a| {
                vec![
                    cell(
                        settings
                            .local(a.starts_at)
                            .format("%Y-%m-%d %H:%M")
                            .to_string(),
                        Some(format!("/c/{slug}/appointments/{}", a.id)),
                    ),
                    cell(a.doctor_name.clone(), None),
                    cell(a.status.label().to_owned(), None),
                    cell(a.reason.clone(), None),
                ]
            })
            .collect(),
        empty: "No appointments.".to_owned(),
        actions,
    }
}

/// The patient's payments and account, with receipts and a link to record a payment
/// for roles that may.
fn payments_section(
    access: &ClinicAccess,
    settings: &ClinicSettings,
    id: PatientId,
    pays: &[ward_clinic::payments::Payment],
    account: &Account,
) -> Section {
    let slug = access.slug.as_str();
    let receipts = access.can(Permission::RecordPayments);
    let mut actions = Vec::new();
    if receipts {
        actions.push((
            format!("/c/{slug}/payments/new?patient={id}"),
            "Record a payment".to_owned(),
        ));
    }
    Section {
        id: "payments",
        title: "Payments".to_owned(),
        summary: Some(account_summary(settings, account)),
        columns: ["Date", "Receipt", "Amount", "Method"]
            .map(str::to_owned)
            .to_vec(),
        rows: pays
            .iter()
            .map(|p| {
                vec![
                    cell(
                        settings.local(p.received_at).format("%Y-%m-%d").to_string(),
                        None,
                    ),
                    cell(
                        format!("No. {}", p.receipt_number),
                        receipts.then(|| format!("/c/{slug}/payments/{}/receipt", p.id)),
                    ),
                    cell(settings.money(p.amount_minor), None),
                    cell(p.method.label().to_owned(), None),
                ]
            })
            .collect(),
        empty: "No payments recorded.".to_owned(),
        actions,
    }
}

/// "Charged X · Paid Y · Balance due Z", or "In credit Z" when they paid more than
/// they were charged.
fn account_summary(settings: &ClinicSettings, account: &Account) -> String {
    let balance = account.balance_minor();
    let owed = if balance < 0 {
        format!("In credit {}", settings.money(balance.saturating_neg()))
    } else {
        format!("Balance due {}", settings.money(balance))
    };
    format!(
        "Charged {} · Paid {} · {owed}",
        settings.money(account.charged_minor),
        settings.money(account.paid_minor)
    )
}

/// A patient as a list row.
pub struct Row {
    /// Link to the patient page.
    pub href: String,
    /// Patient number.
    pub number: i64,
    /// Name.
    pub name: String,
    /// Age and sex, e.g. "34 · Female".
    pub age_sex: String,
    /// Phone.
    pub phone: String,
}

pub(crate) fn age_sex(p: &Patient, today: NaiveDate) -> String {
    match p.age_on(today) {
        Some(a) => format!("{a} y · {}", p.sex_label()),
        None => p.sex_label().to_owned(),
    }
}

fn rows(slug: &str, found: &[Patient], today: NaiveDate) -> Vec<Row> {
    found
        .iter()
        .map(|p| Row {
            href: format!("/c/{slug}/patients/{}", p.id),
            number: p.number,
            name: p.full_name.clone(),
            age_sex: age_sex(p, today),
            phone: p.phone.clone(),
        })
        .collect()
}

pub(crate) fn today(app: &AppState, s: &ClinicSettings) -> NaiveDate {
    s.local(app.clock.now()).date_naive()
}

pub(crate) async fn clinic_name(app: &AppState, access: &ClinicAccess) -> Result<String, AppError> {
    Ok(app.control.clinic_by_id(access.clinic_id).await?.name)
}

/// The frame of a page in the patients area (patients, their visits, merges and rights).
pub(crate) async fn patients_frame(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
) -> Result<ClinicFrame, AppError> {
    ClinicFrame::load(app, access, csrf, "patients").await
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(crate) struct SearchQuery {
    q: String,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct ListPage {
    frame: ClinicFrame,
    q: String,
    rows: Vec<Row>,
    can_register: bool,
}

#[derive(Template)]
#[template(path = "_patient_rows.html")]
struct RowsFragment {
    q: String,
    rows: Vec<Row>,
}

/// The register searched for `q`, noted in the audit log as `what`: the query as
/// searched and the rows found.
async fn search(
    app: &AppState,
    access: &ClinicAccess,
    q: &str,
    what: &str,
) -> Result<(String, Vec<Row>), AppError> {
    // Longer queries than any name or phone are cut rather than refused.
    let q: String = q.chars().take(100).collect();
    let (found, s) = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            let found = patients::search(&conn, &q)?;
            Ok::<_, ward_clinic::ClinicError>((found, s))
        })
        .await?;
    access.note_shown(app, found.iter().map(|p| p.id), what)?;
    let rows = rows(access.slug.as_str(), &found, today(app, &s));
    Ok((q, rows))
}

/// `GET /c/{slug}/patients?q=`: the register, searched.
pub async fn list_get(
    PageRequest(app, access, csrf): ClinicPage,
    Query(query): Query<SearchQuery>,
) -> Page {
    access.require(Permission::ViewDemographics)?;
    let (q, rows) = search(&app, &access, &query.q, "patient list").await?;
    let page = ListPage {
        rows,
        q,
        can_register: access.can(Permission::EditDemographics),
        frame: patients_frame(&app, &access, csrf).await?,
    };
    crate::views::respond::page(&page)
}

/// `GET /c/{slug}/patients/search?q=`: just the result rows, for search as you type.
pub async fn search_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Query(query): Query<SearchQuery>,
) -> Page {
    access.require(Permission::ViewDemographics)?;
    let (q, rows) = search(&app, &access, &query.q, "search results").await?;
    let fragment = RowsFragment { q, rows };
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Html(fragment.render()?),
    )
        .into_response())
}

/// A possible duplicate, linked.
pub struct Duplicate {
    /// Link.
    pub href: String,
    /// "No. 12 Ana Rao, 34 y · Female, 98450 12345".
    pub label: String,
}

#[derive(Template)]
#[template(path = "patient_form.html")]
struct FormPage {
    frame: ClinicFrame,
    /// Where the form posts.
    action: String,
    /// Heading and button.
    title: String,
    form: PatientForm,
    errors: FormErrors,
    duplicates: Vec<Duplicate>,
    sexes: &'static [(&'static str, &'static str)],
    cancel: String,
    /// Correcting a saved record: the form asks why (`Some`, with what was typed).
    reason: Option<String>,
}

#[derive(serde::Deserialize)]
pub(crate) struct PatientPost {
    #[serde(flatten)]
    form: PatientForm,
    #[serde(default)]
    confirm_duplicate: String,
    /// Why a saved record is being corrected (the edit form only).
    #[serde(default)]
    reason: String,
}

impl FormPage {
    /// The registration form, with what was typed, its errors and possible duplicates.
    async fn register(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        form: PatientForm,
        errors: FormErrors,
        duplicates: Vec<Duplicate>,
    ) -> Result<Self, AppError> {
        Ok(Self {
            action: format!("/c/{}/patients/new", access.slug),
            title: "Register a patient".into(),
            form,
            errors,
            duplicates,
            sexes: &patients::SEXES,
            cancel: format!("/c/{}/patients", access.slug),
            reason: None,
            frame: patients_frame(app, access, csrf).await?,
        })
    }

    /// The correction form of patient `p`, with what was typed, the reason and errors.
    async fn correct(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        p: &Patient,
        (form, reason): (PatientForm, String),
        errors: FormErrors,
    ) -> Result<Self, AppError> {
        let id = p.id;
        Ok(Self {
            action: format!("/c/{}/patients/{id}/edit", access.slug),
            title: format!("Edit No. {} {}", p.number, p.full_name),
            form,
            errors,
            duplicates: Vec::new(),
            sexes: &patients::SEXES,
            cancel: format!("/c/{}/patients/{id}", access.slug),
            reason: Some(reason),
            frame: patients_frame(app, access, csrf).await?,
        })
    }
}

/// `GET /c/{slug}/patients/new`.
pub async fn new_get(PageRequest(app, access, csrf): ClinicPage) -> Page {
    access.require(Permission::EditDemographics)?;
    let form = PatientForm {
        sex: String::new(),
        ..PatientForm::default()
    };
    let page = FormPage::register(&app, &access, csrf, form, FormErrors::new(), Vec::new()).await?;
    crate::views::respond::page(&page)
}

/// `POST /c/{slug}/patients/new`: registers, or shows the form again with errors or a
/// duplicate warning (which `confirm_duplicate=yes` overrides).
pub async fn new_post(
    PageRequest(app, access, csrf): ClinicPage,
    AppForm(post): AppForm<PatientPost>,
) -> Page {
    access.require(Permission::EditDemographics)?;
    let entry = access.audit_entry(app.clock.now(), Action::Create);
    let confirmed = post.confirm_duplicate == "yes";
    let form = post.form.clone();
    let outcome = access
        .tenant
        .with(|conn| patients::register(&conn, &form, confirmed, entry))
        .await?;
    match outcome {
        Registration::Registered(p) => {
            Ok(Redirect::to(&format!("/c/{}/patients/{}", access.slug, p.id)).into_response())
        }
        Registration::Refused {
            errors,
            duplicates: found,
            today,
        } => {
            let found = duplicates(access.slug.as_str(), &found, today);
            let page =
                FormPage::register(&app, &access, csrf, post.form, errors.into(), found).await?;
            crate::views::respond::refused(&page)
        }
    }
}

fn duplicates(slug: &str, found: &[Patient], today: NaiveDate) -> Vec<Duplicate> {
    found
        .iter()
        .map(|p| Duplicate {
            href: format!("/c/{slug}/patients/{}", p.id),
            label: format!(
                "No. {} {}, {}{}",
                p.number,
                p.full_name,
                age_sex(p, today),
                if p.phone.is_empty() {
                    String::new()
                } else {
                    format!(", {}", p.phone)
                }
            ),
        })
        .collect()
}

/// A visit as a line of the patient's history.
pub struct VisitLine {
    /// Link to the visit.
    pub href: String,
    /// Date and time, clinic time.
    pub when: String,
    /// Doctor.
    pub doctor: String,
    /// Diagnoses, joined.
    pub diagnoses: String,
    /// Number of prescription items.
    pub items: i64,
}

#[derive(Template)]
#[template(path = "patient.html")]
struct PatientPage {
    frame: ClinicFrame,
    p: Patient,
    age_sex: String,
    registered: String,
    can_edit: bool,
    clinical: bool,
    can_write_clinical: bool,
    visits: Vec<VisitLine>,
    sections: Vec<Section>,
    /// Who viewed or changed this record (owners only).
    accessed_by: Option<crate::views::audit::AccessedBy>,
    /// The patient's rights box (owners only).
    rights: Option<crate::views::rights::RightsBox>,
    /// Processing restricted: what every role is told.
    restricted: Option<String>,
    /// Merged into another record / merges into this one / possible duplicates.
    merging: Option<crate::views::merge::MergeBox>,
    /// The patient's files, as far as this role may see them.
    attachments: Option<crate::views::attachments::AttachmentsBox>,
}

/// Everything the patient page shows, read in one hand-off to the database.
struct PatientData {
    s: ClinicSettings,
    p: Patient,
    extras: PatientExtras,
    files: Vec<ward_clinic::attachments::Attachment>,
}

impl PatientData {
    /// Patient `id` and the parts `allowed` may see, in one read transaction.
    async fn load(
        access: &ClinicAccess,
        id: PatientId,
        allowed: Allowed,
    ) -> Result<Self, AppError> {
        Ok(access
            .tenant
            .read(|conn| {
                Ok::<_, ward_clinic::ClinicError>(Self {
                    s: settings::load(&conn)?,
                    p: patients::get(&conn, id)?,
                    extras: PatientExtras::load(&conn, &allowed, id)?,
                    files: ward_clinic::attachments::list(&conn, id)?,
                })
            })
            .await?)
    }
}

impl PatientPage {
    /// The page of `data` for this role.
    async fn new(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        allowed: Allowed,
        data: PatientData,
    ) -> Result<Self, AppError> {
        let PatientData {
            s,
            p,
            extras,
            files,
        } = data;
        let id = p.id;
        let slug = access.slug.to_string();
        let visits = extras
            .visits
            .iter()
            .map(|v: &VisitSummary| VisitLine {
                href: format!("/c/{slug}/visits/{}", v.id),
                when: s.local(v.visited_at).format("%Y-%m-%d %H:%M").to_string(),
                doctor: v.doctor_name.clone(),
                diagnoses: v.diagnoses.clone(),
                items: v.items,
            })
            .collect();
        let restricted = crate::views::rights::restriction_banner(&s, &extras.standing);
        let mut attachments =
            crate::views::attachments::AttachmentsBox::new(access, &s, &csrf, id, files);
        if restricted.is_some()
            && let Some(b) = attachments.as_mut()
        {
            // Nothing new is added to a restricted record.
            b.upload_href = None;
        }
        Ok(Self {
            attachments,
            merging: (extras.merging)
                .map(|m| crate::views::merge::MergeBox::new(access, &s, id, m)),
            rights: (allowed.rights)
                .then(|| crate::views::rights::RightsBox::new(access, &s, id, &extras.standing)),
            restricted,
            accessed_by: extras.accessed_by.map(|rows| {
                crate::views::audit::AccessedBy::new(access, &s, rows, Some((p.id, p.number)))
            }),
            sections: extra_sections(access, &s, id, extras.appointments, extras.payments),
            age_sex: age_sex(&p, today(app, &s)),
            registered: s.local(p.created_at).format("%Y-%m-%d").to_string(),
            can_edit: access.can(Permission::EditDemographics),
            clinical: allowed.clinical,
            can_write_clinical: access.can(Permission::WriteClinical),
            visits,
            p,
            frame: patients_frame(app, access, csrf).await?,
        })
    }
}

/// `GET /c/{slug}/patients/{id}`: demographics, visits (for clinical roles) and the
/// other areas' sections. Audited as a `view`.
pub async fn show_get(RecordRequest(app, access, csrf, id): RecordRequest<PatientId>) -> Page {
    access.require(Permission::ViewDemographics)?;
    let allowed = Allowed::of(&access);
    let data = PatientData::load(&access, id, allowed).await?;
    access.note_view(&app, access.view_entry(&app, "patient", id))?;
    let page = PatientPage::new(&app, &access, csrf, allowed, data).await?;
    crate::views::respond::page(&page)
}

/// `GET /c/{slug}/patients/{id}/edit`.
pub async fn edit_get(RecordRequest(app, access, csrf, id): RecordRequest<PatientId>) -> Page {
    access.require(Permission::EditDemographics)?;
    let p = access.tenant.with(|conn| patients::get(&conn, id)).await?;
    // The edit form shows the whole record: a view like the patient page.
    access.note_view(
        &app,
        access.view_entry(&app, "patient", id).detail("edit form"),
    )?;
    let typed = (p.to_form(), String::new());
    let page = FormPage::correct(&app, &access, csrf, &p, typed, FormErrors::new()).await?;
    crate::views::respond::page(&page)
}

/// `POST /c/{slug}/patients/{id}/edit`: saves the correction as the record's next
/// version with its reason, audited as an `update` naming the changed fields.
pub async fn edit_post(
    RecordRequest(app, access, csrf, id): RecordRequest<PatientId>,
    AppForm(post): AppForm<PatientPost>,
) -> Page {
    access.require(Permission::EditDemographics)?;
    let entry = access.audit_entry(app.clock.now(), Action::Update);
    let (form, reason) = (post.form.clone(), post.reason.clone());
    let outcome = access
        .tenant
        .with(|conn| patients::correct(&conn, id, &form, &reason, entry))
        .await?;
    match outcome {
        Correction::Saved => {
            Ok(Redirect::to(&format!("/c/{}/patients/{id}", access.slug)).into_response())
        }
        Correction::Refused { errors, patient } => {
            let typed = (post.form, post.reason);
            let page =
                FormPage::correct(&app, &access, csrf, &patient, typed, errors.into()).await?;
            crate::views::respond::refused(&page)
        }
    }
}

#[derive(Template)]
#[template(path = "patient_history.html")]
struct HistoryPage {
    frame: ClinicFrame,
    p: Patient,
    /// Newest first.
    entries: Vec<crate::views::history::HistoryEntry>,
}

/// `GET /c/{slug}/patients/{id}/history`: every version of the patient's details,
/// newest first, with who saved it, when, why and what changed. For the roles that see
/// the details; audited as a `view`.
pub async fn history_get(RecordRequest(app, access, csrf, id): RecordRequest<PatientId>) -> Page {
    access.require(Permission::ViewDemographics)?;
    let kept = access
        .tenant
        .with(|conn| patients::with_history(&conn, id))
        .await?;
    access.note_view(
        &app,
        access.view_entry(&app, "patient", id).detail("history"),
    )?;
    let page = HistoryPage {
        entries: crate::views::history::HistoryEntry::newest_first(
            &kept.versions,
            &kept.settings,
            patients::changes,
        ),
        p: kept.patient,
        frame: patients_frame(&app, &access, csrf).await?,
    };
    crate::views::respond::page(&page)
}
