//! The platform's health as the operator sees it: the operator listener's `/status` and
//! `ward status` both show this report; the public `/status` shows only its verdict.
//!
//! It holds ids, counts and times, never a clinic's name, slug or data, nor an error's
//! cause (which may name paths: the log has it).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use ward_control::catalog::BackupOverview;
use ward_control::jobs::JobCounts;
use ward_control::{ControlPlane, OutboxCounts};
use ward_core::format_time;
use ward_tenancy::StoreStats;

/// Everything the operator's status shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `ok` or `degraded`: the whole verdict, the only part shown publicly.
    pub state: State,
    /// When the report was made.
    pub at: DateTime<Utc>,
    /// Whether the control plane answers, and its schema version.
    pub control_plane: ControlSection,
    /// Clinics by status.
    pub clinics: ClinicsSection,
    /// Clinics whose database cannot be opened (their users see an error page).
    pub failing: Vec<FailingClinic>,
    /// Backups and restore drills.
    pub backups: BackupOverview,
    /// Whether every backup and drill is passing.
    pub backups_ok: bool,
    /// The mail outbox.
    pub mail: OutboxCounts,
    /// The background job queue.
    pub jobs: JobCounts,
    /// The continuous replica, when this process knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaSection>,
    /// The serving process, when the report comes from it (not from `ward status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSection>,
}

/// How the continuous replica is doing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicaSection {
    /// Where it goes (no credentials).
    pub target: String,
    /// Whether that is this machine's own disk.
    pub same_disk: bool,
    /// Databases streaming.
    pub databases: usize,
    /// The longest a committed change has waited to be stored, in milliseconds.
    pub worst_lag_ms: i64,
    /// Databases whose last attempt failed, with the reason.
    pub failing: Vec<(String, String)>,
}

/// A replica lag beyond this makes the platform degraded.
pub const REPLICA_LAG_DEGRADED_MS: i64 = 60_000;

type ReplicaSource = Box<dyn Fn() -> ReplicaSection + Send + Sync>;
static REPLICA_SOURCE: std::sync::OnceLock<ReplicaSource> = std::sync::OnceLock::new();

/// Names where reports of this process read the replica's state from (set once).
pub fn set_replica_source(source: impl Fn() -> ReplicaSection + Send + Sync + 'static) {
    let _ = REPLICA_SOURCE.set(Box::new(source));
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Every component works.
    Ok,
    /// Some component does not (the control plane, a clinic, a backup or drill).
    Degraded,
}

impl State {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
        }
    }
}

/// The control plane's part.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ControlSection {
    /// Whether it answers a query.
    pub ok: bool,
    /// Its schema version (0 when it does not answer).
    pub schema: u32,
}

/// Clinic counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClinicsSection {
    /// All clinics the control plane knows, purged ones included.
    pub total: u64,
    /// By status (`active`, `suspended`, `closed`, `purged`).
    pub by_status: BTreeMap<String, u64>,
}

/// A clinic that cannot be opened: its id and since when.
#[derive(Debug, Clone, Serialize)]
pub struct FailingClinic {
    /// The clinic's id.
    pub id: String,
    /// When it first failed.
    pub since: Option<DateTime<Utc>>,
}

/// What only the serving process knows.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessSection {
    /// The build's version.
    pub version: String,
    /// When it started serving.
    pub started_at: DateTime<Utc>,
    /// The newest tenant schema it applies.
    pub tenant_schema: u32,
    /// The clinic handle cache.
    pub handles: HandleSection,
}

/// The clinic handle cache's counters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HandleSection {
    /// Handles open now.
    pub open: usize,
    /// The cache's cap.
    pub max_open: u64,
    /// The descriptor budget: the hard bound on open handles.
    pub max_handles: u64,
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that had to open.
    pub misses: u64,
    /// Files opened.
    pub opens: u64,
}

impl From<StoreStats> for HandleSection {
    fn from(s: StoreStats) -> Self {
        Self {
            open: s.open_handles,
            max_open: s.max_open,
            max_handles: s.max_handles,
            hits: s.hits,
            misses: s.misses,
            opens: s.opens,
        }
    }
}

/// What the report reads from the control plane; each part at its default when it
/// could not be read.
#[derive(Default)]
struct ControlReading {
    /// Whether it answered, and every part was read.
    readable: bool,
    schema: u32,
    counts: Vec<(ward_core::ClinicStatus, u64)>,
    failing: Vec<ward_control::ClinicRecord>,
    backups: BackupOverview,
    mail: OutboxCounts,
    jobs: JobCounts,
}

impl ControlReading {
    async fn read(control: &ControlPlane) -> Self {
        if !control.ping().await {
            return Self::default();
        }
        let schema = control.schema_version().await;
        let counts = control.clinic_counts().await;
        let failing = control.failing_clinics().await;
        let backups = control.backup_overview().await;
        let mail = control.outbox().counts().await;
        let jobs = control.job_counts().await;
        Self {
            readable: schema.is_ok()
                && counts.is_ok()
                && failing.is_ok()
                && backups.is_ok()
                && mail.is_ok()
                && jobs.is_ok(),
            schema: schema.unwrap_or(0),
            counts: counts.unwrap_or_default(),
            failing: failing.unwrap_or_default(),
            backups: backups.unwrap_or_default(),
            mail: mail.unwrap_or_default(),
            jobs: jobs.unwrap_or_default(),
        }
    }
}

