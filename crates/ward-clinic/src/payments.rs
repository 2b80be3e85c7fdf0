//! Payments and their receipts, and the collection report.
//!
//! Amounts are integer minor units of the clinic's currency (never floats): a payment's
//! amount is the sum of its receipt's items. Receipt numbers are the clinic's own
//! sequence, assigned inside the write transaction so two payments cannot share one.
//!
//! A payment is never changed or deleted. It is corrected by a refund (part or all of
//! the money given back) or a void (the payment cancelled entirely), each a row of its
//! own in `payment_corrections` with its own receipt number from the same sequence, a
//! method, a required reason, who and when. Balances and the collection report subtract
//! corrections; see [`correct`] for the rules.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use ward_core::{format_time, parse_time};
use ward_tenancy::Db;

use crate::ClinicError;
use crate::audit::{self, Entry};
use crate::ids::{CorrectionId, PatientId, PaymentId, VisitId};

/// How the money came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// Notes and coins.
    Cash,
    /// Debit or credit card.
    Card,
    /// Mobile money or UPI.
    Mobile,
    /// Bank transfer.
    BankTransfer,
    /// Anything else (say what in the reference).
    Other,
}

impl Method {
    /// Every method, in form order.
    pub const ALL: [Method; 5] = [
        Self::Cash,
        Self::Card,
        Self::Mobile,
        Self::BankTransfer,
        Self::Other,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cash => "cash",
            Self::Card => "card",
            Self::Mobile => "mobile",
            Self::BankTransfer => "bank_transfer",
            Self::Other => "other",
        }
    }

    /// How people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Cash => "Cash",
            Self::Card => "Card",
            Self::Mobile => "Mobile / UPI",
            Self::BankTransfer => "Bank transfer",
            Self::Other => "Other",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.label())
    }
}

/// One line of a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What was paid for.
    pub description: String,
    /// How much, in minor units (> 0).
    pub amount_minor: i64,
}

/// A payment to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    /// Who paid (patient row id).
    pub patient_id: PatientId,
    /// The visit it is for, if any.
    pub visit_id: Option<VisitId>,
    /// How.
    pub method: Method,
    /// Card slip, transaction id… (at most 100 characters).
    pub reference: String,
    /// The receipt's lines (1 to 20); the amount is their sum.
    pub items: Vec<Item>,
    /// ISO code of the currency the amounts are in.
    pub currency: String,
    /// Who recorded it (control-plane user id).
    pub recorded_by_id: String,
    /// Their name.
    pub recorded_by_name: String,
}

/// A recorded payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Row id.
    pub id: PaymentId,
    /// The clinic's receipt number.
    pub receipt_number: i64,
    /// Who paid.
    pub patient_id: PatientId,
    /// Their clinic number.
    pub patient_number: i64,
    /// Their name.
    pub patient_name: String,
    /// The visit it is for, if any.
    pub visit_id: Option<VisitId>,
    /// Total, in minor units.
    pub amount_minor: i64,
    /// ISO currency code.
    pub currency: String,
    /// How.
    pub method: Method,
    /// Reference.
    pub reference: String,
    /// Who recorded it (user id).
    pub recorded_by_id: String,
    /// Their name.
    pub recorded_by_name: String,
    /// When (UTC).
    pub received_at: DateTime<Utc>,
    /// The receipt's lines (empty in lists; filled by [`get`]).
    pub items: Vec<Item>,
    /// The sum of its refunds, in minor units.
    pub refunded_minor: i64,
    /// Whether it was voided.
    pub voided: bool,
}

impl Payment {
    /// What is still held of it: its amount less refunds, nothing once voided.
    pub fn remaining_minor(&self) -> i64 {
        if self.voided {
            0
        } else {
            self.amount_minor.saturating_sub(self.refunded_minor)
        }
    }
}

/// Checks a receipt line's text.
pub fn check_description(d: &str) -> Result<String, ClinicError> {
    let d = d.trim();
    if d.is_empty() {
        return Err(ClinicError::invalid(
            "items",
            "Describe each item (e.g. Consultation).",
        ));
    }
    if d.chars().count() > 120 || d.chars().any(char::is_control) {
        return Err(ClinicError::invalid(
            "items",
            "An item's description is at most 120 characters.",
        ));
    }
    Ok(d.to_owned())
}

