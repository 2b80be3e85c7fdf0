//! Reading an export back into a new, freshly migrated clinic (docs/export-format.md,
//! "Import").
//!
//! The file is parsed and checked completely before anything is written; the rows then
//! go in one transaction with foreign keys checked at commit, and the imported audit
//! log must verify end to end. Any problem rolls everything back, and the caller
//! removes the new clinic, so a bad file creates nothing.

use std::collections::BTreeMap;
use std::io::Read;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use ward_tenancy::Db;
use ward_tenancy::sql::Value;

use crate::audit::{self, Action};
use crate::export::{self, ClinicInfo, FORMAT, StaffMember, VERSION, quote};

/// The longest text value an import accepts (1 MiB): no field Ward writes comes near it,
/// so anything longer is damage or an attempt to exhaust memory.
pub const MAX_TEXT: usize = 1024 * 1024;

/// A parsed export document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Always `ward-export`.
    pub format: String,
    /// Always 1 for this build.
    pub version: u32,
    /// The clinic exported.
    pub clinic: ClinicInfo,
    /// When.
    pub exported_at: String,
    /// By whom.
    #[serde(default)]
    pub exported_by: Option<String>,
    /// The tenant schema version of the exported clinic.
    pub schema_version: i64,
    /// Its staff list.
    pub staff: Vec<StaffMember>,
    /// In an archive's document only: the attachments' files the archive holds
    /// ([`crate::archive`]).
    #[serde(default)]
    pub files: Option<Vec<crate::archive::ArchiveFile>>,
    /// Every table: its columns and rows.
    pub tables: BTreeMap<String, Table>,
}

/// One table of an export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not an export this build can read; the message says why.
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error("writing the clinic failed: {0}")]
    Db(#[from] ward_tenancy::sql::Error),
}

impl From<audit::AuditError> for ImportError {
    fn from(e: audit::AuditError) -> Self {
        Self::Refused(format!("the audit log could not be written: {e}"))
    }
}

fn refused(msg: impl Into<String>) -> ImportError {
    ImportError::Refused(msg.into())
}

/// Parses and checks an export file: JSON syntax, completeness, `format`, `version`,
/// one value per column, value kinds and text sizes.
pub fn parse<R: Read>(reader: R) -> Result<Document, ImportError> {
    let doc: Document = serde_json::from_reader(std::io::BufReader::new(reader)).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Eof => refused(format!(
                "the file ends too early: it is not a complete Ward export (it may have been cut off): {e}"
            )),
            Category::Syntax => refused(format!("the file is not valid JSON: {e}")),
            Category::Data => refused(format!(
                "the file is not a Ward export this version can read: {e}"
            )),
            Category::Io => refused(format!("the file could not be read: {e}")),
        }
    })?;
    if doc.format != FORMAT {
        return Err(refused(format!(
            "the file's format is {:?}, not {FORMAT:?}: it is not a Ward export",
            doc.format
        )));
    }
    if doc.version != VERSION {
        return Err(refused(format!(
            "the file is a version {} export; this Ward reads version {VERSION}",
            doc.version
        )));
    }
    for (name, table) in &doc.tables {
        for (i, row) in table.rows.iter().enumerate() {
            if row.len() != table.columns.len() {
                return Err(refused(format!(
                    "table {name}, row {}: {} values for {} columns",
                    i + 1,
                    row.len(),
                    table.columns.len()
                )));
            }
            for v in row {
                check_value(name, i, v)?;
            }
        }
    }
    for s in &doc.staff {
        if [&s.name, &s.email, &s.user_id, &s.role]
            .iter()
            .any(|v| v.len() > MAX_TEXT)
        {
            return Err(refused("a staff entry holds an oversized value"));
        }
    }
    Ok(doc)
}

fn check_value(table: &str, row: usize, v: &serde_json::Value) -> Result<(), ImportError> {
    use serde_json::Value as J;
    let bad = |what: &str| refused(format!("table {table}, row {}: {what}", row + 1));
    match v {
        J::Null | J::Bool(_) | J::Number(_) => Ok(()),
        J::String(s) if s.len() > MAX_TEXT => Err(bad(&format!(
            "a text value of {} bytes is longer than the {MAX_TEXT} bytes allowed",
            s.len()
        ))),
        J::String(_) => Ok(()),
        J::Object(o) => match (o.len(), o.get("hex")) {
            (1, Some(J::String(h))) if h.len() <= 2 * MAX_TEXT && hex::decode(h).is_ok() => Ok(()),
            _ => Err(bad("an object value that is not {\"hex\": \"…\"}")),
        },
        J::Array(_) => Err(bad("an array where a single value belongs")),
    }
}

