//! The archive export: one zip holding the export document and the plaintext of every
//! attachment's file, which `ward import` reads back into a new clinic
//! (docs/export-format.md, "Archive").
//!
//! This module knows the zip's layout and checks every file against its row; where the
//! files come from (decrypted from the attachment store) and where they go (encrypted
//! again under new names and keys) is the caller's. Files pass through in pieces: none
//! is held whole in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ward_tenancy::Db;

use crate::export::{self, Counting, ExportError, Header, Summary, quote};
use crate::import::{self, Document, ImportError};

/// The document's name in the archive.
pub const DOCUMENT: &str = "ward-export.json";
/// The folder of the attachments' files in the archive.
pub const FILES: &str = "attachments/";
/// Pieces files are read and written in.
const PIECE: usize = 64 * 1024;

/// One attachment's file in the archive, as the document's `files` list names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveFile {
    /// The attachment (`attachments.id`).
    pub attachment: i64,
    /// Where the file is in the archive: `attachments/<id>.<ext>`.
    pub path: String,
    /// Its content type, as on the row.
    pub content_type: String,
    /// Its size in bytes, as on the row.
    pub size: u64,
    /// The hex SHA-256 of its bytes, as on the row.
    pub sha256: String,
}

/// A file to put in the archive and where it is: the object's name and key, which
/// never go into the archive.
#[derive(Debug, Clone)]
pub struct ToCopy {
    /// The file as the archive lists it.
    pub file: ArchiveFile,
    /// The object's name in the attachment store.
    pub object_name: String,
    /// The file's key.
    pub key: Vec<u8>,
}

/// The file extension of a content type: in the archive, and in a downloaded file's name.
pub fn extension(content_type: &str) -> &'static str {
    match content_type {
        "application/pdf" => "pdf",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "application/dicom" => "dcm",
        _ => "bin",
    }
}

/// Where attachment `id` of type `content_type` goes in the archive.
pub fn path_of(id: i64, content_type: &str) -> String {
    format!("{FILES}{id}.{}", extension(content_type))
}

/// How a column of `attachments` is written in an archive's document: the keys are
/// all zero (the files travel as plaintext, so no key of this clinic's leaves it) and
/// the thumbnail columns null (thumbnails are not in the archive).
pub(crate) fn column_in_archive(column: &str) -> String {
    match column {
        "file_key" => "zeroblob(32)".to_owned(),
        "thumbnail_object" | "thumbnail_key" | "thumbnail_sha256" => "NULL".to_owned(),
        other => quote(other),
    }
}

/// The attachments whose files an archive carries: every row whose object is still in
/// the store (deleted files inside the retention included), that is, not removed by
/// the sweep (`objects_removed_at`) nor destroyed by an erasure (its key zeroed).
pub fn files_of(conn: &Db) -> Result<Vec<ToCopy>, ExportError> {
    let mut out = Vec::new();
    conn.for_each_row(
        "SELECT id, content_type, size, sha256, object_name, file_key FROM attachments \
         WHERE objects_removed_at IS NULL AND file_key != zeroblob(32) ORDER BY id",
        (),
        |r| {
            let id: i64 = r.get(0)?;
            let content_type: String = r.get(1)?;
            let size: i64 = r.get(2)?;
            out.push(ToCopy {
                file: ArchiveFile {
                    attachment: id,
                    path: path_of(id, &content_type),
                    content_type,
                    size: u64::try_from(size).unwrap_or_default(),
                    sha256: r.get(3)?,
                },
                object_name: r.get(4)?,
                key: r.get(5)?,
            });
            Ok::<_, ExportError>(())
        },
    )?;
    Ok(out)
}

type Zip<W> = zip::ZipWriter<zip::write::StreamWriter<Counting<std::io::BufWriter<W>>>>;

/// The file being written, checked as it goes.
struct Current {
    file: ArchiveFile,
    hasher: Sha256,
    size: u64,
}

