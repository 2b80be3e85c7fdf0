//! `ward keys`: rotating the master key, and the keys' state.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use ward_control::rotation::{self, Event, KeyHome};
use ward_control::{MasterKeySource, master_key};
use ward_core::SystemClock;
use ward_tenancy::MasterKey;

use crate::cli::{Global, KeysCommand, KeysStatusOpts, RotateMasterOpts, RotatePepperOpts};
use crate::output::{json, note, progress, say};

/// Testing hook: when set to a step's name (`save-new-key`, `copy`, `rewrap`,
/// `rewrap-half`, `rekey`, `keep_old`, `clear_sidecars`, `rename`, `install-key`,
/// `reopen`), the process aborts right before that step, as if killed, so tests can
/// prove a crash anywhere leaves a data directory that opens and a rotation that a
/// second run finishes.
const CRASH_AT: &str = "WARD_TEST_CRASH_AT";

pub async fn run(global: &Global, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::RotateMaster(opts) => rotate_master(global, opts).await,
        KeysCommand::RotatePepper(opts) => rotate_pepper(global, &opts),
        KeysCommand::Status(opts) => status(global, &opts).await,
    }
}

fn current(global: &Global) -> anyhow::Result<(MasterKey, KeyHome)> {
    let (source, home) = match &global.master_key {
        Some(hex) => (
            MasterKeySource::Configured(hex.clone()),
            KeyHome::Configured,
        ),
        None => (MasterKeySource::DataDirFile, KeyHome::DataDirFile),
    };
    if home == KeyHome::DataDirFile && !global.data_dir.join(rotation::KEY_FILE).exists() {
        anyhow::bail!(
            "there is no master key in {} (and WARD_MASTER_KEY is not set): nothing to rotate",
            global.data_dir.display()
        );
    }
    Ok((master_key(&global.data_dir, source)?, home))
}

fn new_key(opts: &RotateMasterOpts) -> anyhow::Result<Option<MasterKey>> {
    match (&opts.new_master_key_file, &opts.new_master_key) {
        (Some(_), Some(_)) => anyhow::bail!(
            "give the new master key once: --new-master-key-file or WARD_NEW_MASTER_KEY, not both"
        ),
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok(Some(
                MasterKey::from_hex(&text).with_context(|| path.display().to_string())?,
            ))
        }
        (None, Some(hex)) => Ok(Some(
            MasterKey::from_hex(hex).context("WARD_NEW_MASTER_KEY")?,
        )),
        (None, None) => Ok(None),
    }
}

