//! A patient's rights, for the owner: their whole record (printable, and as JSON), a
//! legal hold, restriction of processing, and erasure (docs/patients.md).

use askama::Template;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_clinic::audit::{Action, Entry};
use ward_clinic::rights::{self, Ground, PrintedRecord, RecordHeader, Standing};
use ward_clinic::settings::ClinicSettings;
use ward_clinic::{ClinicError, PatientId, patients, payments, visits};
use ward_core::Permission;
use ward_tenancy::Db;

use crate::extract::{AppForm, ClinicAccess};
use crate::extract::{RecordId, RecordRequest};
use crate::views::frame::ClinicFrame;
use crate::views::patients::{clinic_name, patients_frame};
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// The owner's box on the patient page.
pub struct RightsBox {
    /// `/c/{slug}/patients/{id}`.
    pub base: String,
    /// Under a legal hold since (clinic time).
    pub hold: Option<String>,
    /// Erased at (clinic time).
    pub erased: Option<String>,
    /// Processing restricted since (clinic time), and why.
    pub restricted: Option<(String, String)>,
}

impl RightsBox {
    /// The box for patient `id` in `standing`.
    pub fn new(
        access: &ClinicAccess,
        s: &ClinicSettings,
        id: PatientId,
        standing: &Standing,
    ) -> Self {
        let when =
            |t: chrono::DateTime<chrono::Utc>| s.local(t).format("%Y-%m-%d %H:%M").to_string();
        Self {
            base: format!("/c/{}/patients/{id}", access.slug),
            hold: standing.legal_hold_since.map(when),
            erased: standing.erased_at.map(when),
            restricted: standing.restricted_since.map(|t| {
                (
                    when(t),
                    standing.restriction_reason.clone().unwrap_or_default(),
                )
            }),
        }
    }
}

/// The notice every role sees on a restricted patient's page: since when, and what it
/// means (the reason is for the owner's box only).
pub fn restriction_banner(s: &ClinicSettings, standing: &Standing) -> Option<String> {
    standing.restricted_since.map(|t| {
        format!(
            "Processing of this record is restricted since {}: it can be read, but no visit, correction, appointment, payment or file can be added until the owner lifts the restriction.",
            s.local(t).format("%Y-%m-%d %H:%M")
        )
    })
}

/// `GET /c/{slug}/patients/{id}/record.json`: the patient's whole record as one JSON
/// document (every row of theirs, every kept version), as a download; audited as an
/// `export` before it is sent.
pub async fn record_json_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    RecordId(id): RecordId<PatientId>,
) -> Page {
    access.require(Permission::PatientRights)?;
    let now = app.clock.now();
    let header_info = RecordHeader {
        clinic: clinic_name(&app, &access).await?,
        generated_at: now,
        generated_by: access.session.user.name.clone(),
    };
    let entry = access
        .audit_entry(now, Action::Export)
        .entity("patient", id)
        .detail("patient's record (JSON)");
    let (number, body) = access
        .tenant
        .with(move |conn| rights::export_record_json(&conn, id, &header_info, &entry))
        .await?;
    let filename = format!("patient-{number}-record-{}.json", now.format("%Y%m%d"));
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// One visit on the printable record.
struct VisitBlock {
    when: String,
    visit: visits::Visit,
    fee: Option<String>,
}

/// One payment on the printable record.
struct PaymentLine {
    receipt: i64,
    when: String,
    amount: String,
    method: &'static str,
    corrections: Vec<String>,
}

#[derive(Template)]
#[template(path = "patient_record.html")]
struct RecordPage {
    frame: ClinicFrame,
    p: patients::Patient,
    generated: String,
    dob: String,
    visits: Vec<VisitBlock>,
    appointments: Vec<(String, String, String)>,
    payments: Vec<PaymentLine>,
    erased: Option<String>,
}

/// `GET /c/{slug}/patients/{id}/record`: the patient's whole record as a document to
/// print or save as PDF and hand to them; audited as an `export`.
pub async fn record_get(RecordRequest(app, access, csrf, id): RecordRequest<PatientId>) -> Page {
    access.require(Permission::PatientRights)?;
    let now = app.clock.now();
    let entry = access
        .audit_entry(now, Action::Export)
        .entity("patient", id)
        .detail("patient's record (print)");
    let record = access
        .tenant
        .with(move |conn| rights::export_record(&conn, id, &entry))
        .await?;
    let frame = patients_frame(&app, &access, csrf).await?;
    let generated_by = &access.session.user.name;
    let page = RecordPage::new(frame, record, now, generated_by);
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(page.render()?)).into_response())
}

