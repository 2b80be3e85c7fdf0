//! Opening the whole data directory at once: master key, control plane, tenant store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ward_core::Clock;
use ward_tenancy::keys::load_or_generate_secret;
use ward_tenancy::migrate::MigrateOutcome;
use ward_tenancy::{MasterKey, StoreConfig, TenantStore};

use crate::{ControlError, ControlPlane};

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// Given in configuration (`WARD_MASTER_KEY`), 64 hex characters.
    Configured(String),
    /// `<data>/master.key`, generated on first use.
    DataDirFile,
}

/// The control plane and the clinics it knows, opened together.
pub struct Platform {
    /// Clinics, people, sessions.
    pub control: Arc<ControlPlane>,
    /// Clinic databases.
    pub tenants: TenantStore,
    /// What opening did to the control schema.
    pub control_migration: MigrateOutcome,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl Platform {
    /// Opens `store.data_dir`: reads or generates the master key, opens and migrates the
    /// control plane, and sets up the tenant store.
    pub async fn open(
        store: StoreConfig,
        key: MasterKeySource,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ControlError> {
        let data_dir = store.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            ControlError::Invalid(format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let master = master_key(&data_dir, key)?;
        let (control, control_migration) = ControlPlane::open(&data_dir, &master, clock).await?;
        let control = Arc::new(control);
        let tenants = TenantStore::new(store, master, control.clone()).map_err(|e| {
            ControlError::Invalid(format!(
                "cannot create the clinics folder under {}: {e}",
                data_dir.display()
            ))
        })?;
        Ok(Self {
            control,
            tenants,
            control_migration,
            data_dir,
        })
    }
}

/// The master key from its source (generating `<data>/master.key` on first use).
pub fn master_key(data_dir: &Path, source: MasterKeySource) -> Result<MasterKey, ControlError> {
    match source {
        MasterKeySource::Configured(hex) => MasterKey::from_hex(&hex)
            .map_err(|e| ControlError::Invalid(format!("WARD_MASTER_KEY: {e}"))),
        MasterKeySource::DataDirFile => {
            let path = data_dir.join("master.key");
            let (hex, generated) =
                load_or_generate_secret(&path).map_err(|e| ControlError::Invalid(e.to_string()))?;
            if generated {
                tracing::warn!(
                    path = %path.display(),
                    "generated a new master key; every clinic's data depends on it, so back it up, and set WARD_MASTER_KEY in production"
                );
            }
            MasterKey::from_hex(&hex)
                .map_err(|e| ControlError::Invalid(format!("{}: {e}", path.display())))
        }
    }
}
