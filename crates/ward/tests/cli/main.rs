//! The real `ward` binary against a temporary data directory.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking, its helpers included"
)]

mod arguments;
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