fn check(new: &NewPayment) -> Result<i64, ClinicError> {
    if new.items.is_empty() {
        return Err(ClinicError::invalid(
            "items",
            "Add at least one item with an amount.",
        ));
    }
    if new.items.len() > 20 {
        return Err(ClinicError::invalid(
            "items",
            "A receipt has at most 20 items.",
        ));
    }
    let mut total: i64 = 0;
    for item in &new.items {
        check_description(&item.description)?;
        if item.amount_minor <= 0 {
            return Err(ClinicError::invalid(
                "items",
                "Each amount must be more than zero.",
            ));
        }
        total = total
            .checked_add(item.amount_minor)
            .ok_or_else(|| ClinicError::invalid("items", "That total is too large."))?;
    }
    // Far beyond any clinic bill; keeps every sum in the reports far from overflow.
    if total > 1_000_000_000_000 {
        return Err(ClinicError::invalid("items", "That total is too large."));
    }
    if new.reference.trim().chars().count() > 100 || new.reference.chars().any(char::is_control) {
        return Err(ClinicError::invalid(
            "reference",
            "A reference is at most 100 characters, on one line.",
        ));
    }
    Ok(total)
}

/// Records a payment with the next receipt number, in one transaction with its audit row
/// (`entry`, action `create`; the entity is set here). Returns the new payment's id.
pub fn record(
    conn: &Db,
    new: &NewPayment,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<PaymentId, ClinicError> {
    let total = check(new)?;
    let new = new.clone();
    audit::in_transaction(conn, |tx| {
        let mut rows = tx.query("SELECT 1 FROM patients WHERE id = ?1", [new.patient_id])?;
        if rows.next()?.is_none() {
            return Err(ClinicError::invalid(
                "patient",
                "Choose a registered patient.",
            ));
        }
        drop(rows);
        crate::rights::check_processable(&tx, new.patient_id)?;
        if let Some(visit) = new.visit_id {
            // Visits may not exist in this clinic's schema yet; then no visit can be named.
            let mut has = tx.query(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'visits'",
                (),
            )?;
            let table = has.next()?.is_some();
            drop(has);
            let found = if table {
                // The visit must be this patient's; should the visits table not carry a
                // patient column, its id alone is checked.
                match tx.query(
                    "SELECT 1 FROM visits WHERE id = ?1 AND patient_id = ?2",
                    ward_tenancy::sql::params![visit, new.patient_id],
                ) {
                    Ok(mut rows) => rows.next()?.is_some(),
                    Err(_) => {
                        let mut rows = tx.query("SELECT 1 FROM visits WHERE id = ?1", [visit])?;
                        rows.next()?.is_some()
                    }
                }
            } else {
                false
            };
            if !found {
                return Err(ClinicError::invalid("visit", "There is no such visit."));
            }
        }
        let mut rows = tx
            .query(
                &format!("INSERT INTO payments (receipt_number, patient_id, visit_id, amount_minor, currency, method, reference, recorded_by_id, recorded_by_name, received_at) \
                 VALUES (({NEXT_RECEIPT}), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id, receipt_number"),
                ward_tenancy::sql::params![
                    new.patient_id,
                    new.visit_id,
                    total,
                    new.currency.clone(),
                    new.method.as_str(),
                    new.reference.trim().to_owned(),
                    new.recorded_by_id.clone(),
                    new.recorded_by_name.clone(),
                    format_time(at)
                ],
            )?;
        let row = rows.next()?.ok_or(ClinicError::NotFound)?;
        let (id, receipt): (PaymentId, i64) = (row.get(0)?, row.get(1)?);
        drop(rows);
        for (i, item) in new.items.iter().enumerate() {
            tx.execute(
                "INSERT INTO payment_items (payment_id, position, description, amount_minor) VALUES (?1, ?2, ?3, ?4)",
                ward_tenancy::sql::params![id, i64::try_from(i).unwrap_or(0) + 1, check_description(&item.description)?, item.amount_minor],
            )?;
        }
        audit::record(
            &tx,
            &entry.entity("payment", id).detail(&format!(
                "receipt {receipt}, patient {}, {} by {}",
                new.patient_id,
                money(&new.currency, total),
                new.method.as_str()
            )),
        )?;
        Ok(id)
    })
}

/// The next receipt number: one sequence across payments and their corrections.
const NEXT_RECEIPT: &str = "SELECT max((SELECT coalesce(max(receipt_number), 0) FROM payments), \
                            (SELECT coalesce(max(receipt_number), 0) FROM payment_corrections)) + 1";

/// An amount as people read it (`₹450.00`), through the one money formatter; a
/// currency this build does not know is named by its code.
pub fn money(currency: &str, minor: i64) -> String {
    crate::settings::Currency::parse(currency).map_or_else(
        || format!("{minor} {currency} (minor units)"),
        |c| c.format(minor),
    )
}

const SELECT: &str = "SELECT y.id, y.receipt_number, y.patient_id, p.number, p.full_name, y.visit_id, y.amount_minor, y.currency, y.method, y.reference, y.recorded_by_id, y.recorded_by_name, y.received_at, \
                      (SELECT coalesce(sum(c.amount_minor), 0) FROM payment_corrections c WHERE c.payment_id = y.id AND c.kind = 'refund'), \
                      EXISTS (SELECT 1 FROM payment_corrections c WHERE c.payment_id = y.id AND c.kind = 'void') \
                      FROM payments y JOIN patients p ON p.id = y.patient_id";

fn from_row(row: &ward_tenancy::sql::Row) -> Result<Payment, ClinicError> {
    let method: String = row.get(8)?;
    let at: String = row.get(12)?;
    Ok(Payment {
        id: row.get(0)?,
        receipt_number: row.get(1)?,
        patient_id: row.get(2)?,
        patient_number: row.get(3)?,
        patient_name: row.get(4)?,
        visit_id: row.get(5)?,
        amount_minor: row.get(6)?,
        currency: row.get(7)?,
        method: Method::parse(&method).unwrap_or(Method::Other),
        reference: row.get(9)?,
        recorded_by_id: row.get(10)?,
        recorded_by_name: row.get(11)?,
        received_at: parse_time(&at).unwrap_or_default(),
        items: Vec::new(),
        refunded_minor: row.get(13)?,
        voided: row.get::<i64>(14)? != 0,
    })
}

/// The payment with row id `id`, with its items.
pub fn get(conn: &Db, id: PaymentId) -> Result<Payment, ClinicError> {
    let mut payment = conn
        .row(&format!("{SELECT} WHERE y.id = ?1"), [id], from_row)?
        .ok_or(ClinicError::NotFound)?;
    payment.items = conn.rows(
        "SELECT description, amount_minor FROM payment_items WHERE payment_id = ?1 ORDER BY position",
        [id],
        |row| {
            Ok::<_, ClinicError>(Item {
                description: row.get(0)?,
                amount_minor: row.get(1)?,
            })
        },
    )?;
    Ok(payment)
}

/// Payments received between `from` (inclusive) and `to` (exclusive), oldest first.
pub fn between(
    conn: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Payment>, ClinicError> {
    conn.rows(
        &format!(
            "{SELECT} WHERE y.received_at >= ?1 AND y.received_at < ?2 ORDER BY y.received_at, y.id"
        ),
        [format_time(from), format_time(to)],
        from_row,
    )
}

/// Every payment of a patient, newest first (for the patient page).
pub fn for_patient(conn: &Db, patient_id: PatientId) -> Result<Vec<Payment>, ClinicError> {
    conn.rows(
        &format!("{SELECT} WHERE y.patient_id = ?1 ORDER BY y.received_at DESC, y.id DESC"),
        [patient_id],
        from_row,
    )
}

/// What a patient was charged (their visits' fees) and what they paid, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    /// The sum of the fees of their visits.
    pub charged_minor: i64,
    /// What they paid, net: their payments less refunds and voids.
    pub paid_minor: i64,
    /// What of their payments was refunded or voided (already taken off `paid_minor`).
    pub refunded_minor: i64,
}

impl Account {
    /// What they still owe: charges less net payments (negative when they are in credit).
    pub fn balance_minor(&self) -> i64 {
        self.charged_minor.saturating_sub(self.paid_minor)
    }
}

/// Patient `patient_id`'s charges and payments (net of refunds and voids), in one query.
pub fn account(conn: &Db, patient_id: PatientId) -> Result<Account, ClinicError> {
    let account = conn.row(
        "SELECT (SELECT coalesce(sum(fee_minor), 0) FROM visits WHERE patient_id = ?1), \
                    (SELECT coalesce(sum(amount_minor), 0) FROM payments WHERE patient_id = ?1), \
                    (SELECT coalesce(sum(c.amount_minor), 0) FROM payment_corrections c JOIN payments y ON y.id = c.payment_id WHERE y.patient_id = ?1)",
        [patient_id],
        |row| {
            let paid: i64 = row.get(1)?;
            let corrected: i64 = row.get(2)?;
            Ok::<_, ClinicError>(Account {
                charged_minor: row.get(0)?,
                paid_minor: paid.saturating_sub(corrected),
                refunded_minor: corrected,
            })
        },
    )?;
    Ok(account.unwrap_or_default())
}

/// What a correction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrectionKind {
    /// Money given back: part or all of what remains of the payment.
    Refund,
    /// The payment cancelled entirely (entered by mistake, never received…).
    Void,
}