/// Writes an archive: [`Self::write_document`] first, then each file it returns with
/// [`Self::begin_file`], [`Self::write_file`] and [`Self::end_file`], then
/// [`Self::finish`]. The zip is written as it goes (no seeking), so `out` can be a
/// sealed file or standard output.
pub struct ArchiveWriter<W: Write> {
    zip: Zip<W>,
    options: zip::write::SimpleFileOptions,
    summary: Summary,
    current: Option<Current>,
}

fn zip_error(e: zip::result::ZipError) -> ExportError {
    match e {
        zip::result::ZipError::Io(e) => ExportError::Io(e),
        other => ExportError::Io(std::io::Error::other(other)),
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// An archive written to `out`, its entries stamped with the export's time.
    pub fn new(header: &Header, out: W) -> Self {
        Self {
            zip: zip::ZipWriter::new_stream(Counting {
                inner: std::io::BufWriter::with_capacity(PIECE, out),
                bytes: 0,
            }),
            options: crate::export_csv::options(header),
            summary: Summary::default(),
            current: None,
        }
    }

    /// Writes `ward-export.json` for the clinic behind `conn` and returns the files to
    /// add, both read in one read transaction: the document's `files` list is exactly
    /// what the archive will hold.
    pub fn write_document(
        &mut self,
        conn: &Db,
        header: &Header,
    ) -> Result<Vec<ToCopy>, ExportError> {
        export::in_read_transaction(conn, || {
            let files = files_of(conn)?;
            let list: Vec<ArchiveFile> = files.iter().map(|f| f.file.clone()).collect();
            self.zip
                .start_file(DOCUMENT, self.options)
                .map_err(zip_error)?;
            let summary = export::write_document(conn, header, &mut self.zip, Some(&list))?;
            self.summary.tables = summary.tables;
            Ok(files)
        })
    }

    /// Starts `file`'s entry.
    pub fn begin_file(&mut self, file: &ArchiveFile) -> Result<(), ExportError> {
        self.zip
            .start_file(file.path.as_str(), self.options)
            .map_err(zip_error)?;
        self.current = Some(Current {
            file: file.clone(),
            hasher: Sha256::new(),
            size: 0,
        });
        Ok(())
    }

    /// Writes the next piece of the current file; refused once it is longer than its
    /// row says.
    pub fn write_file(&mut self, piece: &[u8]) -> Result<(), ExportError> {
        let Some(c) = self.current.as_mut() else {
            return Err(ExportError::Io(std::io::Error::other("no file was begun")));
        };
        c.size += piece.len() as u64;
        if c.size > c.file.size {
            return Err(ExportError::File {
                id: c.file.attachment,
                why: format!(
                    "the file is longer than the {} bytes its row says",
                    c.file.size
                ),
            });
        }
        c.hasher.update(piece);
        self.zip.write_all(piece)?;
        Ok(())
    }

    /// Ends the current file, checking its size and SHA-256 against its row.
    pub fn end_file(&mut self) -> Result<(), ExportError> {
        let Some(c) = self.current.take() else {
            return Err(ExportError::Io(std::io::Error::other("no file was begun")));
        };
        let digest = hex::encode(c.hasher.finalize());
        if c.size != c.file.size || digest != c.file.sha256 {
            return Err(ExportError::File {
                id: c.file.attachment,
                why: "the file read from the attachment store does not match its row's size and SHA-256".into(),
            });
        }
        self.summary.files += 1;
        Ok(())
    }

    /// Ends the archive; gives back what was written and the destination.
    pub fn finish(self) -> Result<(Summary, W), ExportError> {
        if self.current.is_some() {
            return Err(ExportError::Io(std::io::Error::other(
                "a file was not ended",
            )));
        }
        let mut out = self.zip.finish().map_err(zip_error)?.into_inner();
        out.flush()?;
        let mut summary = self.summary;
        summary.bytes = out.bytes;
        let inner = out
            .inner
            .into_inner()
            .map_err(|e| ExportError::Io(e.into_error()))?;
        Ok((summary, inner))
    }
}

/// Whether the file at `path` is a zip (an archive export, or a CSV export).
pub fn is_zip(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        let got = f.read(&mut head[n..])?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n == 4 && head == *b"PK\x03\x04")
}

