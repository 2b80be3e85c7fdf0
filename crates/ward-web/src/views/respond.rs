//! How the record pages are answered: rendered, with the status their content calls for.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::AppError;

/// `page`, rendered: `422` when it shows why what was sent is refused (`refused`), `200`
/// otherwise.
pub fn page_refused_if(refused: bool, page: &impl Template) -> Result<Response, AppError> {
    let status = if refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Html(page.render()?)).into_response())
}