impl CorrectionKind {
    /// The stored form (also the audit entity type).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refund => "refund",
            Self::Void => "void",
        }
    }

    /// How people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Refund => "Refund",
            Self::Void => "Void",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Refund, Self::Void]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for CorrectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.label())
    }
}

/// A refund or void to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCorrection {
    /// The payment corrected (row id).
    pub payment_id: PaymentId,
    /// Refund or void.
    pub kind: CorrectionKind,
    /// A refund's amount in minor units (> 0, at most what remains); ignored for a void,
    /// which is always the whole payment.
    pub amount_minor: i64,
    /// How a refund is paid back; `None` (and always for a void) means the payment's own.
    pub method: Option<Method>,
    /// Why (required; at most 500 characters).
    pub reason: String,
    /// Who recorded it (control-plane user id).
    pub recorded_by_id: String,
    /// Their name.
    pub recorded_by_name: String,
}

/// A recorded refund or void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// Row id.
    pub id: CorrectionId,
    /// Refund or void.
    pub kind: CorrectionKind,
    /// Its own receipt number.
    pub receipt_number: i64,
    /// The payment corrected.
    pub payment_id: PaymentId,
    /// That payment's receipt number.
    pub payment_receipt_number: i64,
    /// Who paid.
    pub patient_id: PatientId,
    /// Their clinic number.
    pub patient_number: i64,
    /// Their name.
    pub patient_name: String,
    /// Amount given back or cancelled, in minor units (positive).
    pub amount_minor: i64,
    /// ISO currency code.
    pub currency: String,
    /// How the money went back (a void: the payment's method).
    pub method: Method,
    /// Why.
    pub reason: String,
    /// Who recorded it (user id).
    pub recorded_by_id: String,
    /// Their name.
    pub recorded_by_name: String,
    /// When (UTC).
    pub recorded_at: DateTime<Utc>,
}

