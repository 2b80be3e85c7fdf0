//! How the commands talk to a person: logs on stderr, one-sentence errors, progress bars
//! only on a terminal.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event, span fields first.
    Text,
    /// One JSON object per line, with the span's fields (request id, route, clinic).
    Json,
}

/// Logs to stderr, filtered by `WARD_LOG` (e.g. `info`, `ward=debug`), as text or JSON.
/// Colours only in text on a terminal (and not with `NO_COLOR`): logs collected by
/// fly.io, systemd or a file stay plain.
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Prints an error as one line (the causes joined) on stderr.
#[expect(clippy::print_stderr, reason = "the CLI's error report")]
pub fn fail(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (logs, CI, pipes).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// Writes a line of standard output (results a person or script reads).
#[expect(clippy::print_stdout, reason = "the CLI's results")]
pub fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

/// Writes a value as pretty JSON on standard output.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    say(serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Writes a line of progress or commentary on standard error (standard output stays
/// clean for results and JSON).
#[expect(clippy::print_stderr, reason = "the CLI's running commentary")]
pub fn note(line: impl std::fmt::Display) {
    eprintln!("{line}");
}
