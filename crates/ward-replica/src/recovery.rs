//! An empty machine brought back from the replica: the control plane first, then each
//! clinic as soon as it is asked for, and the rest in the background.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ward_core::ClinicId;

use crate::ReplicaError;
use crate::target::Target;

/// Brings missing clinic files back from the replica: installed in the clinic store
/// (its fetch-on-open), and used by [`rebuild_missing`]. Two asks for one clinic
/// rebuild it once.
pub struct Fetcher {
    target: Target,
    scratch: PathBuf,
    busy: parking_lot::Mutex<HashMap<ClinicId, Arc<tokio::sync::Mutex<()>>>>,
}

impl Fetcher {
    /// A fetcher from `target` into the data directory `data_dir` (its scratch files
    /// go to `<data>/replication/tmp`).
    pub fn new(data_dir: &Path, target: Target) -> std::io::Result<Self> {
        let scratch = data_dir.join("replication").join("tmp");
        std::fs::create_dir_all(&scratch)?;
        Ok(Self {
            target,
            scratch,
            busy: parking_lot::Mutex::new(HashMap::new()),
        })
    }
}

#[async_trait::async_trait]
impl ward_tenancy::FetchMissing for Fetcher {
    async fn fetch(&self, id: ClinicId, path: &Path) -> Result<bool, String> {
        let one = self.busy.lock().entry(id).or_default().clone();
        let _one = one.lock().await;
        if path.exists() {
            return Ok(true);
        }
        let tmp = self
            .scratch
            .join(format!("{id}-{}.fetching", uuid::Uuid::now_v7()));
        let result = crate::restore_to(&self.target, &id.to_string(), None, &tmp).await;
        let outcome = match result {
            Ok(_) => std::fs::hard_link(&tmp, path)
                .map(|()| true)
                .map_err(|e| format!("cannot put the rebuilt file in place: {e}")),
            Err(ReplicaError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.to_string()),
        };
        let _ = std::fs::remove_file(&tmp);
        if outcome == Ok(true) {
            tracing::info!(clinic = %id, "clinic rebuilt from the replica");
        }
        outcome
    }
}

/// For a data directory without a control plane: if the replica holds one, rebuilds it
/// (marking the directory's format) and returns true; the clinics follow through a
/// [`Fetcher`].
pub async fn rebuild_control_if_empty(data: &Path, target: &Target) -> Result<bool, String> {
    if data.join("control.db").exists() {
        return Ok(false);
    }
    let generations = crate::generations(target, "control")
        .await
        .unwrap_or_default();
    if generations.is_empty() {
        return Ok(false);
    }
    tracing::warn!(target_url = %target.url, "no control plane here but the replica has one: rebuilding this machine from the replica");
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(data.join("clinics")).map_err(io)?;
    std::fs::create_dir_all(data.join("replication").join("tmp")).map_err(io)?;
    ward_tenancy::format::check_or_mark(data, true)?;
    let tmp = data
        .join("replication")
        .join("tmp")
        .join("control.rebuilding");
    let _ = std::fs::remove_file(&tmp);
    crate::restore_to(target, "control", None, &tmp)
        .await
        .map_err(|e| format!("the control plane could not be rebuilt from the replica: {e}"))?;
    std::fs::rename(&tmp, data.join("control.db")).map_err(io)?;
    Ok(true)
}

/// What [`rebuild_missing`] did.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Clinics rebuilt.
    pub done: usize,
    /// Clinics the replica holds nothing of.
    pub absent: usize,
    /// Clinics that could not be rebuilt, with why.
    pub failed: Vec<(ClinicId, String)>,
}

/// Rebuilds, one after another in the order given, every clinic of `clinics` (id and
/// file) whose file is missing. A clinic opened before its turn was fetched on that
/// first use and is skipped here.
pub async fn rebuild_missing(
    fetcher: &Fetcher,
    clinics: impl IntoIterator<Item = (ClinicId, PathBuf)>,
) -> Rebuilt {
    use ward_tenancy::FetchMissing as _;
    let mut out = Rebuilt::default();
    for (id, path) in clinics {
        if path.exists() {
            continue;
        }
        match fetcher.fetch(id, &path).await {
            Ok(true) => out.done += 1,
            Ok(false) => out.absent += 1,
            Err(e) => out.failed.push((id, e)),
        }
    }
    out
}