/// The longest reason accepted.
pub const MAX_REASON: usize = 500;

/// Checks a correction's reason: required, at most [`MAX_REASON`] characters.
pub fn check_reason(reason: &str) -> Result<String, ClinicError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ClinicError::invalid(
            "reason",
            "Say why (e.g. charged twice, treatment not given).",
        ));
    }
    if reason.chars().count() > MAX_REASON
        || reason
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ClinicError::invalid(
            "reason",
            format!("A reason is at most {MAX_REASON} characters."),
        ));
    }
    Ok(reason.to_owned())
}

/// Records a refund or void of a payment, with the next receipt number, in one
/// transaction with its audit row (`entry`, action `create`, entity `refund` or `void`
/// with the new row's id; the entity is set here). Returns the new row's id.
///
/// The rules, checked inside the transaction so two desks cannot both pass them:
/// a refund is more than zero and at most what remains (the amount less earlier
/// refunds); a void cancels the whole payment and is refused once any of it was
/// refunded (refund the rest instead); nothing more can be done to a voided payment.
/// The audit row names the ids, the amount as people read it and the method; the
/// reason, free text, stays on the correction's row and the audit row only says it is
/// kept there.
pub fn correct(
    conn: &Db,
    new: &NewCorrection,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<CorrectionId, ClinicError> {
    let reason = check_reason(&new.reason)?;
    if new.kind == CorrectionKind::Refund && new.amount_minor <= 0 {
        return Err(ClinicError::invalid(
            "amount",
            "Enter an amount more than zero.",
        ));
    }
    let new = new.clone();
    audit::in_transaction(conn, |tx| {
        let payment = get(&tx, new.payment_id)?;
        if payment.voided {
            return Err(ClinicError::Conflict(format!(
                "Receipt {} was voided: it cannot be refunded or voided again.",
                payment.receipt_number
            )));
        }
        let remaining = payment.remaining_minor();
        let amount = match new.kind {
            CorrectionKind::Refund => {
                if remaining <= 0 {
                    return Err(ClinicError::Conflict(format!(
                        "Receipt {} was refunded in full: nothing remains to refund.",
                        payment.receipt_number
                    )));
                }
                if new.amount_minor > remaining {
                    return Err(ClinicError::invalid(
                        "amount",
                        format!(
                            "At most {} remains to refund of this payment.",
                            money(&payment.currency, remaining)
                        ),
                    ));
                }
                new.amount_minor
            }
            CorrectionKind::Void => {
                if payment.refunded_minor > 0 {
                    return Err(ClinicError::Conflict(format!(
                        "Part of receipt {} was refunded, so it cannot be voided: refund the remaining {} instead.",
                        payment.receipt_number,
                        money(&payment.currency, remaining)
                    )));
                }
                payment.amount_minor
            }
        };
        let method = match new.kind {
            CorrectionKind::Refund => new.method.unwrap_or(payment.method),
            CorrectionKind::Void => payment.method,
        };
        let mut rows = tx.query(
            &format!(
                "INSERT INTO payment_corrections (payment_id, kind, receipt_number, amount_minor, currency, method, reason, recorded_by_id, recorded_by_name, recorded_at) \
                 VALUES (?1, ?2, ({NEXT_RECEIPT}), ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id, receipt_number"
            ),
            ward_tenancy::sql::params![
                payment.id,
                new.kind.as_str(),
                amount,
                payment.currency.clone(),
                method.as_str(),
                reason.clone(),
                new.recorded_by_id.clone(),
                new.recorded_by_name.clone(),
                format_time(at)
            ],
        )?;
        let row = rows.next()?.ok_or(ClinicError::NotFound)?;
        let (id, receipt): (CorrectionId, i64) = (row.get(0)?, row.get(1)?);
        drop(rows);
        audit::record(
            &tx,
            &entry.entity(new.kind.as_str(), id).detail(&format!(
                "{} receipt {receipt} of payment {} (receipt {}), {} by {}; reason kept on {} {id} ({} characters)",
                new.kind.as_str(),
                payment.id,
                payment.receipt_number,
                money(&payment.currency, amount),
                method.as_str(),
                new.kind.as_str(),
                reason.chars().count()
            )),
        )?;
        Ok(id)
    })
}

const SELECT_CORRECTION: &str = "SELECT c.id, c.kind, c.receipt_number, c.payment_id, y.receipt_number, y.patient_id, p.number, p.full_name, c.amount_minor, c.currency, c.method, c.reason, c.recorded_by_id, c.recorded_by_name, c.recorded_at \
                                 FROM payment_corrections c JOIN payments y ON y.id = c.payment_id JOIN patients p ON p.id = y.patient_id";

fn correction_from_row(row: &ward_tenancy::sql::Row) -> Result<Correction, ClinicError> {
    let kind: String = row.get(1)?;
    let method: String = row.get(10)?;
    let at: String = row.get(14)?;
    Ok(Correction {
        id: row.get(0)?,
        kind: CorrectionKind::parse(&kind).unwrap_or(CorrectionKind::Refund),
        receipt_number: row.get(2)?,
        payment_id: row.get(3)?,
        payment_receipt_number: row.get(4)?,
        patient_id: row.get(5)?,
        patient_number: row.get(6)?,
        patient_name: row.get(7)?,
        amount_minor: row.get(8)?,
        currency: row.get(9)?,
        method: Method::parse(&method).unwrap_or(Method::Other),
        reason: row.get(11)?,
        recorded_by_id: row.get(12)?,
        recorded_by_name: row.get(13)?,
        recorded_at: parse_time(&at).unwrap_or_default(),
    })
}

/// The refund or void with row id `id`.
pub fn get_correction(conn: &Db, id: CorrectionId) -> Result<Correction, ClinicError> {
    conn.rows(
        &format!("{SELECT_CORRECTION} WHERE c.id = ?1"),
        [id],
        correction_from_row,
    )?
    .pop()
    .ok_or(ClinicError::NotFound)
}

/// The refunds and void of payment `payment_id`, oldest first.
pub fn corrections_of(conn: &Db, payment_id: PaymentId) -> Result<Vec<Correction>, ClinicError> {
    conn.rows(
        &format!("{SELECT_CORRECTION} WHERE c.payment_id = ?1 ORDER BY c.recorded_at, c.id"),
        [payment_id],
        correction_from_row,
    )
}

/// Refunds and voids recorded between `from` (inclusive) and `to` (exclusive), oldest
/// first, whenever the payments they correct were received.
pub fn corrections_between(
    conn: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Correction>, ClinicError> {
    conn.rows(
        &format!(
            "{SELECT_CORRECTION} WHERE c.recorded_at >= ?1 AND c.recorded_at < ?2 ORDER BY c.recorded_at, c.id"
        ),
        [format_time(from), format_time(to)],
        correction_from_row,
    )
}

/// A line of the collection report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Total {
    /// What is totalled (a method's label, a staff member's name, a date).
    pub label: String,
    /// How many payments.
    pub count: i64,
    /// Their sum (gross), in minor units.
    pub amount_minor: i64,
    /// How many refunds.
    pub refund_count: i64,
    /// Their sum, in minor units.
    pub refunds_minor: i64,
    /// How many voids.
    pub void_count: i64,
    /// Their sum, in minor units.
    pub voids_minor: i64,
}

impl Total {
    /// What was kept: gross less refunds and voids.
    pub fn net_minor(&self) -> i64 {
        self.amount_minor
            .saturating_sub(self.refunds_minor)
            .saturating_sub(self.voids_minor)
    }

    fn add(&mut self, movement: Movement) {
        match movement {
            Movement::Payment(a) => {
                self.count += 1;
                self.amount_minor = self.amount_minor.saturating_add(a);
            }
            Movement::Refund(a) => {
                self.refund_count += 1;
                self.refunds_minor = self.refunds_minor.saturating_add(a);
            }
            Movement::Void(a) => {
                self.void_count += 1;
                self.voids_minor = self.voids_minor.saturating_add(a);
            }
        }
    }
}

/// Totals of a list of payments and corrections: per local day, per method, per staff
/// member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Collection {
    /// Per day in the clinic's timezone, oldest first.
    pub by_day: Vec<Total>,
    /// Per method, in [`Method::ALL`] order, only methods used.
    pub by_method: Vec<Total>,
    /// Per staff member who recorded payments or corrections, by name.
    pub by_staff: Vec<Total>,
    /// Everything.
    pub total: Total,
}

