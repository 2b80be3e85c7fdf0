//! Payments: `/c/{slug}/payments` (list and collection report), `payments/new`,
//! `payments/{id}/receipt` (printable, with the payment's refunds and void),
//! `payments/{id}/refund` and `payments/{id}/void` (forms), and
//! `corrections/{id}/receipt` (a refund's or void's own printable receipt).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use ward_clinic::ClinicError;
use ward_clinic::appointments::{self, PatientHit};
use ward_clinic::audit::Action;
use ward_clinic::payments::{
    self, Correction, CorrectionKind, Item, Method, NewCorrection, NewPayment, Payment,
};
use ward_clinic::settings::{self, ClinicSettings};
use ward_core::Permission;

use crate::extract::RecordId;
use crate::extract::{AppForm, ClinicAccess, Csrf};
use crate::form::FormErrors;
use crate::views::frame::ClinicFrame;
use crate::{AppError, AppState};

/// How many item rows the form offers (it works without JavaScript).
const ITEM_ROWS: usize = 5;

/// A payment as a list shows it.
pub struct PaymentRow {
    /// Row id.
    pub id: i64,
    /// Receipt number.
    pub receipt_number: i64,
    /// Local date and time.
    pub when: String,
    /// Patient row id.
    pub patient_id: i64,
    /// Patient number.
    pub patient_number: i64,
    /// Patient name.
    pub patient_name: String,
    /// Method label.
    pub method: &'static str,
    /// Reference.
    pub reference: String,
    /// Formatted amount.
    pub amount: String,
    /// Who recorded it.
    pub recorded_by: String,
    /// "Voided", "Refunded ₹100.00" or empty.
    pub status: String,
}

/// What became of a payment: voided, refunded (how much), or nothing.
pub fn correction_status(p: &Payment, s: &ClinicSettings) -> String {
    if p.voided {
        "Voided".to_owned()
    } else if p.refunded_minor > 0 {
        format!("Refunded {}", s.money(p.refunded_minor))
    } else {
        String::new()
    }
}

impl PaymentRow {
    /// Shown in the clinic's timezone and currency.
    pub fn new(p: &Payment, s: &ClinicSettings) -> Self {
        Self {
            id: p.id,
            receipt_number: p.receipt_number,
            when: s.local(p.received_at).format("%Y-%m-%d %H:%M").to_string(),
            patient_id: p.patient_id,
            patient_number: p.patient_number,
            patient_name: p.patient_name.clone(),
            method: p.method.label(),
            reference: p.reference.clone(),
            amount: s.money(p.amount_minor),
            recorded_by: p.recorded_by_name.clone(),
            status: correction_status(p, s),
        }
    }
}

/// A refund or void as a list shows it.
pub struct CorrectionRow {
    /// Row id.
    pub id: i64,
    /// "Refund" or "Void".
    pub kind: &'static str,
    /// Its own receipt number.
    pub receipt_number: i64,
    /// The corrected payment's id.
    pub payment_id: i64,
    /// The corrected payment's receipt number.
    pub payment_receipt_number: i64,
    /// Local date and time.
    pub when: String,
    /// Patient row id.
    pub patient_id: i64,
    /// Patient number.
    pub patient_number: i64,
    /// Patient name.
    pub patient_name: String,
    /// Method label.
    pub method: &'static str,
    /// Formatted amount.
    pub amount: String,
    /// Why.
    pub reason: String,
    /// Who recorded it.
    pub recorded_by: String,
}

impl CorrectionRow {
    /// Shown in the clinic's timezone and currency.
    pub fn new(c: &Correction, s: &ClinicSettings) -> Self {
        Self {
            id: c.id,
            kind: c.kind.label(),
            receipt_number: c.receipt_number,
            payment_id: c.payment_id,
            payment_receipt_number: c.payment_receipt_number,
            when: s.local(c.recorded_at).format("%Y-%m-%d %H:%M").to_string(),
            patient_id: c.patient_id,
            patient_number: c.patient_number,
            patient_name: c.patient_name.clone(),
            method: c.method.label(),
            amount: s.money(c.amount_minor),
            reason: c.reason.clone(),
            recorded_by: c.recorded_by_name.clone(),
        }
    }
}

