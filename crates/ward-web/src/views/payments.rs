//! Payments: `/c/{slug}/payments` (list and collection report), `payments/new`,
//! `payments/{id}/receipt` (printable, with the payment's refunds and void),
//! `payments/{id}/refund` and `payments/{id}/void` (forms), and
//! `corrections/{id}/receipt` (a refund's or void's own printable receipt).

use askama::Template;
use axum::extract::Query;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_clinic::appointments::PatientHit;
use ward_clinic::audit::{Action, Entry};
use ward_clinic::payments::{
    self, Correction, CorrectionHeader, CorrectionKind, Method, Payment, PaymentHeader, Recorder,
};
use ward_clinic::settings::ClinicSettings;
use ward_clinic::{ClinicError, CorrectionId, PatientId, PaymentId, VisitId};
use ward_control::ClinicRecord;
use ward_core::Permission;
use ward_tenancy::Db;

use crate::extract::{AppForm, ClinicAccess, ClinicPage, PageRequest};
use crate::extract::{RecordId, RecordRequest};
use crate::form::FormErrors;
use crate::views::frame::ClinicFrame;
use crate::{AppError, AppState};

/// How many item rows the form offers (it works without JavaScript).
const ITEM_ROWS: usize = 5;

/// A payment as a list shows it.
pub struct PaymentRow {
    /// Row id.
    pub id: PaymentId,
    /// Receipt number.
    pub receipt_number: i64,
    /// Local date and time.
    pub when: String,
    /// Patient row id.
    pub patient_id: PatientId,
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
    pub id: CorrectionId,
    /// "Refund" or "Void".
    pub kind: &'static str,
    /// Its own receipt number.
    pub receipt_number: i64,
    /// The corrected payment's id.
    pub payment_id: PaymentId,
    /// The corrected payment's receipt number.
    pub payment_receipt_number: i64,
    /// Local date and time.
    pub when: String,
    /// Patient row id.
    pub patient_id: PatientId,
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

impl ListPage {
    /// The list (and, for those who may see it, the report) of the range asked for;
    /// `show_list` false is the report alone.
    async fn load(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        q: RangeQuery,
        show_list: bool,
    ) -> Result<Self, AppError> {
        let now = app.clock.now();
        let range = access
            .tenant
            .with(|conn| payments::range(&conn, now, q.from.as_deref(), q.to.as_deref()))
            .await?;
        let (list, fixes, s) = (&range.payments, &range.corrections, &range.settings);
        // The report alone names no patient.
        let (list_shown, fixes_shown) = if show_list {
            let shown = list.iter().map(|p| p.patient_id);
            let shown = shown.chain(fixes.iter().map(|f| f.patient_id));
            access.note_shown(app, shown, "payments list")?;
            (list.as_slice(), fixes.as_slice())
        } else {
            (&[][..], &[][..])
        };
        Ok(Self {
            frame: ClinicFrame::load(app, access, csrf, "payments").await?,
            from: range.from.to_string(),
            to: range.to.to_string(),
            notice: range.notice.clone(),
            timezone: s.timezone.name().to_owned(),
            rows: list_shown.iter().map(|p| PaymentRow::new(p, s)).collect(),
            corrections: fixes_shown
                .iter()
                .map(|c| CorrectionRow::new(c, s))
                .collect(),
            show_list,
            report: access
                .can(Permission::ViewCollections)
                .then(|| Report::new(list, fixes, s)),
            can_record: access.can(Permission::RecordPayments),
        })
    }
}

impl Report {
    fn new(list: &[Payment], fixes: &[Correction], s: &ClinicSettings) -> Self {
        let c = payments::collection(list, fixes, s.timezone);
        Self {
            by_day: rows(&c.by_day, s),
            by_method: rows(&c.by_method, s),
            by_staff: rows(&c.by_staff, s),
            total: total_row(&c.total, s),
        }
    }
}

/// The payments of a date range, with the collection report for those who may see it.
pub async fn list_get(
    PageRequest(app, access, csrf): ClinicPage,
    Query(q): Query<RangeQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewPayments)?;
    let page = ListPage::load(&app, &access, csrf, q, true).await?;
    crate::views::respond::page(&page)
}

/// The collection report alone.
pub async fn report_get(
    PageRequest(app, access, csrf): ClinicPage,
    Query(q): Query<RangeQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewCollections)?;
    let page = ListPage::load(&app, &access, csrf, q, false).await?;
    crate::views::respond::page(&page)
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

