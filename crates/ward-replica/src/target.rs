//! Where replicas go: an object store named by a URL.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::ReplicaError;

/// A replica target: an object store and the prefix Ward's objects live under.
#[derive(Clone)]
pub struct Target {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The URL it was made from, without credentials.
    pub url: String,
    /// Whether the target is a folder on this machine (not off the machine).
    pub local: bool,
    /// The folder, for a `file://` target: its conditional writes are made under a lock
    /// there, since a folder store cannot compare versions itself.
    root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Target {
    /// Parses `s3://bucket/prefix` (endpoint, region and credentials from the usual
    /// `AWS_*` variables: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...) or
    /// `file:///absolute/path`.
    pub fn from_url(url: &str) -> Result<Self, ReplicaError> {
        Self::from_url_with(url, &[])
    }

    /// [`Target::from_url`], with S3 settings given explicitly (`aws_endpoint`,
    /// `aws_access_key_id`, ...) on top of the environment's.
    pub fn from_url_with(url: &str, s3: &[(&str, &str)]) -> Result<Self, ReplicaError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            ReplicaError::Config(format!("the replica URL {url:?} is not a URL: {e}"))
        })?;
        match parsed.scheme() {
            "file" => {
                let path = parsed.to_file_path().map_err(|()| {
                    ReplicaError::Config(format!("{url:?} does not name an absolute path"))
                })?;
                std::fs::create_dir_all(&path).map_err(|e| {
                    ReplicaError::Config(format!(
                        "cannot create the replica folder {}: {e}",
                        path.display()
                    ))
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
                    .map_err(|e| ReplicaError::Config(e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: ObjectPath::default(),
                    url: format!("file://{}", path.display()),
                    local: true,
                    root: Some(path),
                })
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| ReplicaError::Config(format!("{url:?} names no bucket")))?;
                // Failures surface within seconds and the replicator retries on its own
                // schedule, so an outage shows as lag instead of a request stuck retrying.
                let retry = object_store::RetryConfig {
                    backoff: object_store::BackoffConfig {
                        init_backoff: std::time::Duration::from_millis(100),
                        max_backoff: std::time::Duration::from_secs(1),
                        base: 2.0,
                    },
                    max_retries: 3,
                    retry_timeout: std::time::Duration::from_secs(10),
                };
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_connect_timeout(std::time::Duration::from_secs(5))
                            .with_timeout(std::time::Duration::from_secs(60)),
                    );
                let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                    .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .ok();
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_endpoint(endpoint);
                }
                for (k, v) in s3 {
                    let key = k
                        .parse()
                        .map_err(|e: object_store::Error| ReplicaError::Config(e.to_string()))?;
                    builder = builder.with_config(key, *v);
                }
                let store = builder.build().map_err(|e| {
                    ReplicaError::Config(format!("the replica target {url:?}: {e}"))
                })?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: ObjectPath::from(parsed.path().trim_matches('/')),
                    url: format!("s3://{bucket}{}", parsed.path()),
                    local: false,
                    root: None,
                })
            }
            other => Err(ReplicaError::Config(format!(
                "replica URLs start with s3:// or file://, not {other}://"
            ))),
        }
    }

    /// The store itself, for objects other than replicas (attachments).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The full object path of `name` (a '/'-separated path under the prefix).
    pub fn path(&self, name: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            p = p.child(part);
        }
        p
    }

    /// Writes `bytes` to `name`, failing if it already exists.
    pub(crate) async fn create(&self, name: &str, bytes: Vec<u8>) -> Result<(), ReplicaError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(name), PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                object_store::Error::AlreadyExists { .. } => {
                    ReplicaError::Fenced(format!("{name} was already written by another writer"))
                }
                e => ReplicaError::Store(e.to_string()),
            })
    }

    /// Writes a large object from a file, in parts.
    pub(crate) async fn upload_file(
        &self,
        name: &str,
        file: &std::path::Path,
    ) -> Result<(), ReplicaError> {
        use tokio::io::AsyncReadExt;
        let len = tokio::fs::metadata(file).await?.len();
        if len <= 8 << 20 {
            return self.create(name, tokio::fs::read(file).await?).await;
        }
        let upload = self
            .store
            .put_multipart(&self.path(name))
            .await
            .map_err(|e| ReplicaError::Store(e.to_string()))?;
        let mut writer = object_store::WriteMultipart::new(upload);
        let mut f = tokio::fs::File::open(file).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer
                .wait_for_capacity(4)
                .await
                .map_err(|e| ReplicaError::Store(e.to_string()))?;
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| ReplicaError::Store(e.to_string()))
    }

    /// Reads `name` with its version, or `None` if there is no such object.
    pub(crate) async fn get_versioned(
        &self,
        name: &str,
    ) -> Result<Option<(bytes::Bytes, object_store::UpdateVersion)>, ReplicaError> {
        match self.store.get(&self.path(name)).await {
            Ok(r) => {
                let version = object_store::UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| ReplicaError::Store(e.to_string()))?;
                Ok(Some((bytes, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ReplicaError::Store(e.to_string())),
        }
    }

    /// Writes `name` only if it is still at `version` (or, with `None`, absent). Returns
    /// whether this write won: of several writers that read the same version, exactly
    /// one does. An object store compares versions itself; a folder is compared and
    /// written under an exclusive lock on `.lease.lock` in it, which every process
    /// writing that folder takes.
    pub(crate) async fn put_if(
        &self,
        name: &str,
        bytes: Vec<u8>,
        version: Option<object_store::UpdateVersion>,
    ) -> Result<bool, ReplicaError> {
        if let Some(root) = &self.root {
            return self.put_if_locked(root, name, bytes, version).await;
        }
        let mode = match version {
            None => PutMode::Create,
            Some(v) => PutMode::Update(v),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(name), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(ReplicaError::Store(e.to_string())),
        }
    }

    /// [`Target::put_if`] on a folder: the version read (its e-tag: inode, time and size,
    /// so any rewrite changes it) is compared with the expected one and the new bytes
    /// renamed into place while the lock is held.
    async fn put_if_locked(
        &self,
        root: &std::path::Path,
        name: &str,
        bytes: Vec<u8>,
        version: Option<object_store::UpdateVersion>,
    ) -> Result<bool, ReplicaError> {
        let lock_path = root.join(".lease.lock");
        let lock = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|e| ReplicaError::Store(e.to_string()))??;
        let path = self.path(name);
        let current = match self.store.head(&path).await {
            Ok(meta) => Some(meta.e_tag),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(ReplicaError::Store(e.to_string())),
        };
        if current != version.map(|v| v.e_tag) {
            return Ok(false);
        }
        let written = self
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| true)
            .map_err(|e| ReplicaError::Store(e.to_string()));
        drop(lock);
        written
    }

    /// Reads `name`, or `None` if there is no such object.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<bytes::Bytes>, ReplicaError> {
        match self.store.get(&self.path(name)).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| ReplicaError::Store(e.to_string()))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ReplicaError::Store(e.to_string())),
        }
    }

    /// The names (relative to the prefix, sorted) of every object under `dir`, with
    /// their sizes.
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, ReplicaError> {
        use futures::TryStreamExt;
        let base = self.path(dir);
        let strip = self.prefix.as_ref().len();
        let mut out: Vec<(String, u64)> = self
            .store
            .list(Some(&base))
            .map_ok(|m| {
                let full = m.location.as_ref();
                let rel = full[strip..].trim_start_matches('/').to_owned();
                (rel, m.size)
            })
            .try_collect()
            .await
            .map_err(|e| ReplicaError::Store(e.to_string()))?;
        out.sort();
        Ok(out)
    }

    /// The immediate sub-folders of `dir` (names only, sorted).
    pub(crate) async fn folders(&self, dir: &str) -> Result<Vec<String>, ReplicaError> {
        let base = self.path(dir);
        let listed = self
            .store
            .list_with_delimiter(Some(&base))
            .await
            .map_err(|e| ReplicaError::Store(e.to_string()))?;
        let mut out: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Deletes `name` (absent is fine).
    pub(crate) async fn delete(&self, name: &str) -> Result<(), ReplicaError> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ReplicaError::Store(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn of_writers_on_one_folder_that_read_the_same_version_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let (a, b) = (
            Target::from_url(&url).unwrap(),
            Target::from_url(&url).unwrap(),
        );
        assert!(a.put_if("lease.json", b"a".to_vec(), None).await.unwrap());
        assert!(!b.put_if("lease.json", b"b".to_vec(), None).await.unwrap());
        let (_, seen) = a.get_versioned("lease.json").await.unwrap().unwrap();
        assert!(
            a.put_if("lease.json", b"a2".to_vec(), Some(seen.clone()))
                .await
                .unwrap()
        );
        // b read the same version before a renewed: its write is refused and a's stays.
        assert!(
            !b.put_if("lease.json", b"b2".to_vec(), Some(seen))
                .await
                .unwrap()
        );
        assert_eq!(&a.get("lease.json").await.unwrap().unwrap()[..], b"a2");

        // Many writers (each its own handle on the folder) race from one version.
        let (_, seen) = a.get_versioned("lease.json").await.unwrap().unwrap();
        let mut racers = Vec::new();
        for i in 0..16u8 {
            let (t, seen) = (Target::from_url(&url).unwrap(), seen.clone());
            racers.push(tokio::spawn(async move {
                t.put_if("lease.json", vec![i], Some(seen)).await.unwrap()
            }));
        }
        let mut won = Vec::new();
        for (i, r) in racers.into_iter().enumerate() {
            if r.await.unwrap() {
                won.push(i as u8);
            }
        }
        assert_eq!(won.len(), 1, "winners: {won:?}");
        assert_eq!(&a.get("lease.json").await.unwrap().unwrap()[..], &won[..]);
    }
}
