//! The attachment store: files encrypted in chunks, each with its own key, written to
//! an object store under random names (docs/attachments.md).
//!
//! An object is a 19-byte random nonce prefix followed by the file in 64 KiB chunks,
//! each sealed with XChaCha20-Poly1305 in the STREAM construction (a 32-bit big-endian
//! chunk counter and a last-chunk flag in every nonce), so a reordered, truncated or
//! extended object fails to open. The object's name is the associated data of every
//! chunk, so an object copied over another does not open either.

use bytes::{Bytes, BytesMut};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use futures::StreamExt;
use object_store::{ObjectStore, WriteMultipart};
use rand::RngCore;
use sha2::{Digest, Sha256};
use ward_replica::Target;

/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// The Poly1305 tag after each chunk.
const TAG: usize = 16;
/// The random nonce prefix at the start of each object.
pub const NONCE_PREFIX: usize = 19;

/// Why storing or reading an attachment failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// The file's content is not one of the accepted types.
    #[error("unsupported type")]
    Unsupported,
    /// The file is larger than the cap.
    #[error("too large")]
    TooLarge,
    /// The file would take the clinic past its quota.
    #[error("over the quota")]
    OverQuota,
    /// The upload itself broke off or was malformed.
    #[error("upload: {0}")]
    Upload(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// The object does not open with its key, or its digest does not match.
    #[error("the object failed its integrity check")]
    Integrity,
}

/// Where attachments go, and how large one may be.
#[derive(Debug, Clone)]
pub struct AttachmentStore {
    target: Target,
    /// The size cap in bytes (`WARD_ATTACHMENT_MAX_MB`).
    pub max_bytes: u64,
    /// How many bytes of files (not deleted) one clinic may keep
    /// (`WARD_ATTACHMENT_QUOTA_MB`).
    pub quota_bytes: u64,
}

/// The default per-clinic quota, in MiB.
pub const DEFAULT_QUOTA_MB: u64 = 5120;

/// What was stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The object's random name.
    pub object_name: String,
    /// The file's key.
    pub key: [u8; 32],
    /// The sniffed content type.
    pub content_type: &'static str,
    /// Plaintext bytes.
    pub size: u64,
    /// Hex SHA-256 of the plaintext.
    pub sha256: String,
}

/// The content type of a file starting with `head` (at least its first 132 bytes, or
/// all of it): PDF, JPEG, PNG, WebP or DICOM; anything else is refused.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return Some("application/dicom");
    }
    let t = infer::get(head)?;
    match t.mime_type() {
        m @ ("application/pdf" | "image/jpeg" | "image/png" | "image/webp") => Some(m),
        _ => None,
    }
}

/// Whether a browser may show this type inline (else it is downloaded).
pub fn inline(content_type: &str) -> bool {
    matches!(
        content_type,
        "application/pdf" | "image/jpeg" | "image/png" | "image/webp"
    )
}

impl AttachmentStore {
    /// A store at `url` (`file:///path` or `s3://bucket/prefix`), capped at `max_mb` MiB.
    pub fn from_url(url: &str, max_mb: u64) -> Result<Self, String> {
        let target = Target::from_url(url).map_err(|e| format!("the attachment store: {e}"))?;
        Ok(Self {
            target,
            max_bytes: max_mb.saturating_mul(1024 * 1024),
            quota_bytes: DEFAULT_QUOTA_MB * 1024 * 1024,
        })
    }

    /// The same store with a per-clinic quota of `quota_mb` MiB.
    pub fn with_quota_mb(self, quota_mb: u64) -> Self {
        self.with_quota_bytes(quota_mb.saturating_mul(1024 * 1024))
    }

    /// The same store with a per-clinic quota of `quota_bytes` bytes.
    pub fn with_quota_bytes(mut self, quota_bytes: u64) -> Self {
        self.quota_bytes = quota_bytes;
        self
    }