/// A report line, formatted.
pub struct TotalRow {
    /// What.
    pub label: String,
    /// How many payments.
    pub count: i64,
    /// Formatted gross sum of the payments.
    pub amount: String,
    /// How many refunds.
    pub refund_count: i64,
    /// Formatted sum of the refunds.
    pub refunds: String,
    /// How many voids.
    pub void_count: i64,
    /// Formatted sum of the voids.
    pub voids: String,
    /// Formatted net: gross less refunds and voids.
    pub net: String,
}

/// `?from=&to=` (local dates, inclusive).
#[derive(Default, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Template)]
#[template(path = "payments.html")]
struct ListPage {
    frame: ClinicFrame,
    from: String,
    to: String,
    notice: Option<String>,
    timezone: String,
    rows: Vec<PaymentRow>,
    corrections: Vec<CorrectionRow>,
    show_list: bool,
    report: Option<Report>,
    can_record: bool,
}

struct Report {
    by_day: Vec<TotalRow>,
    by_method: Vec<TotalRow>,
    by_staff: Vec<TotalRow>,
    total: TotalRow,
}

fn rows(list: &[payments::Total], s: &ClinicSettings) -> Vec<TotalRow> {
    list.iter().map(|t| total_row(t, s)).collect()
}

fn total_row(t: &payments::Total, s: &ClinicSettings) -> TotalRow {
    TotalRow {
        label: t.label.clone(),
        count: t.count,
        amount: s.money(t.amount_minor),
        refund_count: t.refund_count,
        refunds: s.money(t.refunds_minor),
        void_count: t.void_count,
        voids: s.money(t.voids_minor),
        net: s.money(t.net_minor()),
    }
}

async fn render_list(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    q: RangeQuery,
    show_list: bool,
) -> Result<Response, AppError> {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let now = app.clock.now();
    let show_report = access.can(Permission::ViewCollections);
    let (s, list, fixes, from, to, notice) = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            let today = s.local(now).date_naive();
            let mut notice = None;
            let mut day = |text: Option<String>| -> NaiveDate {
                match text.as_deref().map(str::trim) {
                    None | Some("") => today,
                    Some(t) => appointments::parse_date("from", t).unwrap_or_else(|_| {
                        notice = Some(
                            "A date could not be read (use YYYY-MM-DD); showing today instead."
                                .to_owned(),
                        );
                        today
                    }),
                }
            };
            let (mut from, mut to) = (day(q.from), day(q.to));
            if to < from {
                std::mem::swap(&mut from, &mut to);
            }
            if (to - from).num_days() > 366 {
                from = to - chrono::TimeDelta::days(366);
                notice = Some("At most a year is shown at once.".to_owned());
            }
            let start = appointments::day_bounds(s.timezone, from).0;
            let end = appointments::day_bounds(s.timezone, to).1;
            let list = payments::between(&conn, start, end)?;
            let fixes = payments::corrections_between(&conn, start, end)?;
            Ok::<_, ClinicError>((s, list, fixes, from, to, notice))
        })
        .await?;
    if show_list {
        access.note_shown(
            app,
            list.iter()
                .map(|p| p.patient_id)
                .chain(fixes.iter().map(|f| f.patient_id)),
            "payments list",
        )?;
    }
    let report = show_report.then(|| {
        let c = payments::collection(&list, &fixes, s.timezone);
        Report {
            by_day: rows(&c.by_day, &s),
            by_method: rows(&c.by_method, &s),
            by_staff: rows(&c.by_staff, &s),
            total: total_row(&c.total, &s),
        }
    });
    let page = ListPage {
        frame: ClinicFrame::new(access, clinic.name, csrf, "payments"),
        from: from.to_string(),
        to: to.to_string(),
        notice,
        timezone: s.timezone.name().to_owned(),
        rows: if show_list {
            list.iter().map(|p| PaymentRow::new(p, &s)).collect()
        } else {
            Vec::new()
        },
        corrections: if show_list {
            fixes.iter().map(|c| CorrectionRow::new(c, &s)).collect()
        } else {
            Vec::new()
        },
        show_list,
        report,
        can_record: access.can(Permission::RecordPayments),
    };
    Ok(Html(page.render()?).into_response())
}

