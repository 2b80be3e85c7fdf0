//! How the record pages are answered: rendered, with the status their content calls for.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::AppError;

/// `page`, rendered, answered with `status`.
pub fn html(status: StatusCode, page: &impl Template) -> Result<Response, AppError> {
    Ok((status, Html(page.render()?)).into_response())
}

/// `page`, rendered, as `200`.
pub fn page(page: &impl Template) -> Result<Response, AppError> {
    html(StatusCode::OK, page)
}

/// `page`, rendered, as `422`: it shows why what was sent is refused.
pub fn refused(page: &impl Template) -> Result<Response, AppError> {
    html(StatusCode::UNPROCESSABLE_ENTITY, page)
}

/// `page`, rendered: `422` when it shows why what was sent is refused (`refused`), `200`
/// otherwise.
pub fn page_refused_if(refused: bool, page: &impl Template) -> Result<Response, AppError> {
    if refused {
        self::refused(page)
    } else {
        self::page(page)
    }
}