fn refused(msg: impl Into<String>) -> ImportError {
    ImportError::Refused(msg.into())
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<std::fs::File>, ImportError> {
    let f = std::fs::File::open(path)
        .map_err(|e| refused(format!("the archive could not be opened: {e}")))?;
    zip::ZipArchive::new(f).map_err(|e| {
        refused(format!(
            "the file is not a readable zip (it may have been cut off): {e}"
        ))
    })
}

/// Reads and checks the archive at `path` without writing anything: its document (as
/// [`import::parse`] checks a JSON export), that it holds exactly the files its
/// `files` list names and nothing else, each listed file matching its row (type, size,
/// digest) and each file's bytes matching its size and SHA-256.
pub fn read(path: &Path) -> Result<(Document, Vec<ArchiveFile>), ImportError> {
    let mut zip = open_zip(path)?;
    let doc = {
        let entry = zip.by_name(DOCUMENT).map_err(|_| {
            refused(format!(
                "the zip holds no {DOCUMENT}: it is not a Ward archive export (a CSV export cannot be imported)"
            ))
        })?;
        import::parse(entry)?
    };
    let Some(files) = doc.files.clone() else {
        return Err(refused(format!(
            "the archive's {DOCUMENT} has no list of files: it is not a Ward archive export"
        )));
    };
    let rows = attachment_rows(&doc)?;
    let mut listed = BTreeSet::new();
    for f in &files {
        let Some(row) = rows.get(&f.attachment) else {
            return Err(refused(format!(
                "the archive lists a file for attachment {}, which it has no row for",
                f.attachment
            )));
        };
        if !listed.insert(f.path.clone()) {
            return Err(refused(format!("the archive lists {} twice", f.path)));
        }
        if f.path != path_of(f.attachment, &f.content_type)
            || f.content_type != row.content_type
            || f.size != row.size
            || f.sha256 != row.sha256
        {
            return Err(refused(format!(
                "the archive's entry for {} does not match attachment {}'s row",
                f.path, f.attachment
            )));
        }
        if row.removed {
            return Err(refused(format!(
                "the archive holds {}, but attachment {}'s objects were removed",
                f.path, f.attachment
            )));
        }
    }
    let names = zip
        .file_names()
        .map(|n| n.map(std::borrow::Cow::into_owned))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|e| refused(format!("the zip's list of entries could not be read: {e}")))?;
    for name in &names {
        if name != DOCUMENT && !listed.contains(name) {
            return Err(refused(format!(
                "the archive holds {name:?}, which is not one of its listed files"
            )));
        }
    }
    drop(zip);
    for f in &files {
        copy_file(path, f, |_| Ok(()))?;
    }
    Ok((doc, files))
}

/// Streams `file`'s bytes from the archive at `path` to `each`, piece by piece, and
/// checks them against its size and SHA-256 at the end (a longer file is refused as
/// soon as it passes its size).
pub fn copy_file(
    path: &Path,
    file: &ArchiveFile,
    mut each: impl FnMut(&[u8]) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut zip = open_zip(path)?;
    let mut entry = zip
        .by_name(&file.path)
        .map_err(|_| refused(format!("the archive has no {}", file.path)))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; PIECE];
    let damaged = || {
        refused(format!(
            "{} does not match attachment {}'s size and SHA-256: the archive was altered or damaged",
            file.path, file.attachment
        ))
    };
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| refused(format!("{} could not be read: {e}", file.path)))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > file.size {
            return Err(damaged());
        }
        hasher.update(&buf[..n]);
        each(&buf[..n])?;
    }
    if size != file.size || hex::encode(hasher.finalize()) != file.sha256 {
        return Err(damaged());
    }
    Ok(())
}

/// What [`read`] needs of an attachment row.
struct Row {
    content_type: String,
    size: u64,
    sha256: String,
    removed: bool,
    has_key: bool,
}

fn column(table: &import::Table, name: &str) -> Option<usize> {
    table.columns.iter().position(|c| c == name)
}

