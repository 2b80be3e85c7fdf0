//! A clinic's lifecycle after creation: suspend, resume, close, reopen, purge.
//!
//! Closing starts the retention clock (`WARD_RETENTION_DAYS`, 90 by default); a closed
//! clinic can be reopened until the grace period ends, after which `ward purge` (and the
//! daily pass in `ward serve`) destroys it: the wrapped data key first — from then on
//! every copy anywhere is unreadable — then the files. The registry row stays as a
//! tombstone (id, slug, name, closed and purged times, who closed it). Every transition
//! is a `clinic_events` row.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use ward_core::{Actor, ClinicId, ClinicStatus, format_time, parse_time};
use ward_tenancy::db::first_row;
use ward_tenancy::{TenantStore, blocking};

use crate::clinics::clinic_row;
use crate::members::insert_clinic_event;
use crate::{ClinicRecord, ControlError, ControlPlane};

/// The default grace period between closing and purging.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// A change of status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Active → suspended (blocks access; no retention clock).
    Suspend,
    /// Suspended → active.
    Resume,
    /// Active or suspended → closed (starts the retention clock).
    Close,
    /// Closed → active, within the grace period.
    Reopen,
}

impl Transition {
    /// The `clinic_events` kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspend => "suspended",
            Self::Resume => "resumed",
            Self::Close => "closed",
            Self::Reopen => "reopened",
        }
    }

    fn allowed_from(self) -> &'static [&'static str] {
        match self {
            Self::Suspend => &["active"],
            Self::Resume => &["suspended"],
            Self::Close => &["active", "suspended"],
            Self::Reopen => &["closed"],
        }
    }

    fn target(self) -> ClinicStatus {
        match self {
            Self::Suspend => ClinicStatus::Suspended,
            Self::Close => ClinicStatus::Closed,
            Self::Resume | Self::Reopen => ClinicStatus::Active,
        }
    }
}

/// What the control plane keeps of a purged clinic, and the lifecycle fields of any.
#[derive(Debug, Clone, Serialize)]
pub struct Tombstone {
    /// Permanent id.
    pub id: ClinicId,
    /// URL name it had.
    pub slug: String,
    /// Name it had.
    pub name: String,
    /// Status now.
    pub status: ClinicStatus,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// When its key was destroyed.
    pub purged_at: Option<DateTime<Utc>>,
    /// Whether the wrapped data key is still stored.
    pub has_key: bool,
}

impl ControlPlane {
    /// Moves clinic `id` through `transition`, recording who and why; refused when the
    /// clinic is not in a state the transition starts from, and a reopen after the
    /// grace period `retention` has ended.
    pub async fn transition_clinic(
        &self,
        id: ClinicId,
        transition: Transition,
        actor: &Actor,
        reason: &str,
        retention: TimeDelta,
    ) -> Result<ClinicRecord, ControlError> {
        let _memberships = self.cache.memberships_changing();
        let now = self.clock.now();
        let at = format_time(now);
        let actor = actor.clone();
        let detail = (!reason.trim().is_empty()).then(|| reason.trim().to_owned());
        self.transaction(|conn| async move {
            let row = clinic_row(&conn, "SELECT status, closed_at FROM clinics WHERE id = ?1", id)?;
            let status: String = row.get(0)?;
            let closed_at: Option<String> = row.get(1)?;
            if !transition.allowed_from().contains(&status.as_str()) {
                return Err(ControlError::Invalid(format!(
                    "the clinic is {status}; it cannot be {}",
                    transition.as_str()
                )));
            }
            if transition == Transition::Reopen {
                let closed = closed_at.as_deref().and_then(parse_time);
                if closed.is_none_or(|c| now >= c + retention) {
                    return Err(ControlError::Invalid(
                        "the grace period has ended: the clinic is due to be purged and cannot be reopened".into(),
                    ));
                }
            }
            let target = transition.target().as_str();
            match transition {
                Transition::Close => {
                    conn.execute(
                        "UPDATE clinics SET status = ?2, closed_at = ?3, closed_by = ?4 WHERE id = ?1",
                        ward_tenancy::sql::params![id.to_string(), target, at.as_str(), actor.to_string()],
                    )
                    .await?
                }
                Transition::Reopen => {
                    conn.execute(
                        "UPDATE clinics SET status = ?2, closed_at = NULL, closed_by = NULL WHERE id = ?1",
                        ward_tenancy::sql::params![id.to_string(), target],
                    )
                    .await?
                }
                Transition::Suspend | Transition::Resume => {
                    conn.execute(
                        "UPDATE clinics SET status = ?2 WHERE id = ?1",
                        ward_tenancy::sql::params![id.to_string(), target],
                    )
                    .await?
                }
            };
            insert_clinic_event(&conn, id, &at, transition.as_str(), &actor, detail.as_deref())
                .await?;
            Ok(())
        })
        .await?;
        self.clinic_by_id(id).await
    }

