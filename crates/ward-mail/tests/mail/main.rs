//! ward-mail's integration tests: a real control plane in a temp dir, a real SMTP server
//! on loopback (`scripts/test-smtp-server.py`, aiosmtpd), the file and memory transports.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, helpers included"
)]

mod config;
mod file;
mod outbox;
mod smtp;
mod support;
