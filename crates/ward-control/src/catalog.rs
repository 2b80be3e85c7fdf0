//! The backup catalog in the control plane: which backups exist, whether they passed
//! their checks, what the scheduler last saw, and every restore.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use ward_core::{Actor, ClinicId, format_time, parse_time};
use ward_tenancy::backup::ChainHead;
use ward_tenancy::sql::Row;

use crate::members::clinic_event;
use crate::store::all_rows;
use crate::{ControlError, ControlPlane};

/// What a backup is of: one clinic, or the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The control plane (`control.db`).
    Control,
    /// One clinic's database.
    Clinic(ClinicId),
}

impl Scope {
    /// The catalog's name for it: `control` or the clinic id.
    pub fn key(&self) -> String {
        match self {
            Self::Control => "control".to_owned(),
            Self::Clinic(id) => id.to_string(),
        }
    }

    /// Parses [`Scope::key`].
    pub fn parse(s: &str) -> Option<Self> {
        if s == "control" {
            Some(Self::Control)
        } else {
            ClinicId::parse(s).ok().map(Self::Clinic)
        }
    }

    /// Its folder under the backup directory, from the UUID alone.
    pub fn folder(&self) -> String {
        match self {
            Self::Control => "control".to_owned(),
            Self::Clinic(id) => format!("clinics/{id}"),
        }
    }

    fn clinic_column(&self) -> Option<String> {
        match self {
            Self::Control => None,
            Self::Clinic(id) => Some(id.to_string()),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Control => f.write_str("the control plane"),
            Self::Clinic(id) => write!(f, "clinic {id}"),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.key())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("not a backup scope"))
    }
}

/// One catalogued backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupRecord {
    /// Its id (UUID v7), also in its file name.
    pub id: Uuid,
    /// What it is a backup of.
    pub scope: Scope,
    /// `snapshot` (later also `wal_segment`).
    pub kind: String,
    /// Where: `dir` is the backup directory.
    pub target: String,
    /// Path relative to the target.
    pub file: String,
    /// The moment it represents.
    pub taken_at: DateTime<Utc>,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Schema version of the copy.
    pub schema_version: u32,
    /// Audit chain head of the copy, when known.
    pub chain_head: Option<ChainHead>,
    /// Why it was taken: `schedule`, `daily`, `operator`, `adopted`.
    pub trigger: String,
    /// When it last passed a check.
    pub verified_at: Option<DateTime<Utc>>,
    /// Why a check failed; such a backup is never restored from.
    pub verify_error: Option<String>,
    /// When retention removed it.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl BackupRecord {
    /// Verified, not failed, not deleted: usable for a restore.
    pub fn is_good(&self) -> bool {
        self.verified_at.is_some() && self.verify_error.is_none() && self.deleted_at.is_none()
    }
}

const COLUMNS: &str = "id, clinic_id, kind, target, file, taken_at, size, sha256, schema_version, audit_seq, audit_hash, trigger, verified_at, verify_error, deleted_at";

fn bad(what: &str) -> ControlError {
    ControlError::Invalid(format!("the backup catalog holds an invalid {what}"))
}

fn time(row: &Row, i: i32) -> Result<Option<DateTime<Utc>>, ControlError> {
    Ok(row.get::<Option<String>>(i)?.and_then(|t| parse_time(&t)))
}

impl BackupRecord {
    fn from_row(row: &Row) -> Result<Self, ControlError> {
        let scope = match row.get::<Option<String>>(1)? {
            None => Scope::Control,
            Some(c) => Scope::Clinic(ClinicId::parse(&c).map_err(|_| bad("clinic id"))?),
        };
        let chain_head = match (row.get::<Option<i64>>(9)?, row.get::<Option<String>>(10)?) {
            (Some(seq), Some(hash)) => Some(ChainHead { seq, hash }),
            _ => None,
        };
        Ok(Self {
            id: Uuid::parse_str(&row.get::<String>(0)?).map_err(|_| bad("backup id"))?,
            scope,
            kind: row.get(2)?,
            target: row.get(3)?,
            file: row.get(4)?,
            taken_at: time(row, 5)?.ok_or_else(|| bad("time"))?,
            size: row.get(6)?,
            sha256: row.get(7)?,
            schema_version: row.get(8)?,
            chain_head,
            trigger: row.get(11)?,
            verified_at: time(row, 12)?,
            verify_error: row.get(13)?,
            deleted_at: time(row, 14)?,
        })
    }
}