    /// The lifecycle fields of clinic `id` (for a purged clinic: its tombstone).
    pub async fn tombstone(&self, id: ClinicId) -> Result<Tombstone, ControlError> {
        self.with(|conn| async move {
            let row = clinic_row(&conn, "SELECT slug, name, status, closed_at, closed_by, purged_at, wrapped_key IS NOT NULL FROM clinics WHERE id = ?1", id)?;
            let time = |s: Option<String>| s.and_then(|t| parse_time(&t));
            Ok(Tombstone {
                id,
                slug: row.get(0)?,
                name: row.get(1)?,
                status: ClinicStatus::parse(&row.get::<String>(2)?)
                    .map_err(|e| ControlError::Invalid(e.to_string()))?,
                closed_at: time(row.get(3)?),
                closed_by: row.get(4)?,
                purged_at: time(row.get(5)?),
                has_key: row.get::<i64>(6)? != 0,
            })
        })
        .await
    }

    /// Clinics due for purging at `now`: closed at least `retention` ago, and purged
    /// ones whose files may still be on disk (a purge interrupted after the key went).
    pub async fn purge_due(&self, retention: TimeDelta) -> Result<Vec<Tombstone>, ControlError> {
        let cutoff = format_time(self.clock.now() - retention);
        let ids: Vec<String> = self
            .query_rows(
                "SELECT id FROM clinics WHERE (status = 'closed' AND closed_at <= ?1) OR status = 'purged' ORDER BY closed_at",
                [cutoff],
                |row| Ok(row.get::<String>(0)?),
            )
            .await?;
        let mut out = Vec::new();
        for id in ids {
            let id = ClinicId::parse(&id)
                .map_err(|_| ControlError::Invalid("an invalid clinic id".into()))?;
            out.push(self.tombstone(id).await?);
        }
        Ok(out)
    }

    /// Purge step one: forgets the clinic's wrapped data key and marks it purged. Once
    /// this commits, nothing can decrypt the clinic's files or backups. Idempotent.
    pub async fn destroy_clinic_key(
        &self,
        id: ClinicId,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        let _memberships = self.cache.memberships_changing();
        let at = format_time(self.clock.now());
        let actor = actor.clone();
        self.transaction(|conn| async move {
            let changed = conn
                .execute(
                    "UPDATE clinics SET wrapped_key = NULL, status = 'purged', purged_at = coalesce(purged_at, ?2) WHERE id = ?1 AND (wrapped_key IS NOT NULL OR status <> 'purged')",
                    ward_tenancy::sql::params![id.to_string(), at.as_str()],
                )
                .await?;
            if changed > 0 {
                insert_clinic_event(&conn, id, &at, "key_destroyed", &actor, None).await?;
            }
            Ok(())
        })
        .await
    }

    /// Removes the backup catalog rows of clinic `id` and records that the purge
    /// finished (once).
    async fn finish_purge(&self, id: ClinicId, actor: &Actor) -> Result<(), ControlError> {
        let at = format_time(self.clock.now());
        let actor = actor.clone();
        self.transaction(|conn| async move {
            conn.execute("DELETE FROM backups WHERE clinic_id = ?1", [id.to_string()])
                .await?;
            conn.execute(
                "DELETE FROM backup_state WHERE scope = ?1",
                [id.to_string()],
            )
            .await?;
            let done = first_row(
                &conn,
                "SELECT 1 FROM clinic_events WHERE clinic_id = ?1 AND kind = 'purged'",
                [id.to_string()],
            )?
            .is_some();
            if !done {
                let detail = Some("files, exports and backups deleted");
                insert_clinic_event(&conn, id, &at, "purged", &actor, detail).await?;
            }
            Ok(())
        })
        .await
    }

