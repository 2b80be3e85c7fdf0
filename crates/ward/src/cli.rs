//! The command line: one clap struct per command, every setting also an environment
//! variable (their names are documented in the README and relied on outside the code).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Ward: clinic records, one encrypted database per clinic.
#[derive(Debug, Parser)]
#[command(name = "ward", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command shares.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Folder holding control.db, clinics/, backups/, exports/ and outbox/.
    #[arg(
        long,
        env = "WARD_DATA_DIR",
        default_value = "./tenants",
        global = true
    )]
    pub data_dir: PathBuf,
    /// 64 hex characters that wrap every clinic's key (`openssl rand -hex 32`). Unset:
    /// generated once into <data>/master.key. Keep it secret and backed up.
    #[arg(long, env = "WARD_MASTER_KEY", hide_env_values = true, global = true)]
    pub master_key: Option<String>,
    /// Log filter, e.g. `info`, `warn`, `ward=debug`.
    #[arg(long, env = "WARD_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log lines as `text` (for a person) or `json` (one object a line, for a log
    /// collector).
    #[arg(long, env = "WARD_LOG_FORMAT", value_enum, default_value_t = crate::output::LogFormat::Text, global = true)]
    pub log_format: crate::output::LogFormat,
    /// Most clinic databases kept open at once (4 file descriptors each). Unset: seven
    /// eighths of what the open-file limit allows (the soft limit is raised to the hard
    /// one at start, 1,024 descriptors are kept for everything else); a value above what
    /// the limit allows is refused.
    #[arg(long, env = "WARD_MAX_OPEN_TENANTS", value_parser = clap::value_parser!(u64).range(1..=1_000_000), global = true)]
    pub max_open_tenants: Option<u64>,
    /// Seconds a clinic database may sit unused before it is closed.
    #[arg(long, env = "WARD_TENANT_IDLE_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub tenant_idle_secs: u64,
    /// Folder for backups, ideally on another disk than the data. Default: <data>/backups.
    #[arg(long, env = "WARD_BACKUP_DIR", global = true)]
    pub backup_dir: Option<PathBuf>,
    /// Most backups (or backup checks) running at once.
    #[arg(long, env = "WARD_BACKUP_PARALLEL", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64), global = true)]
    pub backup_parallel: u64,
    /// Every backup younger than this is kept (e.g. 48h, 2d).
    #[arg(long, env = "WARD_BACKUP_KEEP_ALL", default_value = "48h", value_parser = parse_duration, global = true)]
    pub backup_keep_all: Duration,
    /// Beyond that, one backup a day is kept for this many days.
    #[arg(
        long,
        env = "WARD_BACKUP_KEEP_DAILY",
        default_value_t = 35,
        global = true
    )]
    pub backup_keep_daily: u32,
    /// Days a closed clinic's data is kept (and the clinic can be reopened) before
    /// `ward purge` destroys it.
    #[arg(long, env = "WARD_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36_500), global = true)]
    pub retention_days: u32,
    /// Where every database streams to: `s3://bucket/prefix` (endpoint and credentials
    /// from the usual AWS_* variables) or `file:///path`. Default: <data>/replica, on the
    /// same disk (said so in the log and on the operator's status).
    #[arg(long, env = "WARD_REPLICA_URL", global = true)]
    pub replica_url: Option<String>,
    /// How far back a restore can reach (e.g. 30d, 72h).
    #[arg(long, env = "WARD_REPLICA_RETENTION", default_value = "30d", value_parser = parse_duration, global = true)]
    pub replica_retention: Duration,
}

/// Parses `300`, `300s`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 300s, 5m, 48h or 2d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?} is not a duration like 300s, 5m, 48h or 2d")),
    };
    Ok(Duration::from_secs(secs))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server.
    Serve(ServeOpts),
    /// Bring the control plane and every clinic to the newest schema.
    Migrate(MigrateOpts),
    /// Create, list and inspect clinics.
    #[command(subcommand)]
    Clinics(ClinicsCommand),
    /// Disable or re-enable a person's account.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Give a clinic a member (its owner, say, after `ward import`), and list its staff.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Take backups now (they are also taken by `ward serve` on a schedule).
    Backup(BackupOpts),
    /// Look at the backups taken.
    #[command(subcommand)]
    Backups(BackupsCommand),
    /// Bring a clinic (or the control plane) back to an earlier moment from its backups.
    Restore(RestoreOpts),
    /// Check every clinic's database and audit trail and the platform's auth log; with
    /// `--backups`, restore the newest backups into scratch files and check them instead.
    Verify(VerifyOpts),
    /// Write a clinic's whole database as one JSON document (records an operator
    /// access in its audit log).
    Export(ExportOpts),
    /// Create a new clinic from an export.
    Import(ImportOpts),
    /// Destroy clinics closed longer than the retention period: key first, then files
    /// and backups; a tombstone stays.
    Purge(PurgeOpts),
    /// Look at the continuous replica of every database.
    #[command(subcommand)]
    Replica(ReplicaCommand),
    /// Rotate the master key; see the state of the keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show the platform's health: clinics, failing clinics, backups, mail, jobs; exit 1
    /// when degraded.
    Status(StatusOpts),
    /// Look at one clinic as support, for at most 30 minutes, with its owners' approval:
    /// request, see the answer, get the one-time sign-in link, end it (docs/support.md).
    #[command(subcommand)]
    Support(SupportCommand),
}

