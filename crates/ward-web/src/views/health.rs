use askama::Template;
use axum::extract::State;
use axum::response::Html;
use ward_core::{ClinicStatus, format_time};
use ward_tenancy::StoreStats;

use crate::{AppError, AppState};

/// Liveness: the process answers. Deliberately touches nothing else.
pub async fn healthz_get() -> &'static str {
    "ok"
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    healthy: bool,
    control_ok: bool,
    control_schema: u32,
    clinics_total: u64,
    clinic_counts: Vec<(ClinicStatus, u64)>,
    stats: StoreStats,
    hit_rate: String,
    tenant_schema: u32,
    version: String,
    started_at: String,
    /// Clinic id and since when; never the cause (it may name paths) or any clinic data.
    failing: Vec<(String, String)>,
}

/// Component health for operators: no clinic data, no names.
pub async fn status_get(State(app): State<AppState>) -> Result<Html<String>, AppError> {
    let control_ok = app.control.ping().await;
    let (control_schema, clinic_counts, failing) = if control_ok {
        (
            app.control.schema_version().await.unwrap_or(0),
            app.control.clinic_counts().await.unwrap_or_default(),
            app.control.failing_clinics().await.unwrap_or_default(),
        )
    } else {
        (0, Vec::new(), Vec::new())
    };
    let stats = app.tenants.stats();
    let lookups = stats.hits + stats.misses;
    let hit_rate = if lookups == 0 {
        "no lookups yet".to_owned()
    } else {
        format!("{:.1}%", 100.0 * stats.hits as f64 / lookups as f64)
    };
    let page = StatusPage {
        healthy: control_ok && failing.is_empty(),
        control_ok,
        control_schema,
        clinics_total: clinic_counts.iter().map(|(_, n)| n).sum(),
        clinic_counts,
        stats,
        hit_rate,
        tenant_schema: app.tenants.latest_version(),
        version: app.config.version.clone(),
        started_at: format_time(app.started_at),
        failing: failing
            .into_iter()
            .map(|c| {
                (
                    c.id.to_string(),
                    c.open_error_at.map(format_time).unwrap_or_default(),
                )
            })
            .collect(),
    };
    Ok(Html(page.render()?))
}