impl StatusReport {
    /// Reads the control plane. A part that cannot be read counts as failing: the
    /// report then says `degraded`, never `ok` by default.
    pub async fn gather(control: &ControlPlane, now: DateTime<Utc>) -> Self {
        let r = ControlReading::read(control).await;
        let backups_ok = r.backups.attention.is_empty();
        let replica = REPLICA_SOURCE.get().map(|f| f());
        let replica_ok = replica
            .as_ref()
            .is_none_or(|r| r.worst_lag_ms < REPLICA_LAG_DEGRADED_MS);
        let healthy = r.readable && r.failing.is_empty() && backups_ok && replica_ok;
        Self {
            state: if healthy { State::Ok } else { State::Degraded },
            at: now,
            control_plane: ControlSection {
                ok: r.readable,
                schema: r.schema,
            },
            clinics: ClinicsSection {
                total: r.counts.iter().map(|(_, n)| n).sum(),
                by_status: (r.counts.iter())
                    .map(|(status, n)| (status.to_string(), *n))
                    .collect(),
            },
            failing: (r.failing.into_iter())
                .map(|c| FailingClinic {
                    id: c.id.to_string(),
                    since: c.open_error_at,
                })
                .collect(),
            backups: r.backups,
            backups_ok,
            mail: r.mail,
            jobs: r.jobs,
            replica,
            process: None,
        }
    }

    /// Whether every component works.
    pub fn healthy(&self) -> bool {
        self.state == State::Ok
    }
}

/// How long ago `t` was, and when.
fn age(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else {
        return "none yet".to_owned();
    };
    let secs = (now - t).num_seconds().max(0);
    let text = match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    };
    format!("{text} ago ({})", format_time(t))
}

/// The report as text, for a terminal or a browser.
impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.at;
        writeln!(f, "overall: {}", self.state.as_str())?;
        if self.control_plane.ok {
            writeln!(
                f,
                "control plane: ok (schema {})",
                self.control_plane.schema
            )?;
        } else {
            writeln!(f, "control plane: NOT ANSWERING")?;
        }
        write!(f, "clinics: {}", self.clinics.total)?;
        for (status, n) in &self.clinics.by_status {
            write!(f, " · {n} {status}")?;
        }
        writeln!(f)?;
        if self.failing.is_empty() {
            writeln!(f, "clinics that cannot be opened: none")?;
        } else {
            writeln!(
                f,
                "clinics that cannot be opened ({}; their users see an error page, the log has the cause):",
                self.failing.len()
            )?;
            for c in &self.failing {
                let since = c.since.map(format_time).unwrap_or_default();
                writeln!(f, "  {} since {since}", c.id)?;
            }
        }
        if let Some(r) = &self.replica {
            writeln!(
                f,
                "replica: {} ({} databases), worst lag {} ms{}",
                r.target,
                r.databases,
                r.worst_lag_ms,
                if r.same_disk {
                    "; WARNING: on this machine's disk, not off it"
                } else {
                    ""
                }
            )?;
            for (db, why) in &r.failing {
                writeln!(f, "  {db}: {why}")?;
            }
        }
        let b = &self.backups;
        writeln!(
            f,
            "backups: {}",
            if self.backups_ok {
                "all backups and drills passing"
            } else {
                "SOME BACKUPS OR DRILLS FAILED (the log has the cause)"
            }
        )?;
        writeln!(
            f,
            "  with a verified backup: {} (clinics and the control plane)",
            b.scopes_verified
        )?;
        writeln!(
            f,
            "  oldest newest verified backup: {}",
            age(now, b.stalest_verified_at)
        )?;
        writeln!(f, "  control plane: {}", age(now, b.control_verified_at))?;
        match b.drill_at {
            None => writeln!(f, "  restore drill: no drill yet")?,
            Some(t) => writeln!(
                f,
                "  restore drill: {} passed, {} failed; last {}",
                b.drill_passed,
                b.drill_failed,
                age(now, Some(t))
            )?,
        }
        for a in &b.attention {
            let drill = match (a.drill_ok, a.drill_at) {
                (Some(true), Some(t)) => format!("drill passed {}", format_time(t)),
                (Some(false), Some(t)) => format!("drill FAILED {}", format_time(t)),
                _ => "not drilled".to_owned(),
            };
            let newest = age(now, a.newest_verified_at);
            let failed = if a.failed { "last backup failed; " } else { "" };
            writeln!(
                f,
                "  needs attention: {} ({failed}newest verified {newest}; {drill})",
                a.scope
            )?;
        }
        writeln!(
            f,
            "mail outbox: {} pending, {} sent, {} given up",
            self.mail.pending, self.mail.sent, self.mail.failed
        )?;
        writeln!(
            f,
            "jobs: {} queued, {} running",
            self.jobs.queued, self.jobs.running
        )?;
        if let Some(p) = &self.process {
            let h = &p.handles;
            let lookups = h.hits + h.misses;
            let hit_rate = if lookups == 0 {
                "no lookups yet".to_owned()
            } else {
                format!("{:.1}%", 100.0 * h.hits as f64 / lookups as f64)
            };
            writeln!(
                f,
                "open clinic databases: {} of at most {} (descriptor budget {})",
                h.open, h.max_open, h.max_handles
            )?;
            writeln!(f, "handle cache hit rate: {hit_rate}")?;
            writeln!(f, "tenant schema: version {}", p.tenant_schema)?;
            writeln!(f, "version: {}", p.version)?;
            writeln!(f, "up since: {}", format_time(p.started_at))?;
        }
        Ok(())
    }
}
