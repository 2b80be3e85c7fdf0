//! The archive export and its import (docs/export-format.md, "Archive"): the clinic's
//! JSON document and the plaintext of every attachment's file in one zip, and back into
//! a new clinic with every file stored again under a new name and a new key.
//!
//! The zip's layout and the checks are `ward_clinic::archive`'s; this module moves the
//! files between the zip and the attachment store ([`FileStore`]), piece by piece. The
//! clinic's connection is held only while the document is written (one read
//! transaction, which also lists the files) and while the rows are imported, not while
//! files travel.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rand::RngCore;
use ward_clinic::archive::{self, ArchiveFile, ArchiveWriter};
use ward_clinic::audit::{self, Head};
use ward_clinic::export::{ExportError, Header, Summary};
use ward_clinic::import::{self, Document, ImportError, Imported};
use ward_tenancy::Tenant;

use crate::BoxError;

/// A file's plaintext, piece by piece.
pub type Plaintext = BoxStream<'static, std::io::Result<Bytes>>;

/// A file stored in the attachment store.
#[derive(Debug, Clone)]
pub struct NewObject {
    /// The object's new random name.
    pub object_name: String,
    /// The file's new key.
    pub key: [u8; 32],
    /// The type found from the file's first bytes.
    pub content_type: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Hex SHA-256 of the plaintext.
    pub sha256: String,
}

/// Where attachments' files are kept: the web layer's attachment store, which encrypts
/// every file with its own key under a random name.
pub trait FileStore: Send + Sync {
    /// The plaintext of the object `object_name`, opened with `key`; the stream ends
    /// with an error if the object does not open or its digest is not `sha256`.
    fn open<'a>(
        &'a self,
        object_name: &'a str,
        key: &'a [u8],
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Plaintext, BoxError>>;

    /// Stores `file` as a new object with a new random name and key. Nothing is left
    /// in the store when this fails.
    fn put(&self, file: Plaintext) -> BoxFuture<'_, Result<NewObject, BoxError>>;

    /// Removes an object (one already gone is not an error).
    fn remove<'a>(&'a self, object_name: &'a str) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// Writes the archive of the clinic behind `tenant` to `out`: the document and the
/// list of files in one read transaction, then each file decrypted from `store` and
/// checked against its row's size and SHA-256 as it is written. Gives back what was
/// written and `out`.
pub async fn write_archive<W: Write + Send>(
    tenant: &Tenant,
    header: &Header,
    store: &dyn FileStore,
    out: W,
) -> Result<(Summary, W), BoxError> {
    let mut writer = ArchiveWriter::new(header, out);
    let (mut writer, files) = tenant
        .with(move |conn| {
            let files = writer.write_document(&conn, header)?;
            Ok::<_, ExportError>((writer, files))
        })
        .await?;
    for f in &files {
        let id = f.file.attachment;
        let mut plain = store
            .open(&f.object_name, &f.key, &f.file.sha256)
            .await
            .map_err(|e| {
                format!(
                    "attachment {id}: its file could not be read from the attachment store: {e}"
                )
            })?;
        writer.begin_file(&f.file)?;
        while let Some(piece) = plain.next().await {
            let piece = piece.map_err(|e| {
                format!(
                    "attachment {id}: its file could not be read from the attachment store: {e}"
                )
            })?;
            ward_tenancy::blocking(async { writer.write_file(&piece) }).await?;
        }
        writer.end_file()?;
    }
    Ok(ward_tenancy::blocking(async { writer.finish() }).await?)
}

/// Reads and checks the archive at `path` (its document, and every file against its
/// row's size and SHA-256) without writing anything, off the async workers.
pub async fn read(path: &Path) -> Result<(Document, Vec<ArchiveFile>), ImportError> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || archive::read(&p))
        .await
        .map_err(|e| ImportError::Refused(format!("the archive could not be read: {e}")))?
}

/// A name in the store's form (`a/<32 random hex>`) for a row whose file is not in the
/// archive: it names no object.
fn unused_name() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("a/{}", hex::encode(b))
}

/// Imports the archive at `path` (read and checked by [`read`]: `doc` and `files`)
/// into the clinic behind `tenant`, a new, freshly migrated clinic: every file is
/// stored again as a new object (a new random name and key: the name is bound into the
/// encryption, so objects cannot be copied), checked again as it goes, then the rows
/// are written pointing at them, as [`import::import`] writes a JSON export. All or
/// nothing: when anything fails, every object written is removed again (the caller
/// removes the clinic). Returns what was imported and the new audit head.
#[allow(
    clippy::too_many_arguments,
    reason = "the import's inputs, each used once"
)]
pub async fn import(
    tenant: &Tenant,
    mut doc: Document,
    files: &[ArchiveFile],
    path: &Path,
    store: &dyn FileStore,
    at: DateTime<Utc>,
    operator: &str,
    reason: &str,
) -> Result<(Imported, Option<Head>), BoxError> {
    let mut written: Vec<String> = Vec::new();
    let result = async {
        let mut stored = BTreeMap::new();
        for f in files {
            let obj = store_file(path, f, store).await?;
            written.push(obj.object_name.clone());
            if obj.size != f.size || obj.sha256 != f.sha256 || obj.content_type != f.content_type {
                return Err(BoxError::from(format!(
                    "{} changed while it was stored: the archive was altered",
                    f.path
                )));
            }
            stored.insert(f.attachment, (obj.object_name, obj.key));
        }
        archive::point_rows(&mut doc, &stored, unused_name)?;
        let imported = tenant
            .with(|conn| {
                let imported = import::import(&conn, &doc, at, operator, reason)?;
                let head = audit::head(&conn)?;
                Ok::<_, BoxError>((imported, head))
            })
            .await?;
        Ok(imported)
    }
    .await;
    if result.is_err() {
        for name in &written {
            if let Err(e) = store.remove(name).await {
                tracing::error!(error = %e, "an object of a failed import could not be removed");
            }
        }
    }
    result
}

/// The reader stopped because the store stopped taking pieces (its own error says why).
const STORE_STOPPED: &str = "the attachment store stopped taking the file";

/// Stores one file of the archive: a blocking thread reads it from the zip piece by
/// piece (checking its size and digest) and hands the pieces to the store.
async fn store_file(
    path: &Path,
    f: &ArchiveFile,
    store: &dyn FileStore,
) -> Result<NewObject, BoxError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    let (p, file) = (path.to_owned(), f.clone());
    let reader = tokio::task::spawn_blocking(move || {
        let sent = archive::copy_file(&p, &file, |piece| {
            tx.blocking_send(Ok(Bytes::copy_from_slice(piece)))
                .map_err(|_| ImportError::Refused(STORE_STOPPED.into()))
        });
        if let Err(e) = &sent {
            // The store must not keep a file the archive refused.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        sent
    });
    let pieces = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    })
    .boxed();
    let put = store.put(pieces).await;
    let read = reader
        .await
        .map_err(|e| format!("{} could not be read: {e}", f.path))?;
    match (read, put) {
        (Ok(()), Ok(obj)) => Ok(obj),
        (Err(ImportError::Refused(why)), Err(e)) if why == STORE_STOPPED => Err(format!(
            "{} could not be stored in the attachment store: {e}",
            f.path
        )
        .into()),
        (Err(e), Ok(obj)) => {
            let _ = store.remove(&obj.object_name).await;
            Err(e.into())
        }
        (Err(e), Err(_)) => Err(e.into()),
        (Ok(()), Err(e)) => Err(format!(
            "{} could not be stored in the attachment store: {e}",
            f.path
        )
        .into()),
    }
}
