//! The web layer in process, one module per part of the URL tree: accounts (`/signup`,
//! `/login`, `/account`…), a clinic's pages (`/c/{slug}/…`), cross-clinic isolation,
//! health and status pages, security headers, request ids and error pages; all through
//! the one harness in `support`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly, their helpers included"
)]

mod accounts;
mod clinic;
mod errors;
mod headers;
mod health;
mod isolation;
mod request_ids;
mod support;
