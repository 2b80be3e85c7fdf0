//! Ward's web face: the axum router, its state, sessions and CSRF, rate limits, error
//! pages and security headers; request ids, logs and metrics, and the operator's
//! listener.

mod app;
pub mod attachments;
pub mod client_ip;
mod error;
pub mod extract;
mod headers;
pub mod limits;
pub mod observe;
pub mod operator;
pub mod session;
pub mod status;
pub mod support_access;
pub mod thumbnail;
mod views;

pub use views::export::{requeue_interrupted as requeue_export_jobs, run_export_jobs};

pub use app::{App, AppState, WebConfig, router};
pub use client_ip::TrustedProxy;
pub use error::AppError;
pub use operator::{operator_router, serve_operator};
/// The "accessed by" box a record's page shows its owner.
pub use views::audit::{AccessLine, AccessedBy};