impl NewPage {
    /// The form with `form`'s values, the search for `q` and the patient chosen.
    async fn load(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        q: String,
        mut form: PaymentForm,
        errors: FormErrors,
    ) -> Result<Self, AppError> {
        let chosen = form.patient_id.trim().parse::<PatientId>().ok();
        let (s, pick) = access
            .tenant
            .with(|conn| payments::new_payment_form(&conn, &q, chosen))
            .await?;
        form.fill_defaults();
        Ok(Self {
            frame: ClinicFrame::load(app, access, csrf, "payments").await?,
            q,
            hits: pick.hits,
            chosen: pick.chosen,
            form,
            errors,
            methods: methods(),
            currency: currency_label(&s),
        })
    }
}

/// Every method, (stored form, label), for a select list.
fn methods() -> Vec<(&'static str, &'static str)> {
    Method::ALL
        .iter()
        .map(|m| (m.as_str(), m.label()))
        .collect()
}

/// "INR (₹)".
fn currency_label(s: &ClinicSettings) -> String {
    format!("{} ({})", s.currency.code, s.currency.symbol.trim())
}

/// Who is recording, as the payment's rows name them.
fn recorder(access: &ClinicAccess) -> Recorder {
    Recorder {
        id: access.session.user.id.clone(),
        name: access.session.user.name.clone(),
    }
}

impl PaymentForm {
    /// The posted fields; item rows are repeated `item_description` and `item_amount`.
    fn from_fields(fields: Vec<(String, String)>) -> Result<Self, AppError> {
        let mut form = Self::default();
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
        Ok(form)
    }

    /// Empty item rows up to the form's length, and cash unless another method is chosen.
    fn fill_defaults(&mut self) {
        while self.items.len() < ITEM_ROWS {
            self.items.push((String::new(), String::new()));
        }
        if self.method.is_empty() {
            self.method = Method::Cash.as_str().to_owned();
        }
    }

    /// The fields other than the items, checked: the payment's header when all are
    /// right, and the errors found.
    fn header(&self, by: Recorder) -> (Option<PaymentHeader>, FormErrors) {
        let mut errors = FormErrors::default();
        let patient_id = self.patient_id.trim().parse::<PatientId>().ok();
        if patient_id.is_none() {
            errors.add("patient", "Search for and choose the patient who pays.");
        }
        let visit_id = match self.visit_id.trim() {
            "" => Ok(None),
            v => v.parse::<VisitId>().map(Some).map_err(|_| {
                errors.add("visit", "There is no such visit.");
            }),
        };
        let method = Method::parse(self.method.trim());
        if method.is_none() {
            errors.add("method", "Choose how the patient paid.");
        }
        let header = match (patient_id, visit_id, method) {
            (Some(patient_id), Ok(visit_id), Some(method)) => Some(PaymentHeader {
                patient_id,
                visit_id,
                method,
                reference: self.reference.clone(),
                by,
            }),
            _ => None,
        };
        (header, errors)
    }
}

/// The form to record a payment.
pub async fn new_get(
    PageRequest(app, access, csrf): ClinicPage,
    Query(q): Query<NewQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::RecordPayments)?;
    let form = PaymentForm {
        patient_id: q.patient.unwrap_or_default(),
        visit_id: q.visit.unwrap_or_default(),
        ..PaymentForm::default()
    };
    let q = q.q.unwrap_or_default();
    let page = NewPage::load(&app, &access, csrf, q, form, FormErrors::default()).await?;
    crate::views::respond::page(&page)
}

/// Records a payment and shows its receipt.
pub async fn create_post(
    PageRequest(app, access, csrf): ClinicPage,
    AppForm(fields): AppForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    access.require(Permission::RecordPayments)?;
    let form = PaymentForm::from_fields(fields)?;
    let (header, mut errors) = form.header(recorder(&access));
    let now = app.clock.now();
    let entry = access.audit_entry(now, Action::Create);
    let result = access
        .tenant
        .with(|conn| payments::record_typed(&conn, &form.items, header, now, entry))
        .await;
    match result {
        Ok(Some(id)) => {
            let to = format!("/c/{}/payments/{id}/receipt", access.slug);
            return Ok(Redirect::to(&to).into_response());
        }
        Ok(None) => {}
        Err(e) => errors.absorb(e)?,
    }
    let page = NewPage::load(&app, &access, csrf, String::new(), form, errors).await?;
    crate::views::respond::refused(&page)
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    frame: ClinicFrame,
    head: Letterhead,
    receipt_number: i64,
    when: String,
    patient_name: String,
    patient_number: i64,
    visit_id: Option<VisitId>,
    method: &'static str,
    reference: String,
    items: Vec<(String, String)>,
    total: String,
    recorded_by: String,
    payment_id: PaymentId,
    corrections: Vec<CorrectionRow>,
    remaining: String,
    voided: bool,
    corrected: bool,
    can_correct: bool,
    can_refund: bool,
    can_void: bool,
}