fn attachment_rows(doc: &Document) -> Result<BTreeMap<i64, Row>, ImportError> {
    let mut out = BTreeMap::new();
    let Some(t) = doc.tables.get("attachments") else {
        return Ok(out);
    };
    let need = |name: &str| {
        column(t, name).ok_or_else(|| refused(format!("table attachments has no column {name}")))
    };
    let (id, ct, size, sha) = (
        need("id")?,
        need("content_type")?,
        need("size")?,
        need("sha256")?,
    );
    let removed = column(t, "objects_removed_at");
    let key = column(t, "file_key");
    for (i, row) in t.rows.iter().enumerate() {
        let bad = || {
            refused(format!(
                "table attachments, row {}: a malformed value",
                i + 1
            ))
        };
        let has_key = key.is_some_and(|k| match &row[k] {
            serde_json::Value::Object(o) => o
                .get("hex")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|h| h.bytes().any(|b| b != b'0')),
            _ => false,
        });
        out.insert(
            row[id].as_i64().ok_or_else(bad)?,
            Row {
                content_type: row[ct].as_str().ok_or_else(bad)?.to_owned(),
                size: row[size].as_u64().ok_or_else(bad)?,
                sha256: row[sha].as_str().ok_or_else(bad)?.to_owned(),
                removed: removed.is_some_and(|r| !row[r].is_null()),
                has_key,
            },
        );
    }
    Ok(out)
}

/// Refuses a plain JSON export whose clinic had files: it carries their rows but not
/// the files, so the new clinic would list files it cannot open. The archive export
/// brings them. A document taken out of an archive is refused too (its files are in
/// the archive).
pub fn check_plain_json(doc: &Document) -> Result<(), ImportError> {
    if doc.files.is_some() {
        return Err(refused(format!(
            "this {DOCUMENT} comes from an archive export and its files are in that archive: import the archive (.zip) itself"
        )));
    }
    let live = attachment_rows(doc)?
        .values()
        .filter(|r| !r.removed && r.has_key)
        .count();
    if live > 0 {
        return Err(refused(format!(
            "the export names {live} attachment file(s) but holds none of them (a JSON export has the rows, not the files): export the clinic with its files (`ward export --format zip`, or \"JSON with files\" on the clinic's export page) and import that archive"
        )));
    }
    Ok(())
}

/// Points the document's attachment rows at their new objects: a row whose file was
/// stored again gets the new object's name and key (`stored`, by attachment id); any
/// other row (its file was not in the archive) gets a new name from `fresh`, naming no
/// object, and an all-zero key. Thumbnails are left out.
pub fn point_rows(
    doc: &mut Document,
    stored: &BTreeMap<i64, (String, [u8; 32])>,
    mut fresh: impl FnMut() -> String,
) -> Result<(), ImportError> {
    let Some(t) = doc.tables.get_mut("attachments") else {
        return Ok(());
    };
    let need = |t: &import::Table, name: &str| {
        column(t, name).ok_or_else(|| refused(format!("table attachments has no column {name}")))
    };
    let (id, name, key) = (
        need(t, "id")?,
        need(t, "object_name")?,
        need(t, "file_key")?,
    );
    let thumbs: Vec<usize> = ["thumbnail_object", "thumbnail_key", "thumbnail_sha256"]
        .iter()
        .filter_map(|c| column(t, c))
        .collect();
    let hex_value = |k: &[u8]| serde_json::json!({ "hex": hex::encode(k) });
    for row in &mut t.rows {
        let aid = row[id]
            .as_i64()
            .ok_or_else(|| refused("an attachment row without an id"))?;
        match stored.get(&aid) {
            Some((object, k)) => {
                row[name] = serde_json::Value::String(object.clone());
                row[key] = hex_value(k);
            }
            None => {
                row[name] = serde_json::Value::String(fresh());
                row[key] = hex_value(&[0u8; 32]);
            }
        }
        for &c in &thumbs {
            row[c] = serde_json::Value::Null;
        }
    }
    Ok(())
}