#[derive(Debug, Clone, Copy)]
enum Movement {
    Payment(i64),
    Refund(i64),
    Void(i64),
}

fn add(list: &mut Vec<(String, Total)>, key: String, label: String, movement: Movement) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, t)) => t.add(movement),
        None => {
            let mut t = Total {
                label,
                ..Total::default()
            };
            t.add(movement);
            list.push((key, t));
        }
    }
}

/// The collection report of `payments` and `corrections`, days in `tz`. A correction
/// counts on the day it was recorded, under its own method and the staff member who
/// recorded it, whenever the payment it corrects was received.
pub fn collection(payments: &[Payment], corrections: &[Correction], tz: Tz) -> Collection {
    let (mut days, mut methods, mut staff) = (Vec::new(), Vec::new(), Vec::new());
    let mut total = Total {
        label: "Total".into(),
        ..Total::default()
    };
    let movements = payments
        .iter()
        .map(|p| {
            (
                p.received_at,
                p.method,
                (&p.recorded_by_id, &p.recorded_by_name),
                Movement::Payment(p.amount_minor),
            )
        })
        .chain(corrections.iter().map(|c| {
            (
                c.recorded_at,
                c.method,
                (&c.recorded_by_id, &c.recorded_by_name),
                match c.kind {
                    CorrectionKind::Refund => Movement::Refund(c.amount_minor),
                    CorrectionKind::Void => Movement::Void(c.amount_minor),
                },
            )
        }));
    for (at, method, (who_id, who_name), movement) in movements {
        let day: NaiveDate = at.with_timezone(&tz).date_naive();
        add(
            &mut days,
            day.to_string(),
            day.format("%a %-d %b %Y").to_string(),
            movement,
        );
        add(
            &mut methods,
            method.as_str().to_owned(),
            method.label().to_owned(),
            movement,
        );
        add(&mut staff, who_id.clone(), who_name.clone(), movement);
        total.add(movement);
    }
    days.sort_by(|a, b| a.0.cmp(&b.0));
    methods.sort_by_key(|(k, _)| Method::parse(k));
    staff.sort_by(|a, b| a.1.label.cmp(&b.1.label).then(a.0.cmp(&b.0)));
    Collection {
        by_day: days.into_iter().map(|(_, t)| t).collect(),
        by_method: methods.into_iter().map(|(_, t)| t).collect(),
        by_staff: staff.into_iter().map(|(_, t)| t).collect(),
        total,
    }
}