async fn rotate_master(global: &Global, opts: RotateMasterOpts) -> anyhow::Result<ExitCode> {
    let (current, home) = current(global)?;
    let new = new_key(&opts)?;
    let crash_at = std::env::var(CRASH_AT).ok();
    let bar = progress(0, "re-wrapping clinic keys");
    let mut hook = |e: Event| -> Result<(), String> {
        match e {
            Event::Step(name) => {
                if crash_at.as_deref() == Some(name) {
                    std::process::abort();
                }
                note(format_args!("… {name}"));
            }
            Event::Rewrapped { done, total } => {
                bar.set_length(total);
                bar.set_position(done);
            }
        }
        Ok(())
    };
    let report = rotation::rotate_master(
        &global.data_dir,
        &current,
        home,
        new,
        Arc::new(SystemClock),
        &mut hook,
    )
    .await
    .context("the master key was not rotated")?;
    bar.finish_and_clear();
    // The control plane is another file now: its replica starts a new generation.
    ward_replica::replicator::forget_position(&global.data_dir, "control");
    if opts.json {
        json(&report)?;
    } else {
        say(format_args!(
            "master key rotated from {} to {}: {} clinic keys re-wrapped, control plane re-keyed{}",
            report.old_fingerprint,
            report.new_fingerprint,
            report.clinics,
            if report.resumed {
                " (finishing an earlier run)"
            } else {
                ""
            }
        ));
    }
    match (home, &report.old_key_kept) {
        (KeyHome::DataDirFile, Some(old)) => note(format_args!(
            "the new key is in {}; the old one is kept as {} for backups taken before (see docs/keys.md)",
            global.data_dir.join(rotation::KEY_FILE).display(),
            old.display()
        )),
        (KeyHome::DataDirFile, None) => {}
        (KeyHome::Configured, _) => note(
            "WARD_MASTER_KEY still holds the old key: set it to the new key before starting ward serve (e.g. `fly secrets set WARD_MASTER_KEY=…`), and keep the old one for backups taken before",
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Moves `<data>/pepper.key` to `pepper.key.previous` and makes a new one. The server must
/// be stopped: it reads both at start.
fn rotate_pepper(global: &Global, opts: &RotatePepperOpts) -> anyhow::Result<ExitCode> {
    use ward_control::passwords::PREVIOUS_PEPPER_FILE;
    if std::env::var_os("WARD_PEPPER").is_some() {
        anyhow::bail!(
            "WARD_PEPPER is set, so the pepper is yours to rotate: set WARD_PEPPER_PREVIOUS to its current value and WARD_PEPPER to a new one (openssl rand -hex 32), then restart ward serve (see docs/keys.md)"
        );
    }
    let _serve = super::try_serve_guard(global)?.ok_or_else(|| {
        anyhow::anyhow!(
            "ward serve is running on this data directory; stop it before rotating the pepper"
        )
    })?;
    let current = global.data_dir.join("pepper.key");
    let previous = global.data_dir.join(PREVIOUS_PEPPER_FILE);
    if !current.exists() {
        anyhow::bail!("there is no {} to rotate", current.display());
    }
    if previous.exists() && !opts.force {
        anyhow::bail!(
            "{} still holds the pepper before the last rotation; passwords not re-hashed since would stop working. Rotate again with --force once that is acceptable",
            previous.display()
        );
    }
    // The rename replaces an older previous pepper; then a fresh pepper.key is made.
    // A crash between the two leaves no pepper.key: the next start (or a second run)
    // generates one, and pepper.key.previous still verifies every hash.
    std::fs::rename(&current, &previous)
        .with_context(|| format!("cannot move {} aside", current.display()))?;
    ward_tenancy::keys::load_or_generate_secret(&current)?;
    for path in [&previous, &current] {
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    say(format_args!(
        "pepper rotated: new hashes use {}; {} keeps the old one until every user has signed in again",
        current.display(),
        previous.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Password hashes under the current pepper and under older ones, when the pepper and
/// the control plane can be read without changing anything.
async fn pepper_counts(global: &Global) -> Option<(String, u64, u64)> {
    use ward_control::passwords::Pepper;
    let configured = std::env::var("WARD_PEPPER").ok();
    if configured.is_none() && !global.data_dir.join("pepper.key").exists() {
        return None;
    }
    let pepper = Pepper::load(&global.data_dir, configured.as_deref()).ok()?;
    let platform = super::open_platform(global).await.ok()?;
    let (current, older) = platform.control.password_peppers(&pepper.id()).await.ok()?;
    Some((pepper.id(), current, older))
}

#[derive(serde::Serialize)]
struct Status {
    #[serde(flatten)]
    master: rotation::KeyStatus,
    pepper: Option<String>,
    hashes_current_pepper: Option<u64>,
    hashes_older_pepper: Option<u64>,
}

async fn status(global: &Global, opts: &KeysStatusOpts) -> anyhow::Result<ExitCode> {
    let (current, _) = current(global)?;
    let master = rotation::key_status(&global.data_dir, &current);
    let counts = if master.unfinished_rotation_to.is_some() {
        None
    } else {
        pepper_counts(global).await
    };
    let status = Status {
        master,
        pepper: counts.as_ref().map(|c| c.0.clone()),
        hashes_current_pepper: counts.as_ref().map(|c| c.1),
        hashes_older_pepper: counts.as_ref().map(|c| c.2),
    };
    if opts.json {
        json(&status)?;
    } else {
        say(format_args!("master key: {}", status.master.fingerprint));
        if let Some(next) = &status.master.unfinished_rotation_to {
            say(format_args!(
                "unfinished rotation to {next}: run `ward keys rotate-master` again to finish it"
            ));
        }
        for old in &status.master.old_keys_kept {
            say(format_args!("old key kept: {}", old.display()));
        }
        if let Some((id, current, older)) = &counts {
            say(format_args!(
                "pepper: {id}; password hashes: {current} under it, {older} under an older pepper (re-hashed at each user's next sign-in)"
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
