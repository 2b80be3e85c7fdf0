//! The web layer in process: health pages, security headers, error pages.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking, its helpers included"
)]

mod errors;
mod headers;
mod health;
mod request_ids;
mod support;
