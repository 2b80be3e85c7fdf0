//! Payments and their receipts, and the collection report.
//!
//! Amounts are integer minor units of the clinic's currency (never floats): a payment's
//! amount is the sum of its receipt's items. Receipt numbers are the clinic's own
//! sequence, assigned inside the write transaction so two payments cannot share one.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use ward_core::{format_time, parse_time};
use ward_tenancy::Db;

use crate::ClinicError;
use crate::audit::{self, Entry};

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
    pub patient_id: i64,
    /// The visit it is for, if any.
    pub visit_id: Option<i64>,
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
    pub id: i64,
    /// The clinic's receipt number.
    pub receipt_number: i64,
    /// Who paid.
    pub patient_id: i64,
    /// Their clinic number.
    pub patient_number: i64,
    /// Their name.
    pub patient_name: String,
    /// The visit it is for, if any.
    pub visit_id: Option<i64>,
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
) -> Result<i64, ClinicError> {
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
                    [visit, new.patient_id],
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
                "INSERT INTO payments (receipt_number, patient_id, visit_id, amount_minor, currency, method, reference, recorded_by_id, recorded_by_name, received_at) \
                 VALUES ((SELECT coalesce(max(receipt_number), 0) + 1 FROM payments), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id, receipt_number",
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
        let (id, receipt): (i64, i64) = (row.get(0)?, row.get(1)?);
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
                // As people read money (₹450.00), not in minor units.
                crate::settings::Currency::parse(&new.currency).map_or_else(
                    || format!("{total} {} (minor units)", new.currency),
                    |c| c.format(total)
                ),
                new.method.as_str()
            )),
        )?;
        Ok(id)
    })
}

const SELECT: &str = "SELECT y.id, y.receipt_number, y.patient_id, p.number, p.full_name, y.visit_id, y.amount_minor, y.currency, y.method, y.reference, y.recorded_by_id, y.recorded_by_name, y.received_at \
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
    })
}

fn collect(mut rows: ward_tenancy::DbRows) -> Result<Vec<Payment>, ClinicError> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(&row)?);
    }
    Ok(out)
}

/// The payment with row id `id`, with its items.
pub fn get(conn: &Db, id: i64) -> Result<Payment, ClinicError> {
    let rows = conn.query(&format!("{SELECT} WHERE y.id = ?1"), [id])?;
    let mut payment = collect(rows)?.pop().ok_or(ClinicError::NotFound)?;
    let mut rows = conn
        .query(
            "SELECT description, amount_minor FROM payment_items WHERE payment_id = ?1 ORDER BY position",
            [id],
        )?;
    while let Some(row) = rows.next()? {
        payment.items.push(Item {
            description: row.get(0)?,
            amount_minor: row.get(1)?,
        });
    }
    Ok(payment)
}

/// Payments received between `from` (inclusive) and `to` (exclusive), oldest first.
pub fn between(
    conn: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Payment>, ClinicError> {
    let rows = conn.query(
        &format!(
            "{SELECT} WHERE y.received_at >= ?1 AND y.received_at < ?2 ORDER BY y.received_at, y.id"
        ),
        [format_time(from), format_time(to)],
    )?;
    collect(rows)
}

/// Every payment of a patient, newest first (for the patient page).
pub fn for_patient(conn: &Db, patient_id: i64) -> Result<Vec<Payment>, ClinicError> {
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
    /// The sum of their payments.
    pub paid_minor: i64,
}

impl Account {
    /// What they still owe: charges less payments (negative when they are in credit).
    pub fn balance_minor(&self) -> i64 {
        self.charged_minor.saturating_sub(self.paid_minor)
    }
}

/// Patient `patient_id`'s charges and payments, in one query.
pub fn account(conn: &Db, patient_id: i64) -> Result<Account, ClinicError> {
    let account = conn.row(
        "SELECT (SELECT coalesce(sum(fee_minor), 0) FROM visits WHERE patient_id = ?1), \
                    (SELECT coalesce(sum(amount_minor), 0) FROM payments WHERE patient_id = ?1)",
        [patient_id],
        |row| {
            Ok::<_, ClinicError>(Account {
                charged_minor: row.get(0)?,
                paid_minor: row.get(1)?,
            })
        },
    )?;
    Ok(account.unwrap_or_default())
}

/// A line of the collection report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Total {
    /// What is totalled (a method's label, a staff member's name, a date).
    pub label: String,
    /// How many payments.
    pub count: i64,
    /// Their sum, in minor units.
    pub amount_minor: i64,
}

/// Totals of a list of payments: per local day, per method, per staff member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Collection {
    /// Per day in the clinic's timezone, oldest first.
    pub by_day: Vec<Total>,
    /// Per method, in [`Method::ALL`] order, only methods used.
    pub by_method: Vec<Total>,
    /// Per staff member who recorded payments, by name.
    pub by_staff: Vec<Total>,
    /// Everything.
    pub total: Total,
}

fn add(list: &mut Vec<(String, Total)>, key: String, label: String, amount: i64) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, t)) => {
            t.count += 1;
            t.amount_minor = t.amount_minor.saturating_add(amount);
        }
        None => list.push((
            key,
            Total {
                label,
                count: 1,
                amount_minor: amount,
            },
        )),
    }
}

/// The collection report of `payments`, days in `tz`.
pub fn collection(payments: &[Payment], tz: Tz) -> Collection {
    let (mut days, mut methods, mut staff) = (Vec::new(), Vec::new(), Vec::new());
    let mut total = Total {
        label: "Total".into(),
        count: 0,
        amount_minor: 0,
    };
    for p in payments {
        let day: NaiveDate = p.received_at.with_timezone(&tz).date_naive();
        add(
            &mut days,
            day.to_string(),
            day.format("%a %-d %b %Y").to_string(),
            p.amount_minor,
        );
        add(
            &mut methods,
            p.method.as_str().to_owned(),
            p.method.label().to_owned(),
            p.amount_minor,
        );
        add(
            &mut staff,
            p.recorded_by_id.clone(),
            p.recorded_by_name.clone(),
            p.amount_minor,
        );
        total.count += 1;
        total.amount_minor = total.amount_minor.saturating_add(p.amount_minor);
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
    id: i64,
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
