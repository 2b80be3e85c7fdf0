//! Backups of every clinic and of the control plane: taking them, checking them, keeping
//! the right ones, drills, and restores.
//!
//! Layout of the backup directory (`WARD_BACKUP_DIR`, default `<data>/backups/`), every
//! name built from ids and times only:
//!
//! ```text
//! clinics/<clinic uuid>/<YYYYMMDDTHHMMSS.mmmZ>-<backup uuid>.db    encrypted snapshot
//! clinics/<clinic uuid>/<YYYYMMDDTHHMMSS.mmmZ>-<backup uuid>.json  its manifest
//! control/<YYYYMMDDTHHMMSS.mmmZ>-<backup uuid>.db|.json            the control plane
//! tmp/                                                             scratch for checks
//! ```
//!
//! A manifest repeats the catalog row (no clinic data), so the folder describes itself:
//! the control plane can be restored without a working `control.db`, and backups the
//! catalog does not know (taken after the restored control-plane backup) are adopted.
//! The catalog's `kind` and `target` columns leave room for WAL segments between
//! snapshots and an object-store target behind the same [`RestoreTarget`] interface.
//!
//! One module per job: `take` takes backups (one scope, a pass, the daily schedule),
//! `verify` checks them (after each backup, and in drills), `retention` drops the
//! ones the tiers no longer keep, `manifests` writes the manifests and adopts backups
//! the catalog does not know, `restore` restores a clinic and `control_restore` the
//! control plane.

mod control_restore;
mod manifests;
mod restore;
mod retention;
mod take;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use uuid::Uuid;
use ward_tenancy::TenantStore;
use ward_tenancy::backup::{AuditTableReadable, ContentCheck};

use crate::ControlPlane;

pub use control_restore::{ControlRestoreReport, ServeGuard, restore_control_plane};
pub(crate) use control_restore::{held_by, pid_lock};
pub use manifests::Manifest;
pub use restore::{
    NoClinicAuditLog, RestoreAudit, RestoreAuditEntry, RestoreReport, RestoreTarget,
};
pub use retention::retention_plan;
pub use take::PassSummary;
pub use verify::DrillSummary;

/// How backups are taken and kept.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// The backup directory (`WARD_BACKUP_DIR`); meant to be another disk than the data.
    pub dir: PathBuf,
    /// Every backup younger than this is kept (default 48 hours).
    pub keep_all: TimeDelta,
    /// Beyond that, the newest good backup of each of this many UTC days (default 35).
    pub keep_daily_days: u32,
    /// Most backups or checks running at once (`WARD_BACKUP_PARALLEL`, default 2).
    pub parallel: usize,
}

impl BackupConfig {
    /// The defaults, writing to `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            keep_all: TimeDelta::hours(48),
            keep_daily_days: 35,
            parallel: 2,
        }
    }
}

/// One scope that failed, and why (for the operator; no clinic data).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// `control` or the clinic id.
    pub scope: String,
    /// The backup concerned, if one was written.
    pub backup_id: Option<Uuid>,
    /// What went wrong.
    pub reason: String,
}

/// Backups of one data directory.
pub struct Backups {
    control: Arc<ControlPlane>,
    tenants: TenantStore,
    config: BackupConfig,
    check: Arc<dyn ContentCheck>,
    audit: Arc<dyn RestoreAudit>,
}

/// A progress callback: one call per scope done.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

impl Backups {
    /// Backups of `control`'s clinics (opened through `tenants`) into `config.dir`, with
    /// the stand-in content check and audit hook.
    pub fn new(control: Arc<ControlPlane>, tenants: TenantStore, config: BackupConfig) -> Self {
        Self {
            control,
            tenants,
            config,
            check: Arc::new(AuditTableReadable),
            audit: Arc::new(NoClinicAuditLog),
        }
    }

    /// Uses `check` (the audit chain verifier) on every restored copy.
    pub fn with_content_check(mut self, check: Arc<dyn ContentCheck>) -> Self {
        self.check = check;
        self
    }

    /// Uses `audit` to write the restore entry into restored clinics.
    pub fn with_restore_audit(mut self, audit: Arc<dyn RestoreAudit>) -> Self {
        self.audit = audit;
        self
    }

    /// The settings.
    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    fn now(&self) -> DateTime<Utc> {
        self.control.clock.now()
    }

    fn scratch(&self) -> PathBuf {
        self.config.dir.join("tmp")
    }
}