/// The head of a printed receipt (`_receipt_letterhead.html`): the clinic's name and
/// the letterhead, address and phone its settings give.
struct Letterhead {
    clinic_name: String,
    letterhead: String,
    address: String,
    phone: String,
}

impl Letterhead {
    fn new(clinic_name: String, s: &ClinicSettings) -> Self {
        Self {
            clinic_name,
            letterhead: s.letterhead.clone(),
            address: s.address.clone(),
            phone: s.phone.clone(),
        }
    }
}

/// The printable receipt; producing it is recorded in the audit log as `print`.
pub async fn receipt_get(
    RecordRequest(app, access, csrf, id): RecordRequest<PaymentId>,
) -> Result<Response, AppError> {
    access.require(Permission::RecordPayments)?;
    let (clinic, (s, p, fixes)) = printed(&app, &access, move |conn, entry| {
        payments::print_receipt(conn, id, entry)
    })
    .await?;
    let frame = ClinicFrame::new(&access, clinic.name.clone(), csrf, "payments");
    let can_correct = access.can(Permission::CorrectPayments);
    let page = ReceiptPage::new(frame, clinic.name, &s, &p, &fixes, can_correct);
    crate::views::respond::page(&page)
}

/// The clinic and what `print` reads for a printed page; the print is audited as `print`.
async fn printed<T>(
    app: &AppState,
    access: &ClinicAccess,
    print: impl FnOnce(&Db, Entry) -> Result<T, ClinicError> + Send,
) -> Result<(ClinicRecord, T), AppError> {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let entry = access.audit_entry(app.clock.now(), Action::Print);
    let read = access.tenant.with(move |conn| print(&conn, entry)).await?;
    Ok((clinic, read))
}

impl ReceiptPage {
    fn new(
        frame: ClinicFrame,
        clinic_name: String,
        s: &ClinicSettings,
        p: &Payment,
        fixes: &[Correction],
        can_correct: bool,
    ) -> Self {
        Self {
            frame,
            head: Letterhead::new(clinic_name, s),
            receipt_number: p.receipt_number,
            when: printed_time(s, p.received_at),
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
            corrections: fixes.iter().map(|c| CorrectionRow::new(c, s)).collect(),
            remaining: s.money(p.remaining_minor()),
            voided: p.voided,
            corrected: !fixes.is_empty(),
            can_correct,
            can_refund: can_correct && p.remaining_minor() > 0,
            can_void: can_correct && !p.voided && p.refunded_minor == 0,
        }
    }
}

/// "3 March 2026, 14:05" in the clinic's timezone.
fn printed_time(s: &ClinicSettings, t: chrono::DateTime<chrono::Utc>) -> String {
    s.local(t).format("%-d %B %Y, %H:%M").to_string()
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
    payment_id: PaymentId,
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

impl CorrectPage {
    /// The form for a `kind` of payment `id`, with `form`'s values and `errors`.
    async fn load(
        app: &AppState,
        access: &ClinicAccess,
        csrf: String,
        (id, kind): (PaymentId, CorrectionKind),
        mut form: CorrectionForm,
        errors: FormErrors,
    ) -> Result<Self, AppError> {
        let (s, p) = access
            .tenant
            .with(|conn| payments::get_with_settings(&conn, id))
            .await?;
        if form.method.is_empty() {
            form.method = p.method.as_str().to_owned();
        }
        // A clash already on the form says it; the notice would repeat it.
        let blocked = if errors.get("form").is_some() {
            None
        } else {
            payments::correction_blocked(&p, kind, &s)
        };
        Ok(Self {
            frame: ClinicFrame::load(app, access, csrf, "payments").await?,
            refund: kind == CorrectionKind::Refund,
            payment_id: p.id,
            receipt_number: p.receipt_number,
            when: printed_time(&s, p.received_at),
            patient_name: p.patient_name.clone(),
            patient_number: p.patient_number,
            method: p.method.label(),
            total: s.money(p.amount_minor),
            refunded: s.money(p.refunded_minor),
            remaining: s.money(p.remaining_minor()),
            voided: p.voided,
            blocked,
            form,
            errors,
            methods: methods(),
            currency: currency_label(&s),
            max_reason: payments::MAX_REASON,
        })
    }
}

/// The refund or void form of a payment.
pub async fn correct_get(
    PageRequest(app, access, csrf): ClinicPage,
    uri: axum::http::Uri,
    RecordId(id): RecordId<PaymentId>,
) -> Result<Response, AppError> {
    access.require(Permission::CorrectPayments)?;
    let (form, errors) = (CorrectionForm::default(), FormErrors::default());
    let target = (id, kind_of(uri.path()));
    let page = CorrectPage::load(&app, &access, csrf, target, form, errors).await?;
    crate::views::respond::page(&page)
}

/// The refund or void form, as posted.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CorrectionPost {
    amount: String,
    method: String,
    reason: String,
}