/// What the scheduler last saw of one scope.
#[derive(Debug, Clone, Default)]
pub struct BackupState {
    /// File summary when the last backup began.
    pub fingerprint: Option<String>,
    /// `taken_at` of the newest backup.
    pub last_backup_at: Option<DateTime<Utc>>,
    /// `taken_at` of the newest verified backup.
    pub last_verified_at: Option<DateTime<Utc>>,
}

/// A clinic whose backups need the operator's attention (ids and times only).
#[derive(Debug, Clone, Serialize)]
pub struct BackupAttention {
    /// `control` or the clinic id.
    pub scope: String,
    /// Age of its newest verified backup, if it has one.
    pub newest_verified_at: Option<DateTime<Utc>>,
    /// Whether its last backup or check failed.
    pub failed: bool,
    /// Last drill: when and whether it passed.
    pub drill_at: Option<DateTime<Utc>>,
    /// Whether the last drill passed.
    pub drill_ok: Option<bool>,
}

/// The backup summary on `/status`: no clinic data, ids only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupOverview {
    /// Scopes with at least one verified backup.
    pub scopes_verified: u64,
    /// Oldest "newest verified backup" over all scopes: the worst recovery point.
    pub stalest_verified_at: Option<DateTime<Utc>>,
    /// Newest verified backup of the control plane.
    pub control_verified_at: Option<DateTime<Utc>>,
    /// Last drill: when, how many passed, how many failed.
    pub drill_at: Option<DateTime<Utc>>,
    /// Scopes whose last drill passed.
    pub drill_passed: u64,
    /// Scopes whose last drill failed.
    pub drill_failed: u64,
    /// Scopes needing attention: failed backup, check or drill (at most 100).
    pub attention: Vec<BackupAttention>,
}

/// A new catalog row, and what the scheduler should remember with it.
pub(crate) struct NewBackup<'a> {
    pub record: &'a BackupRecord,
    /// File summary seen before the backup began (`None`: leave the stored one).
    pub fingerprint: Option<String>,
    pub now: DateTime<Utc>,
}