/// The payments of a date range, with the collection report for those who may see it.
pub async fn list_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    Query(q): Query<RangeQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewPayments)?;
    render_list(&app, &access, csrf, q, true).await
}

/// The collection report alone.
pub async fn report_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    Query(q): Query<RangeQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewCollections)?;
    render_list(&app, &access, csrf, q, false).await
}

/// `?patient=&q=&visit=` for the new-payment form.
#[derive(Default, Deserialize)]
pub struct NewQuery {
    patient: Option<String>,
    q: Option<String>,
    visit: Option<String>,
}

/// The form's values, kept when it is shown again.
#[derive(Default)]
pub struct PaymentForm {
    patient_id: String,
    visit_id: String,
    method: String,
    reference: String,
    items: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "payment_new.html")]
struct NewPage {
    frame: ClinicFrame,
    q: String,
    hits: Vec<PatientHit>,
    chosen: Option<PatientHit>,
    form: PaymentForm,
    errors: FormErrors,
    methods: Vec<(&'static str, &'static str)>,
    currency: String,
}

async fn render_new(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    q: String,
    mut form: PaymentForm,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, AppError> {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let chosen_id = form.patient_id.trim().parse::<i64>().ok();
    let query = q.clone();
    let (s, hits, chosen) = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            let hits = appointments::find_patients(&conn, &query, 20)?;
            let chosen = match chosen_id {
                Some(id) => appointments::patient(&conn, id).ok(),
                None => None,
            };
            Ok::<_, ClinicError>((s, hits, chosen))
        })
        .await?;
    while form.items.len() < ITEM_ROWS {
        form.items.push((String::new(), String::new()));
    }
    if form.method.is_empty() {
        form.method = Method::Cash.as_str().to_owned();
    }
    let page = NewPage {
        frame: ClinicFrame::new(access, clinic.name, csrf, "payments"),
        q,
        hits,
        chosen,
        form,
        errors,
        methods: Method::ALL
            .iter()
            .map(|m| (m.as_str(), m.label()))
            .collect(),
        currency: format!("{} ({})", s.currency.code, s.currency.symbol.trim()),
    };
    Ok((status, Html(page.render()?)).into_response())
}

