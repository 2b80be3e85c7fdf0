use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use chrono::{DateTime, Utc};
use ward_control::ControlPlane;
use ward_core::Clock;
use ward_tenancy::TenantStore;

use crate::{headers, views};

/// Settings the web layer needs.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address users reach Ward at (`WARD_PUBLIC_URL`), if set.
    pub public_url: Option<String>,
    /// The build's version, shown on `/status`.
    pub version: String,
}

impl WebConfig {
    /// Whether Ward is served over https (decides HSTS and cookie names).
    pub fn is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

/// Everything a request handler can reach.
pub struct App {
    /// Clinics, people and sessions.
    pub control: Arc<ControlPlane>,
    /// Open clinic databases.
    pub tenants: TenantStore,
    /// Web settings.
    pub config: WebConfig,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
    /// When this process started serving.
    pub started_at: DateTime<Utc>,
}

/// The state handed to handlers.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The whole application as one router.
pub fn router(app: Arc<App>) -> Router {
    let https = app.config.is_https();
    let routes = Router::new()
        .route("/healthz", get(views::health::healthz_get))
        .route("/status", get(views::health::status_get))
        .route("/static/ward.css", get(views::assets::css_get))
        .fallback(views::not_found)
        .with_state(AppState(app));
    headers::apply(routes, https)
}
