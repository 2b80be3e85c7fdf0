//! The clinic's whole database as one JSON document (docs/export-format.md).
//!
//! The writer is generic over the schema: every table in `sqlite_master` (SQLite's own
//! tables aside) is written with its columns and rows, so a table added by
//! a later migration is exported without any change here. Rows are written as they are
//! read, so memory stays flat whatever the size of the clinic.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ward_core::format_time;
use ward_tenancy::Db;
use ward_tenancy::sql::Value;

/// The `format` field of every export.
pub const FORMAT: &str = "ward-export";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 1;

/// Who the clinic is, as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClinicInfo {
    /// The clinic's permanent id (a UUID).
    pub id: String,
    /// Its URL name.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// `active`, `suspended` or `closed`.
    pub status: String,
    /// When it was created (RFC 3339 UTC).
    pub created_at: String,
}

/// One member of the clinic's staff, without any credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMember {
    /// The person's account id.
    pub user_id: String,
    /// Their name.
    pub name: String,
    /// Their sign-in address.
    pub email: String,
    /// `owner`, `doctor`, `receptionist` or `billing`.
    pub role: String,
    /// Since when they are a member (RFC 3339 UTC).
    pub member_since: String,
}

/// Everything an export says besides the tables.
#[derive(Debug, Clone)]
pub struct Header {
    /// The clinic.
    pub clinic: ClinicInfo,
    /// When the export was taken.
    pub exported_at: DateTime<Utc>,
    /// Who asked for it: `operator:<name>` or `user:<id>`.
    pub exported_by: String,
    /// The staff list.
    pub staff: Vec<StaffMember>,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows per table, in the order written.
    pub tables: Vec<(String, u64)>,
    /// Bytes written.
    pub bytes: u64,
    /// Attachments' files written (an archive only).
    pub files: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The database failed.
    #[error("reading the clinic failed: {0}")]
    Db(#[from] ward_tenancy::sql::Error),
    /// The destination failed.
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
    /// A value could not be encoded.
    #[error("encoding the export failed: {0}")]
    Json(#[from] serde_json::Error),
    /// An attachment's file did not match its row (size or digest), or could not be
    /// read from the attachment store.
    #[error("attachment {id}: {why}")]
    File {
        /// The attachment's id.
        id: i64,
        /// What went wrong.
        why: String,
    },
}

/// The clinic's own tables, in name order: everything but SQLite's
/// internal tables.
pub fn tables(conn: &Db) -> Result<Vec<String>, ward_tenancy::sql::Error> {
    conn.rows(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'libsql\\_%' ESCAPE '\\' \
             AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name",
        (),
        |row| row.get::<String>(0),
    )
}

/// A table's column names, in declaration order.
pub fn columns(conn: &Db, table: &str) -> Result<Vec<String>, ward_tenancy::sql::Error> {
    conn.rows(
        "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        [table],
        |row| row.get::<String>(0),
    )
}

/// SQL-quotes an identifier read from the schema.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tenant schema version (`PRAGMA user_version`).
pub fn schema_version(conn: &Db) -> Result<i64, ward_tenancy::sql::Error> {
    let mut rows = conn.query("PRAGMA user_version", ())?;
    match rows.next()? {
        Some(row) => row.get::<i64>(0),
        None => Ok(0),
    }
}

/// Counts bytes on their way to the destination.
pub(crate) struct Counting<W> {
    pub(crate) inner: W,
    pub(crate) bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the clinic behind `conn` as one export document to `out`.
///
/// The whole read happens in one read transaction, so the document is one consistent
/// moment of the clinic. Each row is encoded and written as soon as it is read.
pub fn write_export<W: Write>(conn: &Db, header: &Header, out: W) -> Result<Summary, ExportError> {
    in_read_transaction(conn, || write_body(conn, header, out))
}

/// Runs `read` inside a read transaction on `conn`, begun here unless one is open
/// already, so everything it reads is one consistent moment of the clinic.
pub(crate) fn in_read_transaction<T>(
    conn: &Db,
    read: impl FnOnce() -> Result<T, ExportError>,
) -> Result<T, ExportError> {
    let began = conn.is_autocommit();
    if began {
        conn.execute("BEGIN", ())?;
    }
    let result = read();
    if began && !conn.is_autocommit() {
        // A read transaction: ending it cannot lose anything.
        let _ = conn.execute("COMMIT", ());
    }
    result
}

fn write_body<W: Write>(conn: &Db, header: &Header, out: W) -> Result<Summary, ExportError> {
    write_document(conn, header, out, None)
}

/// The document, for an archive when `files` is given: the `files` list goes before
/// the tables, and the attachments' keys and thumbnails are left out of the rows
/// (`file_key` all zero, the thumbnail columns null; docs/export-format.md, "Archive").
pub(crate) fn write_document<W: Write>(
    conn: &Db,
    header: &Header,
    out: W,
    files: Option<&[crate::archive::ArchiveFile]>,
) -> Result<Summary, ExportError> {
    let mut out = Counting {
        inner: std::io::BufWriter::with_capacity(64 * 1024, out),
        bytes: 0,
    };
    let w = &mut out;
    write!(
        w,
        "{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"clinic\":"
    )?;
    serde_json::to_writer(&mut *w, &header.clinic)?;
    write!(w, ",\"exported_at\":")?;
    serde_json::to_writer(&mut *w, &format_time(header.exported_at))?;
    write!(w, ",\"exported_by\":")?;
    serde_json::to_writer(&mut *w, &header.exported_by)?;
    write!(w, ",\"schema_version\":{}", schema_version(conn)?)?;
    write!(w, ",\"staff\":")?;
    serde_json::to_writer(&mut *w, &header.staff)?;
    if let Some(files) = files {
        write!(w, ",\"files\":")?;
        serde_json::to_writer(&mut *w, files)?;
    }
    write!(w, ",\"tables\":{{")?;
    let mut summary = Summary::default();
    for (t, table) in tables(conn)?.into_iter().enumerate() {
        let cols = columns(conn, &table)?;
        if t > 0 {
            w.write_all(b",")?;
        }
        let n = if files.is_some() && table == "attachments" {
            let exprs: Vec<String> = cols
                .iter()
                .map(|c| crate::archive::column_in_archive(c))
                .collect();
            write_rows(conn, &mut *w, &table, &cols, &exprs, "", ())?
        } else {
            write_table(conn, &mut *w, &table, &cols, "", ())?
        };
        summary.tables.push((table, n));
    }
    w.write_all(b"}}\n")?;
    out.flush()?;
    summary.bytes = out.bytes;
    Ok(summary)
}

/// Writes `"table":{"columns":[…],"rows":[…]}` for the rows of `table` matching
/// `condition` (SQL after `WHERE`, or empty for every row) with `params`, columns `cols`
/// in that order. Streamed: each row is written before the next is read, none is kept.
/// Returns how many rows.
pub(crate) fn write_table<W: Write>(
    conn: &Db,
    w: &mut W,
    table: &str,
    cols: &[String],
    condition: &str,
    params: impl ward_tenancy::sql::IntoParams,
) -> Result<u64, ExportError> {
    let exprs: Vec<String> = cols.iter().map(|c| quote(c)).collect();
    write_rows(conn, w, table, cols, &exprs, condition, params)
}

/// [`write_table`] with each column read through its SQL expression in `exprs`.
fn write_rows<W: Write>(
    conn: &Db,
    w: &mut W,
    table: &str,
    cols: &[String],
    exprs: &[String],
    condition: &str,
    params: impl ward_tenancy::sql::IntoParams,
) -> Result<u64, ExportError> {
    serde_json::to_writer(&mut *w, table)?;
    w.write_all(b":{\"columns\":")?;
    serde_json::to_writer(&mut *w, cols)?;
    w.write_all(b",\"rows\":[")?;
    let list = exprs.join(", ");
    let filter = if condition.is_empty() {
        String::new()
    } else {
        format!(" WHERE {condition}")
    };
    let mut n: u64 = 0;
    conn.for_each_row(
        &format!("SELECT {list} FROM {}{filter}", quote(table)),
        params,
        |row| {
            w.write_all(if n == 0 { b"\n[" } else { b",\n[" })?;
            for i in 0..cols.len() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                // Column counts are tiny; the cast cannot truncate.
                write_value(&mut *w, row.get_value(i as i32)?)?;
            }
            w.write_all(b"]")?;
            n += 1;
            Ok::<_, ExportError>(())
        },
    )?;
    w.write_all(b"]}")?;
    Ok(n)
}

/// One value: SQL NULL, integers, reals and text as their JSON counterparts; a blob as
/// `{"hex": "<lowercase hex>"}` so it cannot be mistaken for text.
fn write_value<W: Write>(w: &mut W, v: Value) -> Result<(), ExportError> {
    match v {
        Value::Null => w.write_all(b"null")?,
        Value::Integer(i) => write!(w, "{i}")?,
        Value::Real(r) => serde_json::to_writer(&mut *w, &r)?,
        Value::Text(s) => serde_json::to_writer(&mut *w, &s)?,
        Value::Blob(b) => write!(w, "{{\"hex\":\"{}\"}}", hex::encode(b))?,
    }
    Ok(())
}
