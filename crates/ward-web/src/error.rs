//! The one error type of the web layer and the pages it becomes.
//!
//! Policy: a handler returns `Result<_, AppError>`. Each variant says its status below,
//! and [`IntoResponse`] maps them in one exhaustive `match`, so a new variant forces a
//! decision. The page shown never carries SQL, paths or stack traces; a 5xx page shows
//! the request's id (also in the `x-request-id` header); an unexpected error's full cause
//! goes to the log inside the request's span, so the log line carries the same id with
//! the method, route and clinic.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
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
    /// 413: an upload too large for the size cap or the clinic's quota; the text says
    /// which, and that nothing was stored.
    #[error("too large: {0}")]
    TooLarge(String),
    /// 303 to "confirm it is you": a sensitive action after an old sign-in. Holds the
    /// path to come back to.
    #[error("needs a recent sign-in")]
    Reconfirm(String),
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

impl From<ward_app::Error> for AppError {
    fn from(e: ward_app::Error) -> Self {
        match e {
            ward_app::Error::NotFound => Self::NotFound,
            ward_app::Error::Control(e) => e.into(),
            ward_app::Error::Tenant(e) => e.into(),
            ward_app::Error::Clinic(e) => e.into(),
            ward_app::Error::Other(e) => Self::Internal(e),
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
    /// The request's id, for the user to quote (5xx pages only).
    request_id: Option<std::sync::Arc<str>>,
}

/// Logs an unexpected failure. Inside a request the span supplies the request id (and
/// method, route, clinic); outside one (a page rendered by hand) a fresh reference ties
/// the log line to what was shown.
fn log_failure(what: &str, cause: &dyn std::fmt::Display) {
    if crate::observe::current_request_id().is_some() {
        tracing::error!(cause = %cause, "{what}");
    } else {
        tracing::error!(reference = %uuid::Uuid::now_v7(), cause = %cause, "{what}");
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, title, message, retry) = match &self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address. Check the link, or start again from the home page.",
                None,
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not available to your role",
                "Your role in this clinic does not include this page. If you need it, ask the clinic's owner.",
                None,
            ),
            Self::Reconfirm(back) => {
                let next: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
                return axum::response::Redirect::to(&format!("/account/confirm?next={next}"))
                    .into_response();
            }
            Self::Refused(text) | Self::TooLarge(text) => {
                let body = ErrorPage {
                    title: "That could not be done",
                    message: text,
                    request_id: None,
                }
                .render()
                .unwrap_or_else(|_| text.clone());
                let status = if matches!(self, Self::TooLarge(_)) {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                return (status, Html(body)).into_response();
            }
            Self::Maintenance => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Maintenance in progress",
                "This clinic's records are being maintained by the operator. Nothing is lost; please try again in a few minutes.",
                Some("120"),
            ),
            Self::ClinicUnavailable(cause) => {
                log_failure("clinic unavailable", cause);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Clinic temporarily unavailable",
                    "This clinic's records cannot be opened right now. The operator has been alerted; please try again later.",
                    Some("300"),
                )
            }
            Self::ClinicDamaged => (
                StatusCode::SERVICE_UNAVAILABLE,
                "This clinic's records need attention",
                "This clinic's records need attention; the operator has been told. Nothing you entered before is lost, and no other clinic is affected. Please try again later.",
                Some("600"),
            ),
            Self::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Restarting",
                "Ward is restarting. Please try again in a moment.",
                Some("10"),
            ),
            Self::Internal(cause) => {
                log_failure("request failed", cause);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Your request could not be completed, and nothing was changed by it. Please try again.",
                    None,
                )
            }
        };
        let body = ErrorPage {
            title,
            message,
            // Only where the fault is ours is there a log line worth finding; a "not
            // found" stays the same page for everyone (and byte for byte, whoever asks).
            request_id: status
                .is_server_error()
                .then(crate::observe::current_request_id)
                .flatten(),
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
