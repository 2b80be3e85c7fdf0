//! The one error type of the web layer and the pages it becomes.
//!
//! Policy: a handler returns `Result<_, AppError>`. Each variant says its status below,
//! and [`IntoResponse`] maps them in one exhaustive `match`, so a new variant forces a
//! decision. The page shown never carries SQL, paths or stack traces; unexpected errors
//! get an operation id that is also written, with the full cause, to the log.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use rand::RngCore;
use ward_control::ControlError;
use ward_tenancy::TenantError;

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 404: no such page or record, or one this user may not know exists.
    #[error("not found")]
    NotFound,
    /// 403: a member of the clinic whose role does not allow this.
    #[error("forbidden")]
    Forbidden,
    /// 422: the request made sense but the clinic's data refuses it; the text says why.
    #[error("refused: {0}")]
    Refused(String),
    /// 503: an operator is working on this clinic (restore, purge).
    #[error("clinic under maintenance")]
    Maintenance,
    /// 503: this clinic's database cannot be opened right now; the cause is for the log.
    #[error("clinic unavailable: {0}")]
    ClinicUnavailable(String),
    /// 503: this clinic's database file is damaged; the operator has been told (the
    /// clinic is marked and named on `/status`). Other clinics are not affected.
    #[error("clinic database damaged")]
    ClinicDamaged,
    /// 503: the server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// 500: anything unexpected; the cause is for the log.
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl From<TenantError> for AppError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::Unknown(_) => Self::NotFound,
            TenantError::Maintenance(_) => Self::Maintenance,
            TenantError::Unavailable { .. } => Self::ClinicUnavailable(e.to_string()),
            TenantError::Damaged(_) => Self::ClinicDamaged,
            TenantError::ShuttingDown => Self::ShuttingDown,
        }
    }
}

impl From<ControlError> for AppError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NoSuchClinic(_) => Self::NotFound,
            ControlError::Tenant(t) => t.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<ward_clinic::ClinicError> for AppError {
    fn from(e: ward_clinic::ClinicError) -> Self {
        use ward_clinic::ClinicError as E;
        if e.is_damage() {
            // The store has already marked the clinic and logged the cause.
            return Self::ClinicDamaged;
        }
        match e {
            E::NotFound => Self::NotFound,
            E::Invalid { message, .. } => Self::Refused(message),
            E::Conflict(message) => Self::Refused(message),
            E::Audit(_) | E::Db(_) => Self::Internal(Box::new(e)),
        }
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        Self::Internal(Box::new(e))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    operation_id: Option<String>,
}

/// A short random reference tying the page a user saw to the log line.
fn operation_id() -> String {
    let mut b = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, title, message, op, retry) = match &self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address. Check the link, or start again from the home page.",
                None,
                None,
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not available to your role",
                "Your role in this clinic does not include this page. If you need it, ask the clinic's owner.",
                None,
                None,
            ),
            Self::Refused(text) => {
                let body = ErrorPage {
                    title: "That could not be done",
                    message: text,
                    operation_id: None,
                }
                .render()
                .unwrap_or_else(|_| text.clone());
                return (StatusCode::UNPROCESSABLE_ENTITY, Html(body)).into_response();
            }
            Self::Maintenance => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Maintenance in progress",
                "This clinic's records are being maintained by the operator. Nothing is lost; please try again in a few minutes.",
                None,
                Some("120"),
            ),
            Self::ClinicUnavailable(cause) => {
                let op = operation_id();
                tracing::error!(op = %op, cause = %cause, "clinic unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Clinic temporarily unavailable",
                    "This clinic's records cannot be opened right now. The operator has been alerted; please try again later.",
                    Some(op),
                    Some("300"),
                )
            }
            Self::ClinicDamaged => (
                StatusCode::SERVICE_UNAVAILABLE,
                "This clinic's records need attention",
                "This clinic's records need attention; the operator has been told. Nothing you entered before is lost, and no other clinic is affected. Please try again later.",
                None,
                Some("600"),
            ),
            Self::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Restarting",
                "Ward is restarting. Please try again in a moment.",
                None,
                Some("10"),
            ),
            Self::Internal(cause) => {
                let op = operation_id();
                tracing::error!(op = %op, cause = %cause, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Your request could not be completed, and nothing was changed by it. Please try again.",
                    Some(op),
                    None,
                )
            }
        };
        let body = ErrorPage {
            title,
            message,
            operation_id: op,
        }
        .render()
        .unwrap_or_else(|_| message.to_owned());
        let mut response = (status, Html(body)).into_response();
        if let Some(secs) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
        }
        response
    }
}
