//! Ward's application layer.
//!
//! - [`App`]: the services a running Ward is made of (the control plane, the clinics'
//!   databases, mail, the read audit, password hashing, the clock), built once by
//!   [`App::build`]. `ward serve`, the other commands, the benchmarks and the tests all
//!   build it the same way.
//! - The workflows that span the control plane, a clinic and mail, as functions of an
//!   `App`: the owner's export ([`exports`]), the staff ([`staff`]) and support
//!   access ([`support`]).
//! - The background workers, started from one place ([`App::start`]) and stopped
//!   through one path ([`Workers::shutdown`]).
//!
//! Nothing here knows about HTTP: the web layer turns requests into calls of these
//! functions and their results into pages.

pub mod accounts;
pub mod archive;
pub mod clinic;
mod error;
pub mod exports;
pub mod staff;
pub mod support;
mod workers;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use ward_clinic::ClinicError;
use ward_clinic::audit::{self, Entry};
use ward_clinic::audit::{ReadAuditConfig, ReadAuditor};
use ward_control::passwords::{PasswordHasher, Pepper};
use ward_control::{ControlError, ControlPlane, Platform, SessionPolicy};
use ward_core::Clock;
use ward_mail::{MailConfig, MailError, Mailer, MemoryMailbox};
use ward_tenancy::{Tenant, TenantStore};

pub use error::{BoxError, Error};
pub use workers::Workers;

/// Settings the workflows and pages need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address users reach Ward at (`WARD_PUBLIC_URL`), if set.
    pub public_url: Option<String>,
    /// Where links in mail point: the public URL, or `http://<WARD_ADDR>`.
    pub base_url: String,
    /// The build's version, shown on the operator's `/status`.
    pub version: String,
    /// Days a closed clinic is kept before it is purged (`WARD_RETENTION_DAYS`).
    pub retention_days: u32,
    /// How long an owner may work without a second factor, counted from when their
    /// account was made or (for accounts from before owners needed one) from when this
    /// installation first required it (`WARD_OWNER_MFA_GRACE`; zero: at once).
    pub owner_second_factor_grace: TimeDelta,
}

impl Settings {
    /// Whether Ward is served over https (decides HSTS and cookie names).
    pub fn is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

/// Where outgoing mail goes.
pub enum MailSetup {
    /// Through the outbox to an SMTP server, or to files (`MailConfig`).
    Deliver(MailConfig),
    /// Kept in memory, for tests and benchmarks ([`App::mailbox`]).
    InMemory,
}

/// How passwords are hashed.
pub struct Hashing {
    /// The pepper mixed into every hash (`WARD_PEPPER`).
    pub pepper: Pepper,
    /// The pepper before the last rotation, still accepted (`WARD_PEPPER_PREVIOUS`).
    pub previous: Option<Pepper>,
    /// The hash's cost (`ward_control::passwords::PRODUCTION_COST` in production).
    pub cost: u32,
    /// Hashes computed at the same time.
    pub parallel: usize,
}

/// Everything [`App::build`] needs besides the opened data directory.
pub struct Config {
    /// Outgoing mail.
    pub mail: MailSetup,
    /// Password hashing.
    pub hashing: Hashing,
    /// Session lifetimes.
    pub session_policy: SessionPolicy,
    /// Settings of the pages and workflows.
    pub settings: Settings,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
    /// How record views are batched into the clinics' audit logs.
    pub read_audit: ReadAuditConfig,
    /// Where attachments' files are, for the export with files; `None`: that export
    /// is refused.
    pub attachment_files: Option<Arc<dyn archive::FileStore>>,
}

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Outgoing mail could not be set up.
    #[error("cannot set up outgoing mail: {0}")]
    Mail(#[from] MailError),
    /// Password hashing could not be set up.
    #[error("cannot set up password hashing: {0}")]
    Hashing(#[from] ControlError),
}

/// The services of a running Ward.
pub struct App {
    /// Clinics, people and sessions.
    pub control: Arc<ControlPlane>,
    /// Open clinic databases.
    pub tenants: TenantStore,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// Queues record views for the clinics' audit logs.
    pub audit: ReadAuditor,
    /// Password hashing, capped and off the async workers.
    pub hasher: PasswordHasher,
    /// Session lifetimes.
    pub session_policy: SessionPolicy,
    /// Settings.
    pub config: Settings,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
    /// When this process started serving.
    pub started_at: DateTime<Utc>,
    /// Where attachments' files are, for the export with files (`WARD_ATTACHMENT_URL`).
    pub attachment_files: Option<Arc<dyn archive::FileStore>>,
    mailbox: Option<MemoryMailbox>,
}

impl App {
    /// Builds the app on an opened data directory. Must run inside the Tokio runtime:
    /// the read audit's writer starts here (the other workers start in [`App::start`]).
    pub fn build(platform: &Platform, config: Config) -> Result<Self, BuildError> {
        let (mailer, mailbox) = match config.mail {
            MailSetup::Deliver(mail) => (Mailer::new(platform.control.clone(), mail)?, None),
            MailSetup::InMemory => {
                let (mailer, mailbox) = Mailer::in_memory(platform.control.clone())?;
                (mailer, Some(mailbox))
            }
        };
        let hashing = config.hashing;
        let hasher = PasswordHasher::new(hashing.pepper, hashing.cost, hashing.parallel)?
            .with_previous(hashing.previous);
        Ok(Self {
            control: platform.control.clone(),
            tenants: platform.tenants.clone(),
            mailer,
            audit: ReadAuditor::start(platform.tenants.clone(), config.read_audit),
            hasher,
            session_policy: config.session_policy,
            config: config.settings,
            started_at: config.clock.now(),
            clock: config.clock,
            attachment_files: config.attachment_files,
            mailbox,
        })
    }

    /// The base of links in mail, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.config.base_url.trim_end_matches('/')
    }

    /// The mail sent so far, when mail is kept in memory ([`MailSetup::InMemory`]).
    pub fn mailbox(&self) -> Option<&MemoryMailbox> {
        self.mailbox.as_ref()
    }

    /// Where the owners' exports wait to be downloaded: `<data>/exports`.
    pub fn exports_dir(&self) -> std::path::PathBuf {
        let clinics = self.tenants.clinics_dir();
        clinics
            .parent()
            .map_or_else(|| clinics.join("exports"), |d| d.join("exports"))
    }
}

/// Writes `entry` to the clinic's audit log in its own transaction.
pub(crate) async fn record(tenant: &Tenant, entry: Entry) -> Result<(), Error> {
    tenant
        .with(|conn| {
            audit::in_transaction(&conn, |tx| {
                audit::record(&tx, &entry)?;
                Ok::<_, ClinicError>(())
            })
        })
        .await?;
    Ok(())
}
