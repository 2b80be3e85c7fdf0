//! The clinic's data as a zip of CSV files, one per table, for spreadsheet apps
//! (docs/export-format.md, "CSV").
//!
//! The tables and columns are those of the JSON export ([`crate::export`]), read in one
//! read transaction and streamed row by row into the zip, so memory stays flat. Each
//! file is UTF-8 with a byte-order mark (so spreadsheet apps read accents and symbols
//! right), comma-separated, quoted where needed, CRLF line ends, a header row first.
//! Each money column `<name>_minor` (integer minor units) is followed by a column
//! `<name>` with the same amount as a decimal number in the row's currency (`1250.50`),
//! written by the one money formatter.

use std::io::Write;

use ward_tenancy::Db;
use ward_tenancy::sql::Value;

use crate::export::{self, Counting, ExportError, FORMAT, Header, Summary, VERSION, quote};
use crate::settings::Currency;

/// The byte-order mark every file starts with.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why the CSV export failed, as an [`ExportError`].
fn zip_error(e: zip::result::ZipError) -> ExportError {
    match e {
        zip::result::ZipError::Io(e) => ExportError::Io(e),
        other => ExportError::Io(std::io::Error::other(other)),
    }
}

fn csv_error(e: csv::Error) -> ExportError {
    ExportError::Io(std::io::Error::other(e))
}

type Zip<W> = zip::ZipWriter<zip::write::StreamWriter<Counting<W>>>;

/// Writes the clinic behind `conn` as a zip of CSV files to `out`: `export.csv` (what
/// the export is), `staff.csv`, and `<table>.csv` for every table of the JSON export.
///
/// The whole read happens in one read transaction, so the files are one consistent
/// moment of the clinic.
pub fn write_csv_zip<W: Write>(conn: &Db, header: &Header, out: W) -> Result<Summary, ExportError> {
    export::in_read_transaction(conn, || write_body(conn, header, out))
}

pub(crate) fn options(header: &Header) -> zip::write::SimpleFileOptions {
    use chrono::{Datelike, Timelike};
    let t = header.exported_at;
    let stamp = zip::DateTime::from_date_and_time(
        u16::try_from(t.year()).unwrap_or(1980),
        u8::try_from(t.month()).unwrap_or(1),
        u8::try_from(t.day()).unwrap_or(1),
        u8::try_from(t.hour()).unwrap_or(0),
        u8::try_from(t.minute()).unwrap_or(0),
        u8::try_from(t.second()).unwrap_or(0),
    )
    .unwrap_or_default();
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(stamp)
        .unix_permissions(0o600)
}

/// Starts `name` in the zip with the byte-order mark, and gives a CSV writer into it.
fn start<'z, W: Write>(
    zip: &'z mut Zip<W>,
    name: &str,
    header: &Header,
) -> Result<csv::Writer<&'z mut Zip<W>>, ExportError> {
    zip.start_file(name, options(header)).map_err(zip_error)?;
    zip.write_all(BOM)?;
    Ok(csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(zip))
}