/// Records a refund or void and shows its receipt; refused input is shown on the form
/// (422, or 409 when the payment's state forbids it) and nothing is written.
pub async fn correct_post(
    PageRequest(app, access, csrf): ClinicPage,
    uri: axum::http::Uri,
    RecordId(id): RecordId<PaymentId>,
    AppForm(post): AppForm<CorrectionPost>,
) -> Result<Response, AppError> {
    access.require(Permission::CorrectPayments)?;
    let kind = kind_of(uri.path());
    let (form, header, mut errors) = CorrectionForm::parse(post, kind, recorder(&access))?;
    let now = app.clock.now();
    let entry = access.audit_entry(now, Action::Create);
    let amount = form.amount.clone();
    let result = access
        .tenant
        .with(|conn| payments::correct_typed(&conn, id, kind, &amount, header, now, entry))
        .await;
    match result {
        Ok(Some(cid)) => {
            let to = format!("/c/{}/corrections/{cid}/receipt", access.slug);
            return Ok(Redirect::to(&to).into_response());
        }
        Ok(None) => {}
        Err(ClinicError::NotFound) => return Err(AppError::NotFound),
        Err(e) => errors.absorb(e)?,
    }
    let status = errors.status();
    let page = CorrectPage::load(&app, &access, csrf, (id, kind), form, errors).await?;
    crate::views::respond::html(status, &page)
}

impl CorrectionForm {
    /// The posted form, kept to show again, with the correction's header when its
    /// method and reason are right, and the errors found.
    fn parse(
        post: CorrectionPost,
        kind: CorrectionKind,
        by: Recorder,
    ) -> Result<(Self, Option<CorrectionHeader>, FormErrors), AppError> {
        let form = Self {
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
        let header = errors.is_empty().then(|| CorrectionHeader {
            method,
            reason: form.reason.clone(),
            by,
        });
        Ok((form, header, errors))
    }
}

#[derive(Template)]
#[template(path = "correction_receipt.html")]
struct CorrectionReceiptPage {
    frame: ClinicFrame,
    head: Letterhead,
    refund: bool,
    receipt_number: i64,
    payment_id: PaymentId,
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
    RecordRequest(app, access, csrf, id): RecordRequest<CorrectionId>,
) -> Result<Response, AppError> {
    access.require(Permission::CorrectPayments)?;
    let (clinic, (s, c)) = printed(&app, &access, move |conn, entry| {
        payments::print_correction(conn, id, entry)
    })
    .await?;
    let page = CorrectionReceiptPage {
        head: Letterhead::new(clinic.name.clone(), &s),
        frame: ClinicFrame::new(&access, clinic.name, csrf, "payments"),
        refund: c.kind == CorrectionKind::Refund,
        receipt_number: c.receipt_number,
        payment_id: c.payment_id,
        payment_receipt_number: c.payment_receipt_number,
        when: printed_time(&s, c.recorded_at),
        patient_name: c.patient_name.clone(),
        patient_number: c.patient_number,
        method: c.method.label(),
        amount: s.money(c.amount_minor),
        reason: c.reason.clone(),
        recorded_by: c.recorded_by_name.clone(),
    };
    crate::views::respond::page(&page)
}