/// `ward support`.
#[derive(Debug, Subcommand)]
pub enum SupportCommand {
    /// Ask a clinic's owners for a support session: they are mailed and see a notice on
    /// their pages, and approve (read only, or with changes) or refuse. Nothing opens
    /// before an owner approves, except with --emergency.
    Request(SupportRequestOpts),
    /// A clinic's support grants, newest first, with their state and times.
    Status {
        /// The clinic, by short name or id.
        #[arg(long)]
        clinic: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a fresh one-time sign-in link for an approved grant whose session has not
    /// started. It works once, for 10 minutes at most, and never past the grant's end.
    Link {
        /// The grant's number (from `ward support request` or `ward support status`).
        #[arg(long)]
        grant: i64,
        /// The address users reach Ward at, e.g. https://ward.example.com.
        #[arg(long, env = "WARD_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// End a grant now: a pending request is withdrawn, an open session is signed out at
    /// its next page.
    End {
        /// The grant's number.
        #[arg(long)]
        grant: i64,
    },
}

/// `ward support request`.
#[derive(Debug, Args)]
pub struct SupportRequestOpts {
    /// The clinic, by short name or id.
    #[arg(long)]
    pub clinic: String,
    /// Why, in words the clinic's owners understand; shown to them and kept on every
    /// audit row the session writes.
    #[arg(long)]
    pub reason: String,
    /// How long the session may last once approved: 1 to 30 minutes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub minutes: u32,
    /// Ask to make changes, not only look (the owner decides).
    #[arg(long)]
    pub write: bool,
    /// Open the session at once without approval, for an emergency: read only, the
    /// owners are mailed immediately and the audit log marks every row as emergency
    /// support.
    #[arg(long)]
    pub emergency: bool,
    /// The address users reach Ward at, e.g. https://ward.example.com: the owners' mail
    /// and the sign-in link point there.
    #[arg(long, env = "WARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub mail: MailOpts,
    /// Print the grant as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ward keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every clinic's data key and re-key the control plane under a new master
    /// key. Stop `ward serve` first. Resumable: after a crash, run it again.
    RotateMaster(RotateMasterOpts),
    /// Start using a new password pepper (<data>/pepper.key; the old one is kept as
    /// pepper.key.previous). Each password is re-hashed at its user's next sign-in.
    RotatePepper(RotatePepperOpts),
    /// The master key's fingerprint and whether a rotation is unfinished.
    Status(KeysStatusOpts),
}

/// `ward keys rotate-master`.
#[derive(Debug, Args)]
pub struct RotateMasterOpts {
    /// A file holding the new master key (64 hex characters). Without it (and without
    /// WARD_NEW_MASTER_KEY) a fresh key is generated, which is only allowed when the
    /// master key is <data>/master.key.
    #[arg(long, value_name = "FILE")]
    pub new_master_key_file: Option<PathBuf>,
    /// The new master key, 64 hex characters.
    #[arg(
        long = "new-master-key",
        env = "WARD_NEW_MASTER_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub new_master_key: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ward keys rotate-pepper`.
#[derive(Debug, Args)]
pub struct RotatePepperOpts {
    /// Rotate even though pepper.key.previous exists: passwords still hashed under the
    /// pepper it holds stop working (those users reset their password).
    #[arg(long)]
    pub force: bool,
}

/// `ward keys status`.
#[derive(Debug, Args)]
pub struct KeysStatusOpts {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ward replica`.
#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Per database: generation, last shipped commit, lag, bytes.
    Status(ReplicaStatusOpts),
}

/// `ward replica status`.
#[derive(Debug, Args)]
pub struct ReplicaStatusOpts {
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `ward status`.
#[derive(Debug, Args)]
pub struct StatusOpts {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ward export`.
#[derive(Debug, Args)]
pub struct ExportOpts {
    /// The clinic, by short name or id.
    #[arg(long)]
    pub clinic: String,
    /// Why the operator reads the clinic's data (kept in its audit log).
    #[arg(long)]
    pub reason: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `json`: the ward-export document, without the attachments' files; `zip`: the
    /// document and every attachment's file (`ward import` reads it); `csv`: a zip of
    /// one CSV file per table, for spreadsheet apps.
    #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
    pub format: ExportFormat,
    /// The attachment store `--format zip` reads the files from (as for `ward serve`).
    /// Unset: the replica's store under attachments/ when WARD_REPLICA_URL is set, else
    /// file://<data>/attachments.
    #[arg(long, env = "WARD_ATTACHMENT_URL")]
    pub attachment_url: Option<String>,
}

/// What `ward export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The ward-export JSON document.
    Json,
    /// A zip of CSV files, one per table.
    Csv,
    /// A zip of the ward-export document and every attachment's file.
    Zip,
}

/// `ward import`.
#[derive(Debug, Args)]
pub struct ImportOpts {
    /// The export to read: a JSON export, or an archive (`ward export --format zip`).
    #[arg(long)]
    pub file: PathBuf,
    /// The attachment store an archive's files are stored in (as for `ward serve`).
    /// Unset: the replica's store under attachments/ when WARD_REPLICA_URL is set, else
    /// file://<data>/attachments.
    #[arg(long, env = "WARD_ATTACHMENT_URL")]
    pub attachment_url: Option<String>,
    /// The new clinic's name.
    #[arg(long)]
    pub name: String,
    /// The new clinic's short name; derived from the name when omitted.
    #[arg(long)]
    pub slug: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ward purge`.
#[derive(Debug, Args)]
pub struct PurgeOpts {
    /// List what would be destroyed, destroy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    /// The attachment store a purged clinic's objects are deleted from (as for `ward
    /// serve`). Unset: the replica's store under attachments/ when
    /// WARD_REPLICA_URL is set, else file://<data>/attachments.
    #[arg(long, env = "WARD_ATTACHMENT_URL")]
    pub attachment_url: Option<String>,
}

/// `ward backup`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["clinic", "all"])))]
pub struct BackupOpts {
    /// One clinic, by short name or id.
    #[arg(long)]
    pub clinic: Option<String>,
    /// Every clinic and the control plane.
    #[arg(long)]
    pub all: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// List the backups of a clinic or of the control plane, newest first.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["clinic", "control_plane"])))]
    List {
        /// The clinic, by short name or id.
        #[arg(long)]
        clinic: Option<String>,
        /// The control plane's backups.
        #[arg(long)]
        control_plane: bool,
        /// Include backups removed by retention.
        #[arg(long)]
        deleted: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The clinic and the reason for a status change.
#[derive(Debug, Args)]
pub struct TransitionOpts {
    /// Short name (slug) or id.
    pub clinic: String,
    /// Why (kept with the change).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `ward restore`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["clinic", "control_plane", "everything"])))]
#[command(group(clap::ArgGroup::new("which").args(["at", "backup"])))]
pub struct RestoreOpts {
    /// Rebuild an empty data directory from the replica: the control plane, then every
    /// clinic (the latest commit, or --at). Needs the master key (WARD_MASTER_KEY).
    #[arg(long, conflicts_with = "backup")]
    pub everything: bool,
    /// The clinic, by short name or id.
    #[arg(long)]
    pub clinic: Option<String>,
    /// The control plane (refused while `ward serve` runs on this data); needs --backup.
    #[arg(long, conflicts_with = "at")]
    pub control_plane: bool,
    /// Restore the clinic as it was at this moment (RFC 3339, e.g. 2026-03-01T12:00:00Z):
    /// every commit made before the end of that second. With --from backups: the newest
    /// good backup taken at or before it.
    #[arg(long)]
    pub at: Option<String>,
    /// Restore this backup (its id, from `ward backups list`).
    #[arg(long)]
    pub backup: Option<String>,
    /// Where --at restores from: the continuous replica (any second within its
    /// retention) or the snapshot backups.
    #[arg(long, value_enum, default_value = "replica")]
    pub from: RestoreSource,
    /// Why (recorded with the restore).
    #[arg(long)]
    pub reason: String,
    /// Only pick the backup, restore it into a scratch file and check it.
    #[arg(long)]
    pub dry_run: bool,
    /// From the replica: restore into a new clinic with this name, beside the live one,
    /// for inspection (its own key; the live clinic is untouched).
    #[arg(long, requires = "clinic", conflicts_with_all = ["dry_run", "backup"])]
    pub as_new: Option<String>,
    /// With --as-new: the attachment store the clinic's files are copied from and into
    /// (as for `ward serve`). Unset: the replica's store under attachments/ when
    /// WARD_REPLICA_URL is set, else file://<data>/attachments.
    #[arg(long, env = "WARD_ATTACHMENT_URL")]
    pub attachment_url: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `ward restore --at` rebuilds from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreSource {
    /// The continuous replica (`WARD_REPLICA_URL`).
    Replica,
    /// The snapshot backups (`WARD_BACKUP_DIR`).
    Backups,
}

/// `ward verify`.
#[derive(Debug, Args)]
pub struct VerifyOpts {
    /// Restore drill: restore the newest backup of each clinic and of the control plane
    /// into a scratch file and check it (instead of checking the live databases).
    #[arg(long)]
    pub backups: bool,
    /// Replica drill: rebuild the latest state of each clinic from the replica into a
    /// scratch file and check it (authenticated pages, integrity, audit chain).
    #[arg(long, conflicts_with = "backups")]
    pub replica: bool,
    /// With --backups or --replica: only this many clinics, picked at random.
    #[arg(long, conflicts_with = "clinic")]
    pub sample: Option<usize>,
    /// Only this clinic (short name or id). The auth log is checked either way.
    #[arg(long)]
    pub clinic: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The attachment store whose objects are checked (as for `ward serve`). Unset: the
    /// replica's store under attachments/ when WARD_REPLICA_URL is set, else
    /// file://<data>/attachments.
    #[arg(long, env = "WARD_ATTACHMENT_URL")]
    pub attachment_url: Option<String>,
}

/// `ward serve`.
#[derive(Debug, Args)]
pub struct ServeOpts {
    /// Address and port to listen on.
    #[arg(long, env = "WARD_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The address users reach Ward at, e.g. https://ward.example.com (used in links
    /// and to decide https-only cookies and HSTS).
    #[arg(long, env = "WARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub mail: MailOpts,
    /// Trust a proxy's client-address header: `fly` reads Fly-Client-IP. Unset: the
    /// connecting address is the client.
    #[arg(long, env = "WARD_TRUSTED_PROXY", value_parser = ["fly"])]
    pub trusted_proxy: Option<String>,
    /// 64 hex characters mixed into every password hash. Unset: generated once into
    /// <data>/pepper.key. Keep it secret and backed up with the master key.
    #[arg(long, env = "WARD_PEPPER", hide_env_values = true)]
    pub pepper: Option<String>,
    /// The pepper before the last rotation, so that hashes made under it verify until each
    /// user's next sign-in re-hashes them. Unset: <data>/pepper.key.previous, if present.
    #[arg(long, env = "WARD_PEPPER_PREVIOUS", hide_env_values = true)]
    pub pepper_previous: Option<String>,
    /// Where attachments' encrypted bytes go: file:///path or s3://bucket/prefix (with the
    /// usual AWS_* variables). Unset: the replica's store under attachments/ when
    /// WARD_REPLICA_URL is set (unless <data>/attachments already holds files), else
    /// file://<data>/attachments.
    #[arg(long, env = "WARD_ATTACHMENT_URL")]
    pub attachment_url: Option<String>,
    /// How many MB of files (not deleted) one clinic may keep.
    #[arg(long, env = "WARD_ATTACHMENT_QUOTA_MB", default_value_t = ward_web::attachments::DEFAULT_QUOTA_MB)]
    pub attachment_quota_mb: u64,
    /// The largest attachment accepted, in MB.
    #[arg(long, env = "WARD_ATTACHMENT_MAX_MB", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=2048))]
    pub attachment_max_mb: u64,
    /// Hours a session may sit unused before it ends.
    #[arg(long, env = "WARD_SESSION_IDLE_HOURS", default_value_t = 12, value_parser = clap::value_parser!(i64).range(1..=720))]
    pub session_idle_hours: i64,
    /// Days a session lasts at most after sign-in.
    #[arg(long, env = "WARD_SESSION_MAX_DAYS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=365))]
    pub session_max_days: i64,
    /// How often clinics changed since their last backup are backed up (e.g. 5m; 0
    /// turns scheduled backups, the daily full pass and the daily drill off).
    #[arg(long, env = "WARD_BACKUP_INTERVAL", default_value = "24h", value_parser = parse_duration)]
    pub backup_interval: Duration,
    /// Address and port of the operator listener: Prometheus metrics at /metrics and the
    /// detailed /status. Unset: not served. Keep it off the public network.
    #[arg(long, env = "WARD_OPERATOR_ADDR")]
    pub operator_addr: Option<SocketAddr>,
    /// How long an owner may keep working without two-step sign-in before they are sent
    /// to set it up (e.g. 14d), counted from their signup or, for owners from before
    /// this rule, from the first start that enforced it. 0: at once.
    #[arg(long, env = "WARD_OWNER_MFA_GRACE", default_value = "0", value_parser = parse_duration)]
    pub owner_mfa_grace: Duration,
    /// Account-form posts (sign-in, signup, confirmation, reset) allowed at once per
    /// client address; then one every 3 seconds.
    #[arg(long, env = "WARD_FORM_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub form_burst: u32,
    /// Signups allowed per client address per hour (5 at once, then spread over the hour).
    #[arg(long, env = "WARD_SIGNUP_PER_HOUR", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub signup_per_hour: u32,
    /// A signup form sent back sooner than this many seconds after it was shown is
    /// refused (people take longer; scripts do not wait). 0 turns the check off.
    #[arg(long, env = "WARD_SIGNUP_MIN_SECONDS", default_value_t = 3, value_parser = clap::value_parser!(i64).range(0..=600))]
    pub signup_min_seconds: i64,
}

/// Where Ward's mail goes: `ward serve` and the commands that send mail.
#[derive(Debug, Clone, Args)]
pub struct MailOpts {
    /// Outgoing mail server, e.g. smtps://user:pass@smtp.example.com. Unset: mail is
    /// written as .eml files under <data>/outbox/.
    #[arg(long, env = "WARD_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of Ward's mail.
    #[arg(long, env = "WARD_MAIL_FROM", default_value = "Ward <ward@localhost>")]
    pub mail_from: String,
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add a person to a clinic's staff. An address with an account joins at once; any
    /// other is sent an invitation (a link valid for 72 hours) through the mail outbox.
    /// Recorded in the clinic's audit log with the reason.
    Add(MembersAddOpts),
    /// List a clinic's staff and its open invitations.
    List {
        /// The clinic, by short name or id.
        #[arg(long)]
        clinic: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ward members add`.
#[derive(Debug, Args)]
pub struct MembersAddOpts {
    /// The clinic, by short name or id.
    #[arg(long)]
    pub clinic: String,
    /// The person's email address.
    #[arg(long)]
    pub email: String,
    /// Their role in the clinic: owner, doctor, receptionist or billing.
    #[arg(long, value_parser = parse_role)]
    pub role: ward_core::Role,
    /// Why (kept in the clinic's audit log).
    #[arg(long)]
    pub reason: String,
    /// The address users reach Ward at, e.g. https://ward.example.com: an invitation's
    /// link points there. Needed when the address has no account yet.
    #[arg(long, env = "WARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub mail: MailOpts,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses a role by its name.
fn parse_role(s: &str) -> Result<ward_core::Role, String> {
    ward_core::Role::parse(s.trim()).map_err(|_| {
        let names: Vec<&str> = ward_core::Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("not a role; use one of {}", names.join(", "))
    })
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Disable an account: its sessions end at once and it cannot sign in.
    Disable {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// Why (recorded in the auth log).
        #[arg(long)]
        reason: String,
    },
    /// Re-enable a disabled account.
    Enable {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// Why (recorded in the auth log).
        #[arg(long)]
        reason: String,
    },
}

/// `ward migrate`.
#[derive(Debug, Args)]
pub struct MigrateOpts {
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Clinics migrated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel: u64,
}

#[derive(Debug, Subcommand)]
pub enum ClinicsCommand {
    /// Register a clinic and create its encrypted database.
    Create {
        /// The clinic's name, e.g. "Acme Clinic".
        #[arg(long)]
        name: String,
        /// Its short name for URLs; derived from the name when omitted.
        #[arg(long)]
        slug: Option<String>,
        /// Print the new clinic as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List every clinic with its status and schema version.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one clinic, named by short name or id.
    Show {
        /// Short name (slug) or id.
        clinic: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Block access to a clinic (e.g. unpaid); its data is kept, no retention clock.
    Suspend(TransitionOpts),
    /// Give a suspended clinic its access back.
    Resume(TransitionOpts),
    /// Close a clinic: access ends and the retention period starts.
    Close(TransitionOpts),
    /// Reopen a closed clinic within its retention period.
    Reopen(TransitionOpts),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(super::parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(
            super::parse_duration("48h"),
            Ok(Duration::from_secs(172_800))
        );
        assert_eq!(
            super::parse_duration("2d"),
            Ok(Duration::from_secs(172_800))
        );
        assert!(super::parse_duration("5 minutes").is_err());
        assert!(super::parse_duration("").is_err());
    }
}
