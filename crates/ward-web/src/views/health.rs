//! `/healthz` and the public `/status`: liveness, and one word of overall health. The
//! details (counts, failing clinics, backups) are for the operator only: the operator
//! listener's `/status` ([`crate::operator`]) and `ward status`.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;

use crate::status::StatusReport;
use crate::{AppError, AppState};

/// Liveness: the process answers. Deliberately touches nothing else.
pub async fn healthz_get() -> &'static str {
    "ok"
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    healthy: bool,
    state: &'static str,
}

/// Overall health only: `ok` (200) or `degraded` (503), so a monitor can watch it and
/// nobody learns how many clinics there are or which one is failing.
pub async fn status_get(
    State(app): State<AppState>,
) -> Result<(StatusCode, Html<String>), AppError> {
    let report = StatusReport::gather(&app.control, app.clock.now()).await;
    let code = if report.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let page = StatusPage {
        healthy: report.healthy(),
        state: report.state.as_str(),
    };
    Ok((code, Html(page.render()?)))
}
