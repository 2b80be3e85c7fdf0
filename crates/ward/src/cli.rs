//! The command line: one clap struct per command, every setting also an environment
//! variable (DESIGN §6).

use std::net::SocketAddr;
use std::path::PathBuf;

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
#[derive(Debug, Args)]
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
    /// Most clinic databases kept open at once (3 file descriptors each).
    #[arg(long, env = "WARD_MAX_OPEN_TENANTS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000), global = true)]
    pub max_open_tenants: u64,
    /// Seconds a clinic database may sit unused before it is closed.
    #[arg(long, env = "WARD_TENANT_IDLE_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub tenant_idle_secs: u64,
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
    /// Check every clinic's database and audit trail, and the platform's auth log.
    Verify(VerifyOpts),
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
    /// Outgoing mail server, e.g. smtps://user:pass@smtp.example.com. Unset: mail is
    /// written as .eml files under <data>/outbox/.
    #[arg(long, env = "WARD_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of Ward's mail.
    #[arg(long, env = "WARD_MAIL_FROM", default_value = "Ward <ward@localhost>")]
    pub mail_from: String,
    /// Trust a proxy's client-address header: `fly` reads Fly-Client-IP. Unset: the
    /// connecting address is the client.
    #[arg(long, env = "WARD_TRUSTED_PROXY", value_parser = ["fly"])]
    pub trusted_proxy: Option<String>,
    /// 64 hex characters mixed into every password hash. Unset: generated once into
    /// <data>/pepper.key. Keep it secret and backed up with the master key.
    #[arg(long, env = "WARD_PEPPER", hide_env_values = true)]
    pub pepper: Option<String>,
    /// Hours a session may sit unused before it ends.
    #[arg(long, env = "WARD_SESSION_IDLE_HOURS", default_value_t = 12, value_parser = clap::value_parser!(i64).range(1..=720))]
    pub session_idle_hours: i64,
    /// Days a session lasts at most after sign-in.
    #[arg(long, env = "WARD_SESSION_MAX_DAYS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=365))]
    pub session_max_days: i64,
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

/// `ward verify`.
#[derive(Debug, Args)]
pub struct VerifyOpts {
    /// Only this clinic (short name or id). The auth log is checked either way.
    #[arg(long)]
    pub clinic: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
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
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