    /// The same store with a cap of `max_bytes` bytes.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The store's URL, without credentials.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    fn store(&self) -> &dyn ObjectStore {
        self.target.store().as_ref()
    }

    /// The raw (encrypted) object, for checks and tests.
    pub async fn raw(&self, object_name: &str) -> Result<Option<Bytes>, AttachmentError> {
        match self.store().get(&self.target.path(object_name)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| AttachmentError::Store(e.to_string())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(AttachmentError::Store(e.to_string())),
        }
    }

    /// Whether the object is in the store.
    pub async fn exists(&self, object_name: &str) -> Result<bool, AttachmentError> {
        match self.store().head(&self.target.path(object_name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(AttachmentError::Store(e.to_string())),
        }
    }

    /// Removes an object; one already gone is not an error.
    pub async fn remove(&self, object_name: &str) -> Result<(), AttachmentError> {
        match self.store().delete(&self.target.path(object_name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(AttachmentError::Store(e.to_string())),
        }
    }

    /// Encrypts and stores the file whose bytes `chunks` yields, sniffing its type from
    /// its first bytes and counting it against the cap as it streams. Nothing is left in
    /// the store when this fails.
    pub async fn put<S, E>(&self, chunks: S) -> Result<Stored, AttachmentError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.put_within(chunks, u64::MAX).await
    }

    /// [`Self::put`], refusing the file with [`AttachmentError::OverQuota`] as soon as
    /// it passes `room` bytes (what is left of the clinic's quota).
    pub async fn put_within<S, E>(
        &self,
        mut chunks: S,
        room: u64,
    ) -> Result<Stored, AttachmentError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let mut sealer = Sealer::new(self, &key);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let outcome: Result<(), AttachmentError> = async {
            while let Some(piece) = chunks.next().await {
                let piece = piece.map_err(|e| AttachmentError::Upload(e.to_string()))?;
                size += piece.len() as u64;
                if size > self.max_bytes {
                    return Err(AttachmentError::TooLarge);
                }
                if size > room {
                    return Err(AttachmentError::OverQuota);
                }
                hasher.update(&piece);
                sealer.push(&piece).await?;
            }
            sealer.seal_last().await
        }
        .await;
        let (object_name, content_type) = sealer.finish(outcome).await?;
        Ok(Stored {
            object_name,
            key,
            content_type,
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// The whole plaintext of an object, refused past `max` bytes (for thumbnails: the
    /// file is read back decrypted into memory, at most the size cap).
    pub async fn read_all(
        &self,
        object_name: &str,
        key: &[u8],
        sha256: &str,
        max: u64,
    ) -> Result<Vec<u8>, AttachmentError> {
        let mut stream = self.open(object_name, key, sha256).await?;
        let mut out = Vec::new();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|_| AttachmentError::Integrity)?;
            if (out.len() + piece.len()) as u64 > max {
                return Err(AttachmentError::TooLarge);
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    /// Encrypts and stores `bytes` (a file already in memory, such as a thumbnail).
    pub async fn put_bytes(&self, bytes: Vec<u8>) -> Result<Stored, AttachmentError> {
        self.put(futures::stream::iter([Ok::<_, std::convert::Infallible>(
            Bytes::from(bytes),
        )]))
        .await
    }

    /// Opens the object and decrypts it as a stream of plaintext pieces, checking the
    /// digest at the end. The first piece is decrypted before this returns, so a
    /// damaged or tampered object usually fails here, before any byte is sent; a later
    /// failure ends the stream with an error.
    pub async fn open(
        &self,
        object_name: &str,
        key: &[u8],
        sha256: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>, AttachmentError>
    {
        if key.len() != 32 {
            return Err(AttachmentError::Integrity);
        }
        let result = self
            .store()
            .get(&self.target.path(object_name))
            .await
            .map_err(|e| AttachmentError::Store(e.to_string()))?;
        let unsealer = Unsealer {
            buf: BytesMut::new(),
            cipher: Some(XChaCha20Poly1305::new(GenericArray::from_slice(key))),
            dec: None,
            hasher: Sha256::new(),
            aad: object_name.to_owned(),
            expected: sha256.to_owned(),
        };
        let (tx, mut rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        tokio::spawn(unseal(result.into_stream(), unsealer, tx));
        // Peek at the first piece: an object that does not open is an error page.
        match rx.next().await {
            Some(Ok(b)) => Ok(futures::stream::iter([Ok(b)]).chain(rx).boxed()),
            Some(Err(_)) | None => Err(AttachmentError::Integrity),
        }
    }
}

/// An object being written: its nonce prefix, then the file sealed chunk by chunk with
/// the object's name as associated data. The writer is started on the first chunk, once
/// its type is known to be accepted.
struct Sealer<'s> {
    store: &'s AttachmentStore,
    object_name: String,
    prefix: [u8; NONCE_PREFIX],
    /// The encryptor, until the last chunk is sealed.
    enc: Option<EncryptorBE32<XChaCha20Poly1305>>,
    /// The chunk being filled.
    buf: BytesMut,
    content_type: Option<&'static str>,
    writer: Option<WriteMultipart>,
}

impl<'s> Sealer<'s> {
    /// A new object in `store` under a random name, sealed with `key`.
    fn new(store: &'s AttachmentStore, key: &[u8; 32]) -> Self {
        let mut name_bytes = [0u8; 16];
        let mut prefix = [0u8; NONCE_PREFIX];
        let mut rng = rand::rngs::OsRng;
        rng.fill_bytes(&mut name_bytes);
        rng.fill_bytes(&mut prefix);
        let cipher = XChaCha20Poly1305::new(GenericArray::from_slice(key));
        Self {
            store,
            object_name: format!("a/{}", hex::encode(name_bytes)),
            enc: Some(EncryptorBE32::from_aead(
                cipher,
                GenericArray::from_slice(&prefix),
            )),
            prefix,
            buf: BytesMut::with_capacity(CHUNK),
            content_type: None,
            writer: None,
        }
    }

    /// Adds `piece` of the file, writing each chunk it fills.
    async fn push(&mut self, piece: &[u8]) -> Result<(), AttachmentError> {
        let mut rest = piece;
        while !rest.is_empty() {
            if self.buf.len() == CHUNK {
                // More follows, so this chunk is not the last.
                self.seal_chunk(false).await?;
                self.writer()?
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| AttachmentError::Store(e.to_string()))?;
                self.buf.clear();
            }
            let take = rest.len().min(CHUNK - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(())
    }

    /// Writes the chunk being filled as the last one.
    async fn seal_last(&mut self) -> Result<(), AttachmentError> {
        self.seal_chunk(true).await
    }

    /// Seals the chunk being filled (as the last one when `last`) and writes it.
    async fn seal_chunk(&mut self, last: bool) -> Result<(), AttachmentError> {
        self.start().await?;
        let payload = Payload {
            msg: &self.buf,
            aad: self.object_name.as_bytes(),
        };
        let sealed = if last {
            let enc = self.enc.take().ok_or(AttachmentError::Integrity)?;
            enc.encrypt_last(payload)
        } else {
            let enc = self.enc.as_mut().ok_or(AttachmentError::Integrity)?;
            enc.encrypt_next(payload)
        };
        let sealed = sealed.map_err(|_| AttachmentError::Integrity)?;
        self.writer()?.write(&sealed);
        Ok(())
    }

    /// Starts the writer on the first chunk, once its type is known to be accepted.
    async fn start(&mut self) -> Result<(), AttachmentError> {
        if self.writer.is_none() {
            self.content_type = Some(sniff(&self.buf).ok_or(AttachmentError::Unsupported)?);
            let upload = (self.store.store())
                .put_multipart(&self.store.target.path(&self.object_name))
                .await
                .map_err(|e| AttachmentError::Store(e.to_string()))?;
            let mut w = WriteMultipart::new(upload);
            w.write(&self.prefix);
            self.writer = Some(w);
        }
        Ok(())
    }

    fn writer(&mut self) -> Result<&mut WriteMultipart, AttachmentError> {
        (self.writer.as_mut()).ok_or_else(|| AttachmentError::Store("no writer".into()))
    }

    /// Completes the object when `outcome` is `Ok` (its name and type), else aborts
    /// it so nothing is left in the store.
    async fn finish(
        self,
        outcome: Result<(), AttachmentError>,
    ) -> Result<(String, &'static str), AttachmentError> {
        match (outcome, self.writer) {
            (Ok(()), Some(w)) => {
                w.finish()
                    .await
                    .map_err(|e| AttachmentError::Store(e.to_string()))?;
            }
            (Ok(()), None) => return Err(AttachmentError::Unsupported),
            (Err(e), w) => {
                if let Some(w) = w {
                    let _ = w.abort().await;
                }
                return Err(e);
            }
        }
        let content_type = self.content_type.unwrap_or("application/octet-stream");
        Ok((self.object_name, content_type))
    }
}

/// An object being read: its nonce prefix, then its sealed chunks, the last one only
/// when nothing follows it, and the plaintext's digest checked at the end.
struct Unsealer {
    /// What has arrived and is not decrypted yet.
    buf: BytesMut,
    /// The cipher, until the prefix has arrived and the decryptor is made.
    cipher: Option<XChaCha20Poly1305>,
    dec: Option<DecryptorBE32<XChaCha20Poly1305>>,
    hasher: Sha256,
    /// The object's name, the chunks' associated data.
    aad: String,
    /// The plaintext's digest, hex.
    expected: String,
}

impl Unsealer {
    /// The next chunk's plaintext, if a whole chunk that is not the last has arrived.
    fn next_chunk(&mut self) -> Result<Option<Bytes>, &'static str> {
        if self.dec.is_none() {
            if self.buf.len() < NONCE_PREFIX {
                return Ok(None);
            }
            let prefix = self.buf.split_to(NONCE_PREFIX);
            self.dec = (self.cipher.take())
                .map(|c| DecryptorBE32::from_aead(c, GenericArray::from_slice(&prefix)));
        }
        let Some(d) = self.dec.as_mut() else {
            return Ok(None);
        };
        // A chunk is the last one only when nothing follows it.
        if self.buf.len() <= CHUNK + TAG {
            return Ok(None);
        }
        let chunk = self.buf.split_to(CHUNK + TAG);
        let plain = d
            .decrypt_next(Payload {
                msg: &chunk,
                aad: self.aad.as_bytes(),
            })
            .map_err(|_| "chunk does not open")?;
        self.hasher.update(&plain);
        Ok(Some(Bytes::from(plain)))
    }

    /// At the end of the object: the last chunk's plaintext, once the digest matches.
    fn finish(mut self) -> Result<Bytes, &'static str> {
        let Some(d) = self.dec.take() else {
            return Err("short object");
        };
        let plain = d
            .decrypt_last(Payload {
                msg: &self.buf,
                aad: self.aad.as_bytes(),
            })
            .map_err(|_| "last chunk does not open")?;
        self.hasher.update(&plain);
        if hex::encode(self.hasher.finalize()) != self.expected {
            return Err("digest mismatch");
        }
        Ok(Bytes::from(plain))
    }
}

/// Decrypts `source` into `tx`, piece by piece as it arrives; a read failure or a chunk
/// that does not open ends the stream with an error (logged here).
async fn unseal(
    mut source: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    mut u: Unsealer,
    mut tx: futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    use futures::SinkExt;
    let fail = |why: &str| {
        tracing::error!(why, "an attachment failed its integrity check");
        std::io::Error::other("the attachment failed its integrity check")
    };
    loop {
        match source.next().await {
            Some(Ok(p)) => u.buf.extend_from_slice(&p),
            Some(Err(e)) => {
                tracing::error!(error = %e, "reading an attachment failed");
                let _ = tx.send(Err(std::io::Error::other("read failed"))).await;
                return;
            }
            None => {
                let _ = tx.send(u.finish().map_err(fail)).await;
                return;
            }
        }
        loop {
            match u.next_chunk() {
                Ok(Some(plain)) => {
                    if tx.send(Ok(plain)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(why) => {
                    let _ = tx.send(Err(fail(why))).await;
                    return;
                }
            }
        }
    }
}

/// What a sweep of deleted attachments did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Attachments whose objects were removed.
    pub attachments: usize,
    /// Clinics that could not be swept this time (they are tried again next time).
    pub failed: usize,
}

/// Removes the objects of attachments deleted more than `retention_days` days before
/// `now`, in every clinic that is not purged or closed, and marks them removed. A
/// clinic that cannot be opened, or an object the store refuses to remove, is left for
/// the next sweep.
pub async fn sweep_deleted(
    control: &ward_control::ControlPlane,
    tenants: &ward_tenancy::TenantStore,
    store: &AttachmentStore,
    now: chrono::DateTime<chrono::Utc>,
    retention_days: u32,
) -> Result<Swept, ward_control::ControlError> {
    use ward_core::ClinicStatus;
    let cut = now - chrono::TimeDelta::days(i64::from(retention_days));
    let mut swept = Swept::default();
    for clinic in control.list_clinics().await? {
        if matches!(clinic.status, ClinicStatus::Purged) {
            continue;
        }
        match sweep_clinic(tenants, store, clinic.id, cut, now).await {
            Ok(n) => swept.attachments += n,
            Err(e) => {
                tracing::warn!(clinic = %clinic.id, error = %e, "could not sweep a clinic's deleted attachments");
                swept.failed += 1;
            }
        }
    }
    Ok(swept)
}

async fn sweep_clinic(
    tenants: &ward_tenancy::TenantStore,
    store: &AttachmentStore,
    id: ward_core::ClinicId,
    cut: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, String> {
    use ward_clinic::attachments;
    let tenant = tenants.get(id).await.map_err(|e| e.to_string())?;
    let due = tenant
        .with(move |conn| attachments::due_for_removal(&conn, cut))
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    for a in due {
        let mut removed = true;
        for name in a.object_names() {
            if let Err(e) = store.remove(&name).await {
                tracing::warn!(attachment = a.id.get(), error = %e, "could not remove a deleted attachment's object");
                removed = false;
            }
        }
        if removed {
            let aid = a.id;
            tenant
                .with(move |conn| attachments::mark_removed(&conn, aid, now))
                .await
                .map_err(|e| e.to_string())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Removes every object of every attachment of clinic `id` (deleted or not, thumbnails
/// too), read from the clinic's own database: a purge calls this before the clinic's
/// key is destroyed, since an object's name says nothing about its clinic. Returns how
/// many objects were removed. Fails, leaving the purge to be tried again, when the
/// database cannot be read or the store refuses a removal.
pub async fn remove_clinic_objects(
    tenants: &ward_tenancy::TenantStore,
    store: &AttachmentStore,
    id: ward_core::ClinicId,
) -> Result<usize, String> {
    let tenant = tenants.get(id).await.map_err(|e| e.to_string())?;
    let names = tenant
        .with(|conn| ward_clinic::attachments::every_object(&conn))
        .await
        .map_err(|e| e.to_string())?;
    for name in &names {
        store.remove(name).await.map_err(|e| e.to_string())?;
    }
    Ok(names.len())
}

/// The purge's hook: a clinic's attachment objects go before its key.
#[derive(Clone)]
pub struct PurgeObjects {
    /// The clinics' databases, to list the objects from.
    pub tenants: ward_tenancy::TenantStore,
    /// Where the objects are.
    pub store: AttachmentStore,
}

#[async_trait::async_trait]
impl ward_control::lifecycle::BeforePurge for PurgeObjects {
    async fn before_purge(&self, id: ward_core::ClinicId) -> Result<(), String> {
        let n = remove_clinic_objects(&self.tenants, &self.store, id).await?;
        tracing::info!(clinic = %id, objects = n, "a purged clinic's attachment objects removed");
        Ok(())
    }
}

/// [`sweep_deleted`] over the app's clinics, store, clock and `WARD_RETENTION_DAYS`,
/// with what it did logged (counts only).
pub async fn sweep_deleted_logged(app: &crate::Web) {
    match sweep_deleted(
        &app.control,
        &app.tenants,
        &app.attachments,
        app.clock.now(),
        app.config.retention_days,
    )
    .await
    {
        Ok(s) if s != Swept::default() => tracing::info!(
            attachments = s.attachments,
            failed = s.failed,
            "deleted attachments' objects removed after the retention"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "the sweep of deleted attachments failed"),
    }
}

/// The export with files reads the files from here, and its import stores them here
/// again under new names and keys.
impl ward_app::archive::FileStore for AttachmentStore {
    fn open<'a>(
        &'a self,
        object_name: &'a str,
        key: &'a [u8],
        sha256: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<ward_app::archive::Plaintext, ward_app::BoxError>>
    {
        Box::pin(async move { Ok(AttachmentStore::open(self, object_name, key, sha256).await?) })
    }

    fn put(
        &self,
        file: ward_app::archive::Plaintext,
    ) -> futures::future::BoxFuture<'_, Result<ward_app::archive::NewObject, ward_app::BoxError>>
    {
        Box::pin(async move {
            let s = AttachmentStore::put(self, file).await?;
            Ok(ward_app::archive::NewObject {
                object_name: s.object_name,
                key: s.key,
                content_type: s.content_type.to_owned(),
                size: s.size,
                sha256: s.sha256,
            })
        })
    }

    fn remove<'a>(
        &'a self,
        object_name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), ward_app::BoxError>> {
        Box::pin(async move { Ok(AttachmentStore::remove(self, object_name).await?) })
    }
}