/// Records that receipt `id` was produced for printing (action `print`).
pub fn record_print(
    conn: &Db,
    id: PaymentId,
    receipt_number: i64,
    entry: Entry,
) -> Result<(), ClinicError> {
    audit::in_transaction(conn, |tx| {
        audit::record(
            &tx,
            &entry
                .entity("payment", id)
                .detail(&format!("receipt {receipt_number}")),
        )?;
        Ok(())
    })
}

/// Records that the receipt of refund or void `id` was produced for printing (action
/// `print`).
pub fn record_correction_print(conn: &Db, c: &Correction, entry: Entry) -> Result<(), ClinicError> {
    audit::in_transaction(conn, |tx| {
        audit::record(
            &tx,
            &entry.entity(c.kind.as_str(), c.id).detail(&format!(
                "{} receipt {}",
                c.kind.as_str(),
                c.receipt_number
            )),
        )?;
        Ok(())
    })
}

/// Who records a payment or a correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorder {
    /// Control-plane user id.
    pub id: String,
    /// Their name.
    pub name: String,
}

/// A payment's fields other than its items, already checked by the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentHeader {
    /// Who paid (patient row id).
    pub patient_id: PatientId,
    /// The visit it is for, if any.
    pub visit_id: Option<VisitId>,
    /// How.
    pub method: Method,
    /// Card slip, transaction id…
    pub reference: String,
    /// Who records it.
    pub by: Recorder,
}