    /// Removes a clinic that was created moments ago and never used (an import that
    /// was refused): its file and its registry rows, as if it had never been.
    pub async fn discard_new_clinic(
        &self,
        id: ClinicId,
        store: &TenantStore,
    ) -> Result<(), ControlError> {
        let _memberships = self.cache.memberships_changing();
        store.evict(id).await;
        let path = store.path_of(id);
        blocking(async { remove_clinic_files(&path) }).await?;
        self.transaction(|conn| async move {
            for sql in [
                "DELETE FROM clinic_events WHERE clinic_id = ?1",
                "DELETE FROM audit_anchors WHERE clinic_id = ?1",
                "DELETE FROM memberships WHERE clinic_id = ?1",
                "DELETE FROM jobs WHERE clinic_id = ?1",
                "DELETE FROM clinics WHERE id = ?1",
            ] {
                conn.execute(sql, [id.to_string()]).await?;
            }
            Ok(())
        })
        .await
    }
}

/// Deletes a clinic's database file and everything beside it named after it (WAL,
/// SHM, pin, lock, pre-restore copies). Missing files are fine.
fn remove_clinic_files(db: &Path) -> Result<Vec<PathBuf>, ControlError> {
    let mut removed = Vec::new();
    let (Some(dir), Some(stem)) = (db.parent(), db.file_stem()) else {
        return Ok(removed);
    };
    let stem = stem.to_string_lossy().into_owned();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == stem
            || name.starts_with(&format!("{stem}."))
            || name.starts_with(&format!("{stem}-"))
        {
            remove_path(&entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

fn remove_path(p: &Path) -> Result<(), ControlError> {
    let result = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(p, e)),
    }
}

fn io(p: &Path, e: std::io::Error) -> ControlError {
    ControlError::Invalid(format!("cannot remove {}: {e}", p.display()))
}

/// What one clinic's purge did or would do.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeItem {
    /// The clinic.
    pub clinic: Tombstone,
    /// Files and folders deleted (or that would be).
    pub paths: Vec<PathBuf>,
    /// Whether anything was done (false on a dry run).
    pub done: bool,
}

/// Purges clinics past their grace period.
pub struct Purger {
    control: std::sync::Arc<ControlPlane>,
    tenants: TenantStore,
    backup_dir: PathBuf,
    exports_dir: PathBuf,
    retention: TimeDelta,
    before: Option<std::sync::Arc<dyn BeforePurge>>,
}

/// Work a purge does for a clinic while its key still exists, before destroying it
/// (deleting the clinic's attachment objects, which only its database names).
#[async_trait::async_trait]
pub trait BeforePurge: Send + Sync {
    /// Runs before clinic `id`'s key is destroyed. An error leaves that clinic for the
    /// next run.
    async fn before_purge(&self, id: ClinicId) -> Result<(), String>;
}

impl Purger {
    /// A purger over the data directory's clinics, `backup_dir` and `exports_dir`.
    pub fn new(
        control: std::sync::Arc<ControlPlane>,
        tenants: TenantStore,
        backup_dir: PathBuf,
        exports_dir: PathBuf,
        retention: TimeDelta,
    ) -> Self {
        Self {
            control,
            tenants,
            backup_dir,
            exports_dir,
            retention,
            before: None,
        }
    }

    /// The same purger, running `hook` for each clinic before its key is destroyed.
    pub fn with_before(mut self, hook: std::sync::Arc<dyn BeforePurge>) -> Self {
        self.before = Some(hook);
        self
    }

