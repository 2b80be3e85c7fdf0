//! Ward's web face: the axum router, its state, error pages and security headers.

mod app;
mod error;
mod headers;
mod views;

pub use app::{App, AppState, WebConfig, router};
pub use error::AppError;
