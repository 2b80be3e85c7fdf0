//! A durable job queue in the control plane (`jobs`): work a page asks for (an export)
//! is queued here and done by a worker in `ward serve`, so it survives a restart.

use ward_core::{ClinicId, format_time};

use crate::{ControlError, ControlPlane};

/// A job a worker has claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// What it is for.
    pub clinic_id: Option<ClinicId>,
    /// Kind-specific data (JSON).
    pub payload: String,
    /// How many times it has been started, this one included.
    pub attempts: i64,
}

/// How many jobs wait and run (for the operator's metrics and status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct JobCounts {
    /// Queued, due or not.
    pub queued: u64,
    /// Claimed by a worker and not finished.
    pub running: u64,
}

impl ControlPlane {
    /// How many jobs are queued and running, over every kind.
    pub async fn job_counts(&self) -> Result<JobCounts, ControlError> {
        self.with(|conn| async move {
            let mut rows = conn
                .query(
                    "SELECT COALESCE(SUM(status = 'queued'), 0), COALESCE(SUM(status = 'running'), 0) \
                     FROM jobs WHERE status IN ('queued', 'running')",
                    (),
                )
                .await?;
            match rows.next().await? {
                Some(row) => Ok(JobCounts {
                    queued: row.get(0)?,
                    running: row.get(1)?,
                }),
                None => Ok(JobCounts::default()),
            }
        })
        .await
    }

    /// Queues a job of `kind`; returns its id.
    pub async fn enqueue_job(
        &self,
        kind: &str,
        clinic_id: Option<ClinicId>,
        payload: &str,
    ) -> Result<i64, ControlError> {
        let now = format_time(self.clock.now());
        let params = ward_tenancy::sql::params![
            kind.to_owned(),
            clinic_id.map(|c| c.to_string()),
            payload.to_owned(),
            now
        ];
        self.with(|conn| async move {
            let mut rows = conn
                .query(
                    "INSERT INTO jobs (kind, clinic_id, payload, run_after, created_at) VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
                    params,
                )
                .await?;
            match rows.next().await? {
                Some(row) => Ok(row.get::<i64>(0)?),
                None => Err(ControlError::Invalid("the job was not queued".into())),
            }
        })
        .await
    }

    /// Claims the oldest queued job of `kind` that is due, marking it running.
    pub async fn claim_job(&self, kind: &str) -> Result<Option<Job>, ControlError> {
        let now = format_time(self.clock.now());
        let kind = kind.to_owned();
        self.with(|conn| async move {
            let mut rows = conn
                .query(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1 WHERE id = \
                     (SELECT id FROM jobs WHERE kind = ?1 AND status = 'queued' AND run_after <= ?2 ORDER BY id LIMIT 1) \
                     RETURNING id, clinic_id, payload, attempts",
                    ward_tenancy::sql::params![kind, now],
                )
                .await?;
            let Some(row) = rows.next().await? else {
                return Ok(None);
            };
            let clinic_id = row
                .get::<Option<String>>(1)?
                .map(|c| ClinicId::parse(&c))
                .transpose()
                .map_err(|_| ControlError::Invalid("a job names an invalid clinic".into()))?;
            Ok(Some(Job {
                id: row.get(0)?,
                clinic_id,
                payload: row.get(2)?,
                attempts: row.get(3)?,
            }))
        })
        .await
    }

    /// Marks job `id` done, or failed with `error`.
    pub async fn finish_job(&self, id: i64, error: Option<&str>) -> Result<(), ControlError> {
        let now = format_time(self.clock.now());
        let status = if error.is_some() { "failed" } else { "done" };
        let error = error.map(str::to_owned);
        self.with(|conn| async move {
            conn.execute(
                "UPDATE jobs SET status = ?2, last_error = ?3, finished_at = ?4 WHERE id = ?1",
                ward_tenancy::sql::params![id, status, error, now],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Puts jobs of `kind` left running by a process that stopped back in the queue (a
    /// worker calls this once when it starts, before claiming anything).
    pub async fn requeue_running(&self, kind: &str) -> Result<u64, ControlError> {
        let kind = kind.to_owned();
        self.with(|conn| async move {
            Ok(conn
                .execute(
                    "UPDATE jobs SET status = 'queued' WHERE kind = ?1 AND status = 'running'",
                    [kind],
                )
                .await?)
        })
        .await
    }
}
