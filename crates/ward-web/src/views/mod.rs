//! One module per area; one askama struct per page, handlers named page_method.

pub mod assets;
pub mod health;

use crate::AppError;

/// Any address no route claims.
pub async fn not_found() -> AppError {
    AppError::NotFound
}