impl RecordPage {
    /// The document for `record`, generated at `now` by `by`.
    fn new(
        frame: ClinicFrame,
        record: PrintedRecord,
        now: chrono::DateTime<chrono::Utc>,
        by: &str,
    ) -> Self {
        let (p, s) = (record.patient, &record.settings);
        let when = |t| minute(s, t);
        Self {
            generated: format!("{} by {by}", when(now)),
            dob: match (p.date_of_birth, p.age_on(s.local(now).date_naive())) {
                (Some(d), _) => d.to_string(),
                (None, Some(age)) => format!("age {age}"),
                (None, None) => "not recorded".to_owned(),
            },
            visits: record
                .visits
                .into_iter()
                .map(|v| VisitBlock {
                    when: when(v.visited_at),
                    fee: v.fee_minor.map(|m| s.money(m)),
                    visit: v,
                })
                .collect(),
            appointments: record
                .appointments
                .into_iter()
                .map(|a| {
                    (
                        when(a.starts_at),
                        a.doctor_name,
                        a.status.label().to_owned(),
                    )
                })
                .collect(),
            payments: (record.payments.iter())
                .map(|(pay, fixes)| PaymentLine::new(s, pay, fixes))
                .collect(),
            erased: record.standing.erased_at.map(when),
            p,
            frame,
        }
    }
}

/// `t` to the minute, in the clinic's timezone.
fn minute(s: &ClinicSettings, t: chrono::DateTime<chrono::Utc>) -> String {
    s.local(t).format("%Y-%m-%d %H:%M").to_string()
}

impl PaymentLine {
    fn new(s: &ClinicSettings, pay: &payments::Payment, fixes: &[payments::Correction]) -> Self {
        let when =
            |t: chrono::DateTime<chrono::Utc>| s.local(t).format("%Y-%m-%d %H:%M").to_string();
        Self {
            receipt: pay.receipt_number,
            when: when(pay.received_at),
            amount: s.money(pay.amount_minor),
            method: pay.method.label(),
            corrections: fixes
                .iter()
                .map(|f| {
                    format!(
                        "{} {} (receipt {}, {})",
                        f.kind.label(),
                        s.money(f.amount_minor),
                        f.receipt_number,
                        when(f.recorded_at)
                    )
                })
                .collect(),
        }
    }
}

/// The legal-hold form: `hold=on|off`.
#[derive(Deserialize)]
pub struct HoldForm {
    #[serde(default)]
    hold: String,
}

/// `POST /c/{slug}/patients/{id}/legal-hold`: puts the record under a legal hold or lifts
/// it; audited as an `update` of `legal_hold`.
pub async fn legal_hold_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    RecordId(id): RecordId<PatientId>,
    AppForm(form): AppForm<HoldForm>,
) -> Page {
    access.require(Permission::PatientRights)?;
    let hold = on_off(&form.hold, "Choose to put the hold on or to lift it.")?;
    update_standing(&app, &access, id, move |conn, entry| {
        rights::set_legal_hold(conn, id, hold, entry)
    })
    .await
}

/// `on` or `off` as chosen on a rights form; anything else is refused with `refusal`.
fn on_off(choice: &str, refusal: &str) -> Result<bool, AppError> {
    match choice {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(AppError::Refused(refusal.to_owned())),
    }
}

/// Saves a change to the record's standing, audited as an `update`, and goes back to the
/// rights box on the patient page.
async fn update_standing(
    app: &AppState,
    access: &ClinicAccess,
    id: PatientId,
    change: impl FnOnce(&Db, Entry) -> Result<(), ClinicError> + Send,
) -> Page {
    let entry = access.audit_entry(app.clock.now(), Action::Update);
    access.tenant.with(move |conn| change(&conn, entry)).await?;
    Ok(Redirect::to(&format!("/c/{}/patients/{id}#rights", access.slug)).into_response())
}

