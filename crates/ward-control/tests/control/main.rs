//! The control plane against real encrypted files: path safety, encryption at rest, the
//! statement guard, the handle cache, the operator lock, isolation of slow work, tenant
//! migrations, and backups and restores. Every test opens a real data directory in a
//! temporary folder.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking, its helpers included"
)]

mod backups;
mod cache;
mod encryption;
mod isolation;
mod lock;
mod migrations;
mod paths;
mod recent_use;
mod session_touches;
mod sql_guard;
mod support;
mod support_notices;