fn write_body<W: Write>(conn: &Db, header: &Header, out: W) -> Result<Summary, ExportError> {
    let mut zip = zip::ZipWriter::new_stream(Counting {
        inner: std::io::BufWriter::with_capacity(64 * 1024, out),
        bytes: 0,
    });
    let mut summary = Summary::default();
    let clinic_currency = crate::settings::load(conn)
        .map(|s| s.currency)
        .unwrap_or_else(|_| crate::settings::ClinicSettings::default().currency);

    {
        let mut w = start(&mut zip, "export.csv", header)?;
        w.write_record([
            "format",
            "version",
            "clinic_id",
            "clinic_slug",
            "clinic_name",
            "clinic_status",
            "clinic_created_at",
            "exported_at",
            "exported_by",
            "schema_version",
            "currency",
        ])
        .map_err(csv_error)?;
        w.write_record([
            FORMAT.to_owned(),
            VERSION.to_string(),
            header.clinic.id.clone(),
            header.clinic.slug.clone(),
            header.clinic.name.clone(),
            header.clinic.status.clone(),
            header.clinic.created_at.clone(),
            ward_core::format_time(header.exported_at),
            header.exported_by.clone(),
            export::schema_version(conn)?.to_string(),
            clinic_currency.code.to_owned(),
        ])
        .map_err(csv_error)?;
        w.flush()?;
    }
    {
        let mut w = start(&mut zip, "staff.csv", header)?;
        w.write_record(["user_id", "name", "email", "role", "member_since"])
            .map_err(csv_error)?;
        for s in &header.staff {
            w.write_record([&s.user_id, &s.name, &s.email, &s.role, &s.member_since])
                .map_err(csv_error)?;
        }
        w.flush()?;
        summary
            .tables
            .push(("staff".into(), header.staff.len() as u64));
    }

    for table in export::tables(conn)? {
        let cols = export::columns(conn, &table)?;
        let currency_col = cols.iter().position(|c| c == "currency");
        // Each `<name>_minor` column is followed by its decimal twin.
        let mut heading = Vec::new();
        for c in &cols {
            heading.push(c.clone());
            if let Some(name) = c.strip_suffix("_minor") {
                heading.push(if cols.iter().any(|o| o == name) {
                    format!("{name}_decimal")
                } else {
                    name.to_owned()
                });
            }
        }
        let minor: Vec<bool> = cols.iter().map(|c| c.ends_with("_minor")).collect();
        let mut w = start(&mut zip, &format!("{table}.csv"), header)?;
        w.write_record(&heading).map_err(csv_error)?;
        let list = cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let mut n: u64 = 0;
        let mut record: Vec<String> = Vec::with_capacity(heading.len());
        conn.for_each_row(
            &format!("SELECT {list} FROM {}", quote(&table)),
            (),
            |row| {
                record.clear();
                let currency = match currency_col {
                    // Column counts are tiny; the cast cannot truncate.
                    Some(i) => match row.get_value(i as i32)? {
                        Value::Text(code) => Currency::parse(&code).unwrap_or(clinic_currency),
                        _ => clinic_currency,
                    },
                    None => clinic_currency,
                };
                for (i, is_minor) in minor.iter().enumerate() {
                    let v = row.get_value(i as i32)?;
                    let decimal = match (&v, is_minor) {
                        (Value::Integer(m), true) => Some(currency.format_plain(*m)),
                        (_, true) => Some(String::new()),
                        _ => None,
                    };
                    record.push(cell(v));
                    if let Some(d) = decimal {
                        record.push(d);
                    }
                }
                w.write_record(&record).map_err(csv_error)?;
                n += 1;
                Ok::<_, ExportError>(())
            },
        )?;
        w.flush()?;
        drop(w);
        summary.tables.push((table, n));
    }
    let mut out = zip.finish().map_err(zip_error)?.into_inner();
    out.flush()?;
    summary.bytes = out.bytes;
    Ok(summary)
}

/// One value as CSV text: NULL empty, numbers as written by SQLite, text as it is, a
/// blob as lowercase hex.
fn cell(v: Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(s) => s,
        Value::Blob(b) => hex::encode(b),
    }
}

/// The shapes an export can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The `ward-export` JSON document (the default; `ward import` reads it).
    #[default]
    Json,
    /// A zip of one CSV file per table, for spreadsheet apps.
    Csv,
    /// A zip of the JSON document and every attachment's file ([`crate::archive`]);
    /// `ward import` reads it. Written by the application layer, which reads the files
    /// from the attachment store.
    Archive,
}

impl Format {
    /// The form field and job value (`json`, `csv`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Archive => "zip",
        }
    }

    /// Parses [`Format::as_str`]'s form; empty is the default, JSON.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "" | "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "zip" => Some(Self::Archive),
            _ => None,
        }
    }

    /// The downloaded file's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv | Self::Archive => "zip",
        }
    }

    /// The downloaded file's media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv | Self::Archive => "application/zip",
        }
    }

    /// Writes the clinic behind `conn` in this format to `out`. The archive needs the
    /// attachments' files as well, so it is written by `ward_app::archive` instead and
    /// refused here.
    pub fn write<W: Write>(
        self,
        conn: &Db,
        header: &Header,
        out: W,
    ) -> Result<Summary, ExportError> {
        match self {
            Self::Json => export::write_export(conn, header, out),
            Self::Csv => write_csv_zip(conn, header, out),
            Self::Archive => Err(ExportError::Io(std::io::Error::other(
                "the archive export is written with the attachments' files (ward_app::archive)",
            ))),
        }
    }
}