    /// Every file and folder that belongs to clinic `id`.
    fn paths_of(&self, id: ClinicId) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let db = self.tenants.path_of(id);
        let uuid = id.to_string();
        let mut scan = |dir: &Path| {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&uuid) {
                        out.push(e.path());
                    }
                }
            }
        };
        if let Some(dir) = db.parent() {
            scan(dir);
        }
        scan(&self.exports_dir);
        let backups = self.backup_dir.join("clinics").join(&uuid);
        if backups.exists() {
            out.push(backups);
        }
        out.sort();
        out
    }

    /// Purges (or with `dry_run`, lists) every clinic due. Each clinic's key is
    /// destroyed before any of its files are touched; re-running after a crash at any
    /// step finishes the work.
    pub async fn run(&self, actor: &Actor, dry_run: bool) -> Result<Vec<PurgeItem>, ControlError> {
        let due = self.control.purge_due(self.retention).await?;
        let mut out = Vec::new();
        for clinic in due {
            let id = clinic.id;
            let paths = blocking(async { self.paths_of(id) }).await;
            if clinic.status == ClinicStatus::Purged && !clinic.has_key && paths.is_empty() {
                // Already gone; only catalog rows could be left from an interrupted run.
                if !dry_run {
                    self.control.finish_purge(id, actor).await?;
                }
                continue;
            }
            if dry_run {
                out.push(PurgeItem {
                    clinic,
                    paths,
                    done: false,
                });
                continue;
            }
            if let Some(hook) = &self.before
                && clinic.has_key
                && let Err(e) = hook.before_purge(id).await
            {
                tracing::error!(clinic = %id, error = %e, "a purge step failed; the clinic is purged on the next run");
                continue;
            }
            self.control.destroy_clinic_key(id, actor).await?;
            self.tenants.evict(id).await;
            blocking(async {
                for p in &paths {
                    remove_path(p)?;
                }
                Ok::<_, ControlError>(())
            })
            .await?;
            self.control.finish_purge(id, actor).await?;
            tracing::info!(clinic = %id, files = paths.len(), "clinic purged");
            out.push(PurgeItem {
                clinic: self.control.tombstone(id).await?,
                paths,
                done: true,
            });
        }
        if !dry_run {
            let pruned = self.prune_control_copies().await?;
            if !pruned.is_empty() {
                tracing::info!(
                    files = pruned.len(),
                    "old pre-restore copies of the control plane deleted"
                );
            }
        }
        Ok(out)
    }

    /// Deletes `control.db.pre-restore-<time>` copies older than
    /// [`KEEP_CONTROL_COPIES`]: they hold every clinic's wrapped key as it was, a purged
    /// clinic's included, so keeping them for ever would keep that key for ever.
    /// Returns what was deleted.
    pub async fn prune_control_copies(&self) -> Result<Vec<PathBuf>, ControlError> {
        let Some(dir) = self.control.path().parent().map(Path::to_owned) else {
            return Ok(Vec::new());
        };
        let cut = self.control.clock().now() - KEEP_CONTROL_COPIES;
        blocking(async move {
            let mut gone = Vec::new();
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Ok(gone);
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix("control.db.pre-restore-") else {
                    continue;
                };
                let stamp = rest.split('-').next().unwrap_or(rest);
                let Ok(at) = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ")
                else {
                    continue;
                };
                if at.and_utc() < cut {
                    remove_path(&e.path())?;
                    gone.push(e.path());
                }
            }
            gone.sort();
            Ok::<_, ControlError>(gone)
        })
        .await
    }
}

/// How long a pre-restore copy of the control plane is kept: as long as the daily
/// backups of the control plane (35 by default), so no copy outlives them.
pub const KEEP_CONTROL_COPIES: TimeDelta = TimeDelta::days(35);

/// The retention period from `WARD_RETENTION_DAYS`-style days.
pub fn retention_days(days: u32) -> TimeDelta {
    TimeDelta::days(i64::from(days))
}

/// One member of a clinic's staff as the export lists them: no credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StaffEntry {
    /// Account id.
    pub user_id: String,
    /// Name.
    pub name: String,
    /// Sign-in address.
    pub email: String,
    /// Role in the clinic.
    pub role: String,
    /// Member since.
    pub member_since: String,
}

impl ControlPlane {
    /// Clinic `id`'s staff, oldest member first.
    pub async fn clinic_staff(&self, id: ClinicId) -> Result<Vec<StaffEntry>, ControlError> {
        self.query_rows(
            "SELECT u.id AS user_id, u.name, u.email, m.role, m.created_at AS member_since \
             FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.clinic_id = ?1 \
             ORDER BY m.created_at, u.id",
            [id.to_string()],
            |row| Ok(row.decode()?),
        )
        .await
    }
}