/// The form to record a payment.
pub async fn new_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    Query(q): Query<NewQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::RecordPayments)?;
    let form = PaymentForm {
        patient_id: q.patient.unwrap_or_default(),
        visit_id: q.visit.unwrap_or_default(),
        ..PaymentForm::default()
    };
    render_new(
        &app,
        &access,
        csrf,
        q.q.unwrap_or_default(),
        form,
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// Records a payment and shows its receipt.
pub async fn create_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    AppForm(fields): AppForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    access.require(Permission::RecordPayments)?;
    let mut form = PaymentForm::default();
    let (mut descriptions, mut amounts) = (Vec::new(), Vec::new());
    for (k, v) in fields {
        match k.as_str() {
            "patient_id" => form.patient_id = v,
            "visit_id" => form.visit_id = v,
            "method" => form.method = v,
            "reference" => form.reference = v,
            "item_description" => descriptions.push(v),
            "item_amount" => amounts.push(v),
            _ => {}
        }
    }
    if descriptions.len() > 50 || amounts.len() > 50 {
        return Err(AppError::Refused("A receipt has at most 20 items.".into()));
    }
    let n = descriptions.len().max(amounts.len());
    descriptions.resize(n, String::new());
    amounts.resize(n, String::new());
    form.items = descriptions.into_iter().zip(amounts).collect();

    let mut errors = FormErrors::default();
    let patient_id = form.patient_id.trim().parse::<i64>().ok();
    if patient_id.is_none() {
        errors.add("patient", "Search for and choose the patient who pays.");
    }
    let visit_id = match form.visit_id.trim() {
        "" => None,
        v => match v.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.add("visit", "There is no such visit.");
                None
            }
        },
    };
    let method = Method::parse(form.method.trim());
    if method.is_none() {
        errors.add("method", "Choose how the patient paid.");
    }
    let now = app.clock.now();
    let entry = access.audit_entry(now, Action::Create);
    let user_id = access.session.user.id.clone();
    let user_name = access.session.user.name.clone();
    let items_typed = form.items.clone();
    let reference = form.reference.clone();
    let pre_errors = !errors.is_empty();
    let result = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            let mut items = Vec::new();
            for (description, amount) in &items_typed {
                if description.trim().is_empty() && amount.trim().is_empty() {
                    continue;
                }
                let amount_minor = s.currency.parse_amount(amount).ok_or_else(|| {
                    ClinicError::invalid(
                        "items",
                        format!(
                            "Enter each amount in {} as a number, e.g. 250 or 250.50.",
                            s.currency.code
                        ),
                    )
                })?;
                items.push(Item {
                    description: payments::check_description(description)?,
                    amount_minor,
                });
            }
            if items.is_empty() {
                return Err(ClinicError::invalid(
                    "items",
                    "Add at least one item with an amount.",
                ));
            }
            let (Some(patient_id), Some(method), false) = (patient_id, method, pre_errors) else {
                // Field errors are already known; only the items were checked here.
                return Ok(None);
            };
            let new = NewPayment {
                patient_id,
                visit_id,
                method,
                reference,
                items,
                currency: s.currency.code.to_owned(),
                recorded_by_id: user_id,
                recorded_by_name: user_name,
            };
            payments::record(&conn, &new, now, entry).map(Some)
        })
        .await;
    match result {
        Ok(Some(id)) => {
            return Ok(
                Redirect::to(&format!("/c/{}/payments/{id}/receipt", access.slug)).into_response(),
            );
        }
        Ok(None) => {}
        Err(e) => errors.absorb(e)?,
    }
    render_new(
        &app,
        &access,
        csrf,
        String::new(),
        form,
        errors,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    frame: ClinicFrame,
    clinic_name: String,
    address: String,
    phone: String,
    letterhead: String,
    receipt_number: i64,
    when: String,
    patient_name: String,
    patient_number: i64,
    visit_id: Option<i64>,
    method: &'static str,
    reference: String,
    items: Vec<(String, String)>,
    total: String,
    recorded_by: String,
    payment_id: i64,
    corrections: Vec<CorrectionRow>,
    remaining: String,
    voided: bool,
    corrected: bool,
    can_correct: bool,
    can_refund: bool,
    can_void: bool,
}

/// The printable receipt; producing it is recorded in the audit log as `print`.
pub async fn receipt_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    RecordId(id): RecordId,
) -> Result<Response, AppError> {
    access.require(Permission::RecordPayments)?;
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let entry = access.audit_entry(app.clock.now(), Action::Print);
    let (s, p, fixes) = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            let p = payments::get(&conn, id)?;
            let fixes = payments::corrections_of(&conn, p.id)?;
            payments::record_print(&conn, p.id, p.receipt_number, entry)?;
            Ok::<_, ClinicError>((s, p, fixes))
        })
        .await?;
    let can_correct = access.can(Permission::CorrectPayments);
    let page = ReceiptPage {
        clinic_name: clinic.name.clone(),
        frame: ClinicFrame::new(&access, clinic.name, csrf, "payments"),
        address: s.address.clone(),
        phone: s.phone.clone(),
        letterhead: s.letterhead.clone(),
        receipt_number: p.receipt_number,
        when: s
            .local(p.received_at)
            .format("%-d %B %Y, %H:%M")
            .to_string(),
        patient_name: p.patient_name.clone(),
        patient_number: p.patient_number,
        visit_id: p.visit_id,
        method: p.method.label(),
        reference: p.reference.clone(),
        items: p
            .items
            .iter()
            .map(|i| (i.description.clone(), s.money(i.amount_minor)))
            .collect(),
        total: s.money(p.amount_minor),
        recorded_by: p.recorded_by_name.clone(),
        payment_id: p.id,
        corrections: fixes.iter().map(|c| CorrectionRow::new(c, &s)).collect(),
        remaining: s.money(p.remaining_minor()),
        voided: p.voided,
        corrected: !fixes.is_empty(),
        can_correct,
        can_refund: can_correct && p.remaining_minor() > 0,
        can_void: can_correct && !p.voided && p.refunded_minor == 0,
    };
    Ok(Html(page.render()?).into_response())
}

