//! The real `ward` binary against a temporary data directory: its commands, backups
//! and restores, `ward serve` over HTTP, and real-browser tests (headless Chromium
//! through chromedriver) against `ward serve`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "a test fails by panicking, its helpers included; a served ward's log is echoed"
)]

mod arguments;
mod backup;
mod browser;
mod clinics;
mod deploy;
mod keys;
mod lifecycle;
mod members;
mod migrate;
mod replica;
mod serve;
mod status;
mod support;
mod support_access;
mod tamper;
mod users;
mod verify;
