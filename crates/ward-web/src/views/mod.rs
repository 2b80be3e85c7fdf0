//! One module per area; one askama struct per page, handlers named page_method.

pub mod accounts;
pub mod assets;
pub mod clinic;
pub mod export;
pub mod frame;
pub mod health;
pub mod lifecycle;
pub mod pages;

use crate::AppError;

/// Any address no route claims.
pub async fn not_found() -> AppError {
    AppError::NotFound
}