/// `/c/{slug}/payments/{id}/refund` or `…/void`.
fn kind_of(path: &str) -> CorrectionKind {
    if path.ends_with("/void") {
        CorrectionKind::Void
    } else {
        CorrectionKind::Refund
    }
}

/// The refund or void form's values, kept when it is shown again.
#[derive(Default)]
struct CorrectionForm {
    amount: String,
    method: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "payment_correct.html")]
struct CorrectPage {
    frame: ClinicFrame,
    refund: bool,
    payment_id: i64,
    receipt_number: i64,
    when: String,
    patient_name: String,
    patient_number: i64,
    method: &'static str,
    total: String,
    refunded: String,
    remaining: String,
    voided: bool,
    blocked: Option<String>,
    form: CorrectionForm,
    errors: FormErrors,
    methods: Vec<(&'static str, &'static str)>,
    currency: String,
    max_reason: usize,
}

#[allow(clippy::too_many_arguments, reason = "one page's inputs")]
async fn render_correct(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    id: i64,
    kind: CorrectionKind,
    mut form: CorrectionForm,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, AppError> {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let (s, p) = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            let p = payments::get(&conn, id)?;
            Ok::<_, ClinicError>((s, p))
        })
        .await?;
    if form.method.is_empty() {
        form.method = p.method.as_str().to_owned();
    }
    // Why this payment cannot take this correction any more, said before anyone types.
    let blocked = if p.voided {
        Some(format!(
            "Receipt {} was voided: it cannot be refunded or voided again.",
            p.receipt_number
        ))
    } else if kind == CorrectionKind::Refund && p.remaining_minor() <= 0 {
        Some(format!(
            "Receipt {} was refunded in full: nothing remains to refund.",
            p.receipt_number
        ))
    } else if kind == CorrectionKind::Void && p.refunded_minor > 0 {
        Some(format!(
            "Part of receipt {} was refunded, so it cannot be voided: refund the remaining {} instead.",
            p.receipt_number,
            s.money(p.remaining_minor())
        ))
    } else {
        None
    };
    let page = CorrectPage {
        frame: ClinicFrame::new(access, clinic.name, csrf, "payments"),
        refund: kind == CorrectionKind::Refund,
        payment_id: p.id,
        receipt_number: p.receipt_number,
        when: s
            .local(p.received_at)
            .format("%-d %B %Y, %H:%M")
            .to_string(),
        patient_name: p.patient_name.clone(),
        patient_number: p.patient_number,
        method: p.method.label(),
        total: s.money(p.amount_minor),
        refunded: s.money(p.refunded_minor),
        remaining: s.money(p.remaining_minor()),
        voided: p.voided,
        blocked: if errors.get("form").is_some() {
            None
        } else {
            blocked
        },
        form,
        errors,
        methods: Method::ALL
            .iter()
            .map(|m| (m.as_str(), m.label()))
            .collect(),
        currency: format!("{} ({})", s.currency.code, s.currency.symbol.trim()),
        max_reason: payments::MAX_REASON,
    };
    Ok((status, Html(page.render()?)).into_response())
}