fn to_sql(v: &serde_json::Value) -> Result<Value, ImportError> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Integer(i64::from(*b)),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Integer(i),
            (None, Some(f)) => Value::Real(f),
            _ => return Err(refused(format!("the number {n} does not fit"))),
        },
        J::String(s) => Value::Text(s.clone()),
        J::Object(o) => match o.get("hex") {
            Some(J::String(h)) => {
                Value::Blob(hex::decode(h).map_err(|_| refused("a blob value is not hex"))?)
            }
            _ => return Err(refused("an object value that is not {\"hex\": \"…\"}")),
        },
        J::Array(_) => return Err(refused("an array where a single value belongs")),
    })
}

/// What an import wrote.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// Rows per table.
    pub tables: Vec<(String, u64)>,
}

/// Writes `doc` into the clinic behind `conn` — a new clinic, freshly migrated — in one
/// transaction, then appends an operator entry saying where the data came from.
///
/// Rows the new clinic was created with (default settings) are replaced by the file's;
/// the audit log is taken as it is, row by row at the end of the (empty) new log, and
/// must verify end to end before the import commits.
pub fn import(
    conn: &Db,
    doc: &Document,
    at: DateTime<Utc>,
    operator: &str,
    reason: &str,
) -> Result<Imported, ImportError> {
    let current = export::schema_version(conn)?;
    if doc.schema_version > current {
        return Err(refused(format!(
            "the export comes from a newer Ward (schema {}; this one has {current}); upgrade first",
            doc.schema_version
        )));
    }
    let known = export::tables(conn)?;
    for (name, table) in &doc.tables {
        if !known.contains(name) {
            return Err(refused(format!(
                "the file holds a table {name:?} this Ward does not have"
            )));
        }
        let cols = export::columns(conn, name)?;
        if let Some(c) = table.columns.iter().find(|c| !cols.contains(c)) {
            return Err(refused(format!("table {name} has no column {c:?}")));
        }
    }
    let detail = format!(
        "imported from the export of clinic {} ({}) taken at {}",
        doc.clinic.id, doc.clinic.slug, doc.exported_at
    );
    let reason = reason.to_owned();
    let operator = operator.to_owned();
    let result = audit::in_transaction(conn, |tx| {
        tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        let mut out = Imported::default();
        // The audit log goes last so that its own entry follows every imported row.
        let order = doc
            .tables
            .iter()
            .filter(|(n, _)| n.as_str() != "audit_log")
            .chain(doc.tables.iter().filter(|(n, _)| n.as_str() == "audit_log"));
        for (name, table) in order {
            if name == "audit_log" {
                if audit::head(&tx)?.is_some() {
                    return Err(refused("the new clinic's audit log is not empty"));
                }
            } else {
                tx.execute(&format!("DELETE FROM {}", quote(name)), ())?;
            }
            let cols = table.columns.iter().map(|c| quote(c)).collect::<Vec<_>>();
            let marks = (1..=cols.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({marks})",
                quote(name),
                cols.join(", ")
            );
            // One prepared statement for the table (the connection caches it).
            for (i, row) in table.rows.iter().enumerate() {
                let values = row.iter().map(to_sql).collect::<Result<Vec<_>, _>>()?;
                tx.execute(&sql, values)
                    .map_err(|e| row_error(name, i, e))?;
            }
            out.tables.push((name.clone(), table.rows.len() as u64));
        }
        let report = audit::verify_chain(&tx, None)?;
        if !report.is_clean() {
            return Err(refused(format!(
                "the audit log in the file does not verify ({} problem(s)): it was altered",
                report.problem_count
            )));
        }
        audit::record_operator_access(
            &tx,
            at,
            &operator,
            &reason,
            Action::OperatorAccess,
            Some(&detail),
        )?;
        Ok::<_, ImportError>(out)
    });
    result.map_err(|e| match e {
        ImportError::Db(e) if e.to_string().contains("FOREIGN KEY") => refused(format!(
            "the file's rows refer to rows it does not hold ({e})"
        )),
        e => e,
    })
}

fn row_error(table: &str, row: usize, e: ward_tenancy::sql::Error) -> ImportError {
    let text = e.to_string();
    if text.contains("UNIQUE") || text.contains("PRIMARY KEY") {
        refused(format!(
            "table {table}, row {}: a duplicate id or key ({text})",
            row + 1
        ))
    } else if text.contains("append-only") {
        refused(format!(
            "table audit_log, row {}: the audit log rows are out of order or repeated",
            row + 1
        ))
    } else {
        refused(format!("table {table}, row {}: {text}", row + 1))
    }
}