impl ControlPlane {
    /// Catalogs a backup (ignored if its id is already known) and updates its scope's
    /// scheduler state, in one transaction (one commit per backup).
    pub(crate) async fn record_new_backup(&self, new: NewBackup<'_>) -> Result<(), ControlError> {
        let r = new.record;
        let row = ward_tenancy::sql::params![
            r.id.to_string(),
            r.scope.clinic_column(),
            r.kind.clone(),
            r.target.clone(),
            r.file.clone(),
            format_time(r.taken_at),
            r.size,
            r.sha256.clone(),
            r.schema_version,
            r.chain_head.as_ref().map(|h| h.seq),
            r.chain_head.as_ref().map(|h| h.hash.clone()),
            r.trigger.clone(),
            r.verified_at.map(format_time),
            r.verify_error.clone(),
        ];
        let verified = r.verify_error.is_none() && r.verified_at.is_some();
        let taken = format_time(r.taken_at);
        let state = ward_tenancy::sql::params![
            r.scope.key(),
            new.fingerprint,
            taken.clone(),
            verified.then(|| taken.clone()),
            r.verify_error.clone(),
            format_time(new.now),
        ];
        let adopted = r.trigger == "adopted";
        self.transaction(|conn| async move {
            conn.execute(
                "INSERT INTO backups (id, clinic_id, kind, target, file, taken_at, size, sha256, schema_version, audit_seq, audit_hash, trigger, verified_at, verify_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT (id) DO NOTHING",
                row,
            )
            .await?;
            if !adopted {
                conn.execute(
                    "INSERT INTO backup_state (scope, fingerprint, last_backup_at, last_verified_at, last_error, last_error_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?5 IS NULL THEN NULL ELSE ?6 END)
                     ON CONFLICT (scope) DO UPDATE SET
                       fingerprint = coalesce(excluded.fingerprint, fingerprint),
                       last_backup_at = max(coalesce(last_backup_at, ''), excluded.last_backup_at),
                       last_verified_at = CASE WHEN excluded.last_verified_at IS NULL THEN last_verified_at
                                               ELSE max(coalesce(last_verified_at, ''), excluded.last_verified_at) END,
                       last_error = excluded.last_error,
                       last_error_at = excluded.last_error_at",
                    state,
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// Records the outcome of checking backup `id`.
    pub(crate) async fn record_verification(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<(), ControlError> {
        let (id, at, error) = (id.to_string(), format_time(at), error.map(str::to_owned));
        self.with(|conn| async move {
            match error {
                None => {
                    conn.execute(
                        "UPDATE backups SET verified_at = ?2 WHERE id = ?1 AND verify_error IS NULL",
                        [id, at],
                    )
                    .await
                }
                Some(e) => {
                    conn.execute(
                        "UPDATE backups SET verify_error = ?2, verified_at = NULL WHERE id = ?1",
                        [id, e],
                    )
                    .await
                }
            }
        })
        .await?;
        Ok(())
    }

    /// The backups of `scope`, newest first; deleted ones only when asked.
    pub async fn list_backups(
        &self,
        scope: Scope,
        include_deleted: bool,
    ) -> Result<Vec<BackupRecord>, ControlError> {
        let deleted = if include_deleted {
            ""
        } else {
            " AND deleted_at IS NULL"
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM backups WHERE clinic_id IS ?1{deleted} ORDER BY taken_at DESC, id DESC"
        );
        let clinic = scope.clinic_column();
        self.query_rows(
            &sql,
            ward_tenancy::sql::params![clinic],
            BackupRecord::from_row,
        )
        .await
    }

    /// Backup `id`, if catalogued.
    pub async fn backup_by_id(&self, id: Uuid) -> Result<Option<BackupRecord>, ControlError> {
        let sql = format!("SELECT {COLUMNS} FROM backups WHERE id = ?1");
        self.with(|conn| async move {
            let mut rows = conn.query(&sql, [id.to_string()]).await?;
            match rows.next().await? {
                Some(row) => Ok(Some(BackupRecord::from_row(&row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    pub(crate) async fn mark_backups_deleted(
        &self,
        ids: &[Uuid],
        at: DateTime<Utc>,
    ) -> Result<(), ControlError> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let at = format_time(at);
        self.transaction(|conn| async move {
            for id in ids {
                conn.execute(
                    "UPDATE backups SET deleted_at = ?2 WHERE id = ?1",
                    [id, at.clone()],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// Every scope's scheduler state, in one query.
    pub(crate) async fn backup_states(&self) -> Result<HashMap<String, BackupState>, ControlError> {
        let states = self
            .query_rows(
                "SELECT scope, fingerprint, last_backup_at, last_verified_at FROM backup_state",
                (),
                |row| {
                    let state = BackupState {
                        fingerprint: row.get(1)?,
                        last_backup_at: time(row, 2)?,
                        last_verified_at: time(row, 3)?,
                    };
                    Ok((row.get::<String>(0)?, state))
                },
            )
            .await?;
        Ok(states.into_iter().collect())
    }

    /// A backup of `scope` could not be taken at all.
    pub(crate) async fn record_backup_failure(
        &self,
        scope: Scope,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ControlError> {
        let (scope, error, now) = (scope.key(), error.to_owned(), format_time(now));
        self.execute(
            "INSERT INTO backup_state (scope, last_error, last_error_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (scope) DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at",
            [scope, error, now],
        )
        .await?;
        Ok(())
    }

    /// The outcome of a restore drill of `scope`; a pass also refreshes the newest
    /// verified time.
    pub(crate) async fn record_drill(
        &self,
        scope: Scope,
        at: DateTime<Utc>,
        error: Option<&str>,
        verified_taken_at: Option<DateTime<Utc>>,
    ) -> Result<(), ControlError> {
        let scope = scope.key();
        let at = format_time(at);
        let ok = i64::from(error.is_none());
        let error = error.map(str::to_owned);
        let verified = verified_taken_at.map(format_time);
        self.execute(
            "INSERT INTO backup_state (scope, drill_at, drill_ok, drill_error, last_verified_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (scope) DO UPDATE SET drill_at = excluded.drill_at, drill_ok = excluded.drill_ok,
                   drill_error = excluded.drill_error,
                   last_verified_at = CASE WHEN excluded.last_verified_at IS NULL THEN last_verified_at
                                           ELSE max(coalesce(last_verified_at, ''), excluded.last_verified_at) END",
            ward_tenancy::sql::params![scope, at, ok, error, verified],
        )
        .await?;
        Ok(())
    }

    /// Recomputes `scope`'s newest verified backup from the catalog (after a backup
    /// failed a check or was removed).
    pub(crate) async fn refresh_verified_state(&self, scope: Scope) -> Result<(), ControlError> {
        let (key, clinic) = (scope.key(), scope.clinic_column());
        self.execute(
            "UPDATE backup_state SET last_verified_at = (SELECT max(taken_at) FROM backups WHERE clinic_id IS ?2 AND verified_at IS NOT NULL AND verify_error IS NULL AND deleted_at IS NULL) WHERE scope = ?1",
            ward_tenancy::sql::params![key, clinic],
        )
        .await?;
        Ok(())
    }

    /// When the daily job `job` last ran.
    pub(crate) async fn job_ran_at(
        &self,
        job: &str,
    ) -> Result<Option<DateTime<Utc>>, ControlError> {
        let job = job.to_owned();
        let ran_at = self
            .query_row(
                "SELECT ran_at FROM backup_schedule WHERE job = ?1",
                [job],
                |row| Ok(row.get::<String>(0)?),
            )
            .await?;
        Ok(ran_at.and_then(|t| parse_time(&t)))
    }

    pub(crate) async fn set_job_ran_at(
        &self,
        job: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ControlError> {
        let (job, at) = (job.to_owned(), format_time(at));
        self.execute(
            "INSERT INTO backup_schedule (job, ran_at) VALUES (?1, ?2) ON CONFLICT (job) DO UPDATE SET ran_at = excluded.ran_at",
            [job, at],
        )
        .await?;
        Ok(())
    }

    /// Records a restore in the restore log (and, for a clinic, its lifecycle events).
    #[expect(clippy::too_many_arguments, reason = "one row, every column named")]
    pub(crate) async fn record_restore(
        &self,
        scope: Scope,
        backup: &BackupRecord,
        at: DateTime<Utc>,
        actor: &Actor,
        reason: &str,
        pre_restore: Option<String>,
        detail: &str,
    ) -> Result<(), ControlError> {
        let key = scope.key();
        let backup_id = backup.id.to_string();
        let backup_at = format_time(backup.taken_at);
        let at = format_time(at);
        let (actor, reason, detail) = (actor.clone(), reason.to_owned(), detail.to_owned());
        self.transaction(|conn| async move {
            conn.execute(
                "INSERT INTO restores (scope, backup_id, backup_at, at, actor, reason, pre_restore, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                ward_tenancy::sql::params![key, backup_id.clone(), backup_at.clone(), at.clone(), actor.to_string(), reason.clone(), pre_restore, detail],
            )
            .await?;
            if let Scope::Clinic(clinic) = scope {
                let event = serde_json::json!({
                    "backup_id": backup_id, "backup_at": backup_at, "reason": reason,
                });
                clinic_event(&conn, clinic, &at, "restored", &actor, event).await?;
            }
            Ok(())
        })
        .await
    }

    /// The backup summary for `/status`.
    pub async fn backup_overview(&self) -> Result<BackupOverview, ControlError> {
        self.with(|conn| async move {
            let mut o = BackupOverview::default();
            if let Some(row) = ward_tenancy::db::first_row(
                &conn,
                "SELECT count(last_verified_at), min(last_verified_at), max(drill_at),
                        sum(drill_ok = 1), sum(drill_ok = 0),
                        (SELECT last_verified_at FROM backup_state WHERE scope = 'control')
                 FROM backup_state
                 WHERE scope = 'control' OR scope IN (SELECT id FROM clinics WHERE status != 'purged')",
                (),
            )?
            {
                o.scopes_verified = row.get::<u64>(0)?;
                o.stalest_verified_at = time(&row, 1)?;
                o.drill_at = time(&row, 2)?;
                o.drill_passed = row.get::<Option<u64>>(3)?.unwrap_or(0);
                o.drill_failed = row.get::<Option<u64>>(4)?.unwrap_or(0);
                o.control_verified_at = time(&row, 5)?;
            }
            o.attention = all_rows(
                &conn,
                "SELECT scope, last_verified_at, last_error IS NOT NULL, drill_at, drill_ok FROM backup_state
                 WHERE (last_error IS NOT NULL OR drill_ok = 0)
                   AND (scope = 'control' OR scope IN (SELECT id FROM clinics WHERE status != 'purged'))
                 ORDER BY scope LIMIT 100",
                (),
                |row| {
                    Ok(BackupAttention {
                        scope: row.get(0)?,
                        newest_verified_at: time(row, 1)?,
                        failed: row.get::<i64>(2)? != 0,
                        drill_at: time(row, 3)?,
                        drill_ok: row.get::<Option<i64>>(4)?.map(|v| v != 0),
                    })
                },
            )
            .await?;
            Ok(o)
        })
        .await
    }
}