/// The restriction form: `restrict=on` with a `reason`, or `restrict=off`.
#[derive(Deserialize)]
pub struct RestrictionForm {
    #[serde(default)]
    restrict: String,
    #[serde(default)]
    reason: String,
}

/// `POST /c/{slug}/patients/{id}/restriction`: restricts processing of the record (on the
/// patient's request, with the reason) or lifts the restriction; audited as an `update`
/// of `processing_restricted` (the reason stays in the record, not in the log).
pub async fn restriction_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    RecordId(id): RecordId<PatientId>,
    AppForm(form): AppForm<RestrictionForm>,
) -> Page {
    access.require(Permission::PatientRights)?;
    let restrict = on_off(
        &form.restrict,
        "Choose to restrict processing or to lift the restriction.",
    )?;
    let reason = restrict.then_some(form.reason);
    update_standing(&app, &access, id, move |conn, entry| {
        rights::set_restriction(conn, id, reason.as_deref(), entry)
    })
    .await
}

#[derive(Template)]
#[template(path = "patient_erase.html")]
struct ErasePage {
    frame: ClinicFrame,
    p: patients::Patient,
    grounds: Vec<(&'static str, &'static str)>,
    chosen: String,
    error: Option<String>,
}

async fn erase_page(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    p: patients::Patient,
    chosen: String,
    error: Option<String>,
) -> Page {
    let page = ErasePage {
        grounds: Ground::ALL
            .iter()
            .map(|g| (g.as_str(), g.label()))
            .collect(),
        chosen,
        error,
        p,
        frame: patients_frame(app, access, csrf).await?,
    };
    crate::views::respond::page_refused_if(page.error.is_some(), &page)
}

/// `GET /c/{slug}/patients/{id}/erase`: what erasure removes and keeps, the ground, and
/// the patient number typed to confirm.
pub async fn erase_get(RecordRequest(app, access, csrf, id): RecordRequest<PatientId>) -> Page {
    access.require(Permission::PatientRights)?;
    let p = access
        .tenant
        .with(move |conn| patients::get(&conn, id))
        .await?;
    erase_page(&app, &access, csrf, p, String::new(), None).await
}

/// The erasure form.
#[derive(Deserialize)]
pub struct EraseForm {
    #[serde(default)]
    ground: String,
    /// The patient's number, typed.
    #[serde(default)]
    confirm: String,
}

/// `POST /c/{slug}/patients/{id}/erase`: erases the patient's data (needs a recent
/// password and second factor, the ground and the number typed); refused while a legal
/// hold is set; audited as a `delete` naming the ground.
pub async fn erase_post(
    RecordRequest(app, access, csrf, id): RecordRequest<PatientId>,
    AppForm(form): AppForm<EraseForm>,
) -> Page {
    access.require(Permission::PatientRights)?;
    access.require_fresh(&app, &format!("patients/{id}/erase"))?;
    let p = access
        .tenant
        .with(move |conn| patients::get(&conn, id))
        .await?;
    let Some(ground) = Ground::parse(&form.ground) else {
        let error = Some("Choose why the record is erased.".to_owned());
        return erase_page(&app, &access, csrf, p, form.ground, error).await;
    };
    if form.confirm.trim().trim_start_matches('#') != p.number.to_string() {
        let error = Some(format!(
            "Type the patient's number, {}, to confirm.",
            p.number
        ));
        return erase_page(&app, &access, csrf, p, form.ground, error).await;
    }
    let entry = access.audit_entry(app.clock.now(), Action::Delete);
    let objects = access
        .tenant
        .with(move |conn| rights::erase_with_files(&conn, id, ground, entry))
        .await?;
    // Their keys are gone with the erasure; the objects go too.
    for name in objects {
        if let Err(e) = app.attachments.remove(&name).await {
            tracing::error!(error = %e, "could not remove an erased patient's attachment object");
        }
    }
    Ok(Redirect::to(&format!("/c/{}/patients/{id}#rights", access.slug)).into_response())
}