/// The refund or void form of a payment.
pub async fn correct_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    uri: axum::http::Uri,
    RecordId(id): RecordId,
) -> Result<Response, AppError> {
    access.require(Permission::CorrectPayments)?;
    render_correct(
        &app,
        &access,
        csrf,
        id,
        kind_of(uri.path()),
        CorrectionForm::default(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// The refund or void form, as posted.
#[derive(Debug, Default, Deserialize)]
pub struct CorrectionPost {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    reason: String,
}

/// Records a refund or void and shows its receipt; refused input is shown on the form
/// (422, or 409 when the payment's state forbids it) and nothing is written.
pub async fn correct_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    uri: axum::http::Uri,
    RecordId(id): RecordId,
    AppForm(post): AppForm<CorrectionPost>,
) -> Result<Response, AppError> {
    access.require(Permission::CorrectPayments)?;
    let kind = kind_of(uri.path());
    let form = CorrectionForm {
        amount: post.amount,
        method: post.method,
        reason: post.reason,
    };
    let mut errors = FormErrors::default();
    let method = match (kind, form.method.trim()) {
        (CorrectionKind::Void, _) | (_, "") => None,
        (CorrectionKind::Refund, m) => {
            let parsed = Method::parse(m);
            if parsed.is_none() {
                errors.add("method", "Choose how the money is given back.");
            }
            parsed
        }
    };
    if let Err(e) = payments::check_reason(&form.reason) {
        errors.absorb(e)?;
    }
    let now = app.clock.now();
    let entry = access.audit_entry(now, Action::Create);
    let user_id = access.session.user.id.clone();
    let user_name = access.session.user.name.clone();
    let (amount_typed, reason) = (form.amount.clone(), form.reason.clone());
    let pre_errors = !errors.is_empty();
    let result = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            // Exists in this clinic? (A missing payment is a 404, not a form error.)
            payments::get(&conn, id)?;
            let amount_minor = match kind {
                CorrectionKind::Void => 0,
                CorrectionKind::Refund => {
                    let amount = amount_typed.trim();
                    if amount.starts_with('-') {
                        return Err(ClinicError::invalid(
                            "amount",
                            "Enter an amount more than zero.",
                        ));
                    }
                    s.currency.parse_amount(amount).ok_or_else(|| {
                        ClinicError::invalid(
                            "amount",
                            format!(
                                "Enter the amount in {} as a number, e.g. 250 or 250.50.",
                                s.currency.code
                            ),
                        )
                    })?
                }
            };
            if pre_errors {
                return Ok(None);
            }
            let new = NewCorrection {
                payment_id: id,
                kind,
                amount_minor,
                method,
                reason,
                recorded_by_id: user_id,
                recorded_by_name: user_name,
            };
            payments::correct(&conn, &new, now, entry).map(Some)
        })
        .await;
    match result {
        Ok(Some(cid)) => {
            return Ok(
                Redirect::to(&format!("/c/{}/corrections/{cid}/receipt", access.slug))
                    .into_response(),
            );
        }
        Ok(None) => {}
        Err(ClinicError::NotFound) => return Err(AppError::NotFound),
        Err(e) => errors.absorb(e)?,
    }
    let status = errors.status();
    render_correct(&app, &access, csrf, id, kind, form, errors, status).await
}

#[derive(Template)]
#[template(path = "correction_receipt.html")]
struct CorrectionReceiptPage {
    frame: ClinicFrame,
    clinic_name: String,
    address: String,
    phone: String,
    letterhead: String,
    refund: bool,
    receipt_number: i64,
    payment_id: i64,
    payment_receipt_number: i64,
    when: String,
    patient_name: String,
    patient_number: i64,
    method: &'static str,
    amount: String,
    reason: String,
    recorded_by: String,
}

/// The printable receipt of a refund or void; producing it is audited as `print`.
pub async fn correction_receipt_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    RecordId(id): RecordId,
) -> Result<Response, AppError> {
    access.require(Permission::CorrectPayments)?;
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let entry = access.audit_entry(app.clock.now(), Action::Print);
    let (s, c) = access
        .tenant
        .with(|conn| {
            let s = settings::load(&conn)?;
            let c = payments::get_correction(&conn, id)?;
            payments::record_correction_print(&conn, &c, entry)?;
            Ok::<_, ClinicError>((s, c))
        })
        .await?;
    let page = CorrectionReceiptPage {
        clinic_name: clinic.name.clone(),
        frame: ClinicFrame::new(&access, clinic.name, csrf, "payments"),
        address: s.address.clone(),
        phone: s.phone.clone(),
        letterhead: s.letterhead.clone(),
        refund: c.kind == CorrectionKind::Refund,
        receipt_number: c.receipt_number,
        payment_id: c.payment_id,
        payment_receipt_number: c.payment_receipt_number,
        when: s
            .local(c.recorded_at)
            .format("%-d %B %Y, %H:%M")
            .to_string(),
        patient_name: c.patient_name.clone(),
        patient_number: c.patient_number,
        method: c.method.label(),
        amount: s.money(c.amount_minor),
        reason: c.reason.clone(),
        recorded_by: c.recorded_by_name.clone(),
    };
    Ok(Html(page.render()?).into_response())
}
