//! Ward's web face: the axum router, its state, sessions and CSRF, rate limits, error
//! pages and security headers; request ids, logs and metrics, and the operator's
//! listener.

mod app;
pub mod attachments;
pub mod client_ip;
mod error;
pub mod extract;
pub mod form;
mod headers;
pub mod limits;
pub mod observe;
pub mod operator;
pub mod session;
pub mod status;
pub mod thumbnail;
mod views;

pub use app::{AppState, Web, WebConfig, WebOptions, router};
pub use client_ip::TrustedProxy;
pub use error::AppError;
pub use operator::{operator_router, serve_operator};
/// The "accessed by" box a record's page shows its owner.
pub use views::audit::{AccessLine, AccessedBy};
pub use ward_app::App;
