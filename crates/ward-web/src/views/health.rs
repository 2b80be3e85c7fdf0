use askama::Template;
use axum::extract::State;
use axum::response::Html;
use chrono::{DateTime, Utc};
use ward_control::catalog::BackupOverview;
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
    backups: BackupsSection,
}

/// The backup part of `/status`: ids, times and counts only.
struct BackupsSection {
    healthy: bool,
    /// Clinics and control plane with a verified backup.
    verified: u64,
    /// Age of the oldest "newest verified backup": the worst recovery point now.
    stalest_age: String,
    control_age: String,
    drill: String,
    /// Scope (clinic id or `control`), newest verified backup age, last drill outcome.
    attention: Vec<(String, String, String)>,
}

fn age(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else {
        return "none yet".to_owned();
    };
    let secs = (now - t).num_seconds().max(0);
    let text = match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    };
    format!("{text} ago ({})", format_time(t))
}

fn backups_section(o: &BackupOverview, now: DateTime<Utc>) -> BackupsSection {
    let drill = match o.drill_at {
        None => "no drill yet".to_owned(),
        Some(t) => format!(
            "{} passed, {} failed; last {}",
            o.drill_passed,
            o.drill_failed,
            age(now, Some(t))
        ),
    };
    BackupsSection {
        healthy: o.attention.is_empty(),
        verified: o.scopes_verified,
        stalest_age: age(now, o.stalest_verified_at),
        control_age: age(now, o.control_verified_at),
        drill,
        attention: o
            .attention
            .iter()
            .map(|a| {
                let drill = match (a.drill_ok, a.drill_at) {
                    (Some(true), Some(t)) => format!("passed {}", format_time(t)),
                    (Some(false), Some(t)) => format!("FAILED {}", format_time(t)),
                    _ => "not drilled".to_owned(),
                };
                let newest = if a.failed {
                    format!(
                        "last backup failed; newest verified {}",
                        age(now, a.newest_verified_at)
                    )
                } else {
                    age(now, a.newest_verified_at)
                };
                (a.scope.clone(), newest, drill)
            })
            .collect(),
    }
}

/// Component health for operators: no clinic data, no names.
pub async fn status_get(State(app): State<AppState>) -> Result<Html<String>, AppError> {
    let control_ok = app.control.ping().await;
    let (control_schema, clinic_counts, failing, backups) = if control_ok {
        (
            app.control.schema_version().await.unwrap_or(0),
            app.control.clinic_counts().await.unwrap_or_default(),
            app.control.failing_clinics().await.unwrap_or_default(),
            app.control.backup_overview().await.unwrap_or_default(),
        )
    } else {
        (0, Vec::new(), Vec::new(), BackupOverview::default())
    };
    let backups = backups_section(&backups, app.clock.now());
    let stats = app.tenants.stats();
    let lookups = stats.hits + stats.misses;
    let hit_rate = if lookups == 0 {
        "no lookups yet".to_owned()
    } else {
        format!("{:.1}%", 100.0 * stats.hits as f64 / lookups as f64)
    };
    let page = StatusPage {
        healthy: control_ok && failing.is_empty() && backups.healthy,
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
        backups,
    };
    Ok(Html(page.render()?))
}