/// Reads typed receipt lines (description, amount as typed) in the clinic's currency,
/// skipping blank rows, and records the payment (see [`record`]). With `header` `None`
/// the rest of the form was already refused: only the items are checked, and nothing is
/// written. Returns the new payment's id when one was recorded.
pub fn record_typed(
    conn: &Db,
    typed: &[(String, String)],
    header: Option<PaymentHeader>,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<Option<PaymentId>, ClinicError> {
    let s = crate::settings::load(conn)?;
    let mut items = Vec::new();
    for (description, amount) in typed {
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
            description: check_description(description)?,
            amount_minor,
        });
    }
    if items.is_empty() {
        return Err(ClinicError::invalid(
            "items",
            "Add at least one item with an amount.",
        ));
    }
    let Some(h) = header else {
        return Ok(None);
    };
    let new = NewPayment {
        patient_id: h.patient_id,
        visit_id: h.visit_id,
        method: h.method,
        reference: h.reference,
        items,
        currency: s.currency.code.to_owned(),
        recorded_by_id: h.by.id,
        recorded_by_name: h.by.name,
    };
    record(conn, &new, at, entry).map(Some)
}

/// A refund's or void's fields other than its amount, already checked by the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrectionHeader {
    /// How a refund is paid back; `None` means the payment's own.
    pub method: Option<Method>,
    /// Why.
    pub reason: String,
    /// Who records it.
    pub by: Recorder,
}

