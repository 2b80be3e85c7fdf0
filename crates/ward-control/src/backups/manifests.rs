//! Manifests: the JSON beside every backup file that repeats its catalog row, and
//! adopting into the catalog the backups it does not know.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use ward_core::ClinicId;
use ward_tenancy::backup::{BackupError, ChainHead, Digest};
use ward_tenancy::blocking;

use super::Backups;
use crate::ControlError;
use crate::catalog::{BackupRecord, NewBackup, Scope};

/// Format and version written into every manifest.
pub(super) const MANIFEST_FORMAT: &str = "ward-backup";
pub(super) const MANIFEST_VERSION: u32 = 1;

/// The facts of one backup file, written as JSON beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `ward-backup`.
    pub format: String,
    /// Manifest format version.
    pub version: u32,
    /// The backup's id.
    pub id: Uuid,
    /// What it is a backup of.
    pub scope: Scope,
    /// `snapshot`.
    pub kind: String,
    /// The moment it represents.
    pub taken_at: DateTime<Utc>,
    /// Size and SHA-256 of the `.db` file.
    pub digest: Digest,
    /// Schema version of the copy (0 if its first check failed).
    pub schema_version: u32,
    /// Audit chain head, when known.
    pub chain_head: Option<ChainHead>,
}

pub(super) fn manifest_path(db_file: &Path) -> PathBuf {
    db_file.with_extension("json")
}

impl Backups {
    /// Catalogs every backup in the backup directory that has a manifest but no catalog
    /// row (e.g. taken after the control-plane backup that was restored), unverified;
    /// returns how many. Backups of clinics the control plane does not know are left out.
    pub async fn adopt_orphans(&self) -> Result<usize, ControlError> {
        let manifests = blocking(async { scan_manifests(&self.config.dir) }).await;
        let known: HashSet<Uuid> = self
            .control
            .list_clinics()
            .await?
            .into_iter()
            .map(|c| *c.id.as_uuid())
            .collect();
        let mut adopted = 0;
        for (file, m) in manifests {
            if let Scope::Clinic(c) = m.scope
                && !known.contains(c.as_uuid())
            {
                continue;
            }
            if self.control.backup_by_id(m.id).await?.is_some() {
                continue;
            }
            let record = BackupRecord {
                id: m.id,
                scope: m.scope,
                kind: m.kind,
                target: "dir".into(),
                file,
                taken_at: m.taken_at,
                size: m.digest.size,
                sha256: m.digest.sha256,
                schema_version: m.schema_version,
                chain_head: m.chain_head,
                trigger: "adopted".into(),
                verified_at: None,
                verify_error: None,
                deleted_at: None,
            };
            self.control
                .record_new_backup(NewBackup {
                    record: &record,
                    fingerprint: None,
                    now: self.now(),
                })
                .await?;
            adopted += 1;
        }
        Ok(adopted)
    }
}

pub(super) fn write_manifest(db_file: &Path, m: &Manifest) -> Result<(), BackupError> {
    let path = manifest_path(db_file);
    let partial = path.with_extension("json.partial");
    let text = serde_json::to_vec_pretty(m)
        .map_err(|e| BackupError::io("cannot encode", &path)(std::io::Error::other(e)))?;
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&partial, &path)
    };
    // The folder is not synced for it: a manifest only matters for adopting backups
    // into a restored catalog, and one lost in a crash leaves the backup catalogued.
    write().map_err(BackupError::io("cannot write", &path))
}

/// Every manifest under `dir`, with its `.db` file's path relative to `dir`.
pub(super) fn scan_manifests(dir: &Path) -> Vec<(String, Manifest)> {
    let mut folders = vec![(dir.join("control"), "control".to_owned())];
    if let Ok(entries) = std::fs::read_dir(dir.join("clinics")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ClinicId::parse(&name).is_ok() {
                folders.push((e.path(), format!("clinics/{name}")));
            }
        }
    }
    let mut out = Vec::new();
    for (folder, rel) in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Some(m) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
                .filter(|m| m.format == MANIFEST_FORMAT)
            else {
                continue;
            };
            let db = path.with_extension("db");
            if !db.exists() {
                continue;
            }
            let name = db.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some(name) = name {
                out.push((format!("{rel}/{name}"), m));
            }
        }
    }
    out
}
