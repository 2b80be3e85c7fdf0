//! One module per area; one askama struct per page, handlers named page_method.

pub mod accounts;
pub mod appointments;
pub mod assets;
pub mod attachments;
pub mod audit;
pub mod clinic;
pub mod export;
pub mod frame;
pub mod health;
pub mod history;
pub mod lifecycle;
pub mod merge;
pub mod pages;
pub mod patients;
pub mod payments;
pub mod respond;
pub mod rights;
pub mod second_factor;
pub mod settings;
pub mod signup;
pub mod staff;
pub mod support;
pub mod visits;

use crate::AppError;

/// Any address no route claims.
pub async fn not_found() -> AppError {
    AppError::NotFound
}