/// Records a refund or void of payment `payment_id` with the amount as typed (a void
/// ignores it), see [`correct`]. A missing payment is [`ClinicError::NotFound`] before
/// anything else is judged; with `header` `None` the rest of the form was already
/// refused: only the amount is checked, and nothing is written. Returns the new row's id
/// when one was recorded.
pub fn correct_typed(
    conn: &Db,
    payment_id: PaymentId,
    kind: CorrectionKind,
    amount: &str,
    header: Option<CorrectionHeader>,
    at: DateTime<Utc>,
    entry: Entry,
) -> Result<Option<CorrectionId>, ClinicError> {
    let s = crate::settings::load(conn)?;
    get(conn, payment_id)?;
    let amount_minor = match kind {
        CorrectionKind::Void => 0,
        CorrectionKind::Refund => {
            let amount = amount.trim();
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
    let Some(h) = header else {
        return Ok(None);
    };
    let new = NewCorrection {
        payment_id,
        kind,
        amount_minor,
        method: h.method,
        reason: h.reason,
        recorded_by_id: h.by.id,
        recorded_by_name: h.by.name,
    };
    correct(conn, &new, at, entry).map(Some)
}

/// Why payment `p` cannot take a correction of `kind` any more (said before anyone
/// types), or `None` when it can: the rules of [`correct`], in words.
pub fn correction_blocked(
    p: &Payment,
    kind: CorrectionKind,
    s: &crate::settings::ClinicSettings,
) -> Option<String> {
    if p.voided {
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
    }
}

/// The payments and corrections of a range of local days, as the list shows them.
#[derive(Debug, Clone)]
pub struct Range {
    /// The clinic's settings (timezone, currency).
    pub settings: crate::settings::ClinicSettings,
    /// The first day shown.
    pub from: NaiveDate,
    /// The last day shown.
    pub to: NaiveDate,
    /// Why the range shown is not the one asked for.
    pub notice: Option<String>,
    /// The payments received in it.
    pub payments: Vec<Payment>,
    /// The refunds and voids recorded in it.
    pub corrections: Vec<Correction>,
}

/// The payments and corrections from local day `from` to `to` (`YYYY-MM-DD`, inclusive,
/// either order; blank is today at `now`). An unreadable date is today, and a range of
/// more than a year is cut to the year before `to`, each with a notice.
pub fn range(
    conn: &Db,
    now: DateTime<Utc>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Range, ClinicError> {
    let settings = crate::settings::load(conn)?;
    let today = settings.local(now).date_naive();
    let mut notice = None;
    let mut day = |text: Option<&str>| -> NaiveDate {
        match text.map(str::trim) {
            None | Some("") => today,
            Some(t) => crate::appointments::parse_date("from", t).unwrap_or_else(|_| {
                notice = Some(
                    "A date could not be read (use YYYY-MM-DD); showing today instead.".to_owned(),
                );
                today
            }),
        }
    };
    let (mut from, mut to) = (day(from), day(to));
    if to < from {
        std::mem::swap(&mut from, &mut to);
    }
    if (to - from).num_days() > 366 {
        from = to - chrono::TimeDelta::days(366);
        notice = Some("At most a year is shown at once.".to_owned());
    }
    let start = crate::appointments::day_bounds(settings.timezone, from).0;
    let end = crate::appointments::day_bounds(settings.timezone, to).1;
    Ok(Range {
        payments: between(conn, start, end)?,
        corrections: corrections_between(conn, start, end)?,
        settings,
        from,
        to,
        notice,
    })
}

/// A payment with the clinic's settings, to show it.
pub fn get_with_settings(
    conn: &Db,
    id: PaymentId,
) -> Result<(crate::settings::ClinicSettings, Payment), ClinicError> {
    Ok((crate::settings::load(conn)?, get(conn, id)?))
}

/// A receipt to print: the clinic's settings, payment `id` with its refunds and void;
/// producing it is recorded with `entry` (see [`record_print`]).
pub fn print_receipt(
    conn: &Db,
    id: PaymentId,
    entry: Entry,
) -> Result<(crate::settings::ClinicSettings, Payment, Vec<Correction>), ClinicError> {
    let s = crate::settings::load(conn)?;
    let p = get(conn, id)?;
    let fixes = corrections_of(conn, p.id)?;
    record_print(conn, p.id, p.receipt_number, entry)?;
    Ok((s, p, fixes))
}

/// The receipt of refund or void `id` to print, with the clinic's settings; producing
/// it is recorded with `entry` (see [`record_correction_print`]).
pub fn print_correction(
    conn: &Db,
    id: CorrectionId,
    entry: Entry,
) -> Result<(crate::settings::ClinicSettings, Correction), ClinicError> {
    let s = crate::settings::load(conn)?;
    let c = get_correction(conn, id)?;
    record_correction_print(conn, &c, entry)?;
    Ok((s, c))
}

/// What the new-payment form shows besides its fields: the clinic's settings (its
/// currency) and the patient search (see [`crate::appointments::pick_patient`]).
pub fn new_payment_form(
    conn: &Db,
    query: &str,
    chosen: Option<PatientId>,
) -> Result<
    (
        crate::settings::ClinicSettings,
        crate::appointments::PatientPick,
    ),
    ClinicError,
> {
    Ok((
        crate::settings::load(conn)?,
        crate::appointments::pick_patient(conn, query, chosen)?,
    ))
}
