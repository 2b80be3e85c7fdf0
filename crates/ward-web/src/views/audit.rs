//! The owner's audit log viewer (`/c/{slug}/audit`) and the "accessed by" box of a
//! record's page.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;
use ward_clinic::PatientId;
use ward_clinic::audit::{self, Action, AuditRow, Diff, Filter};
use ward_clinic::audit_viewer::{self, Search};
use ward_clinic::settings::ClinicSettings;
use ward_core::Permission;

use crate::AppError;
use crate::extract::{ClinicAccess, ClinicPage, PageRequest};
use crate::form::FormErrors;
use crate::views::frame::ClinicFrame;

/// Rows per page of the viewer.
pub const PAGE_SIZE: u32 = 50;

/// How many accesses the "accessed by" box lists.
pub const ACCESSED_BY_LIMIT: u32 = 20;

/// The viewer's filters, as typed (all optional).
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
pub struct AuditQuery {
    /// A user id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    actor: String,
    /// A patient number.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    patient: String,
    /// An action's stored form.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    action: String,
    /// First day (YYYY-MM-DD, clinic time).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    from: String,
    /// Last day, inclusive.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    to: String,
    /// Cursor: show rows older than this sequence number.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    before: String,
}

/// One changed field, for display.
struct Change {
    field: String,
    old: String,
    new: String,
}

/// One row as the viewer shows it.
struct Row {
    seq: i64,
    when: String,
    actor: String,
    role: String,
    action: String,
    entity: String,
    ip: String,
    reason: String,
    detail: String,
    changes: Vec<Change>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    frame: ClinicFrame,
    q: AuditQuery,
    actors: Vec<(String, String)>,
    actions: Vec<&'static str>,
    errors: FormErrors,
    rows: Vec<Row>,
    timezone: String,
    next: Option<String>,
    first_page: Option<String>,
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "—".to_owned(),
        Value::String(s) if s.is_empty() => "(empty)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The staff filter's choices: the members, and a support session's grant when the
/// page was opened filtered by it (from the support page).
fn audit_actors(members: Vec<ward_control::Member>, chosen: &str) -> Vec<(String, String)> {
    let mut actors: Vec<(String, String)> =
        members.into_iter().map(|m| (m.user_id, m.name)).collect();
    let chosen = chosen.trim();
    if let Some(grant) = chosen.strip_prefix("support:")
        && !actors.iter().any(|(id, _)| id == chosen)
    {
        actors.push((chosen.to_owned(), format!("Support session #{grant}")));
    }
    actors
}

/// A changed field's value; amounts (fields named `…_minor`, integer minor units) as
/// people read money, through the clinic's one money formatter.
fn show_field(field: &str, v: &Value, settings: &ClinicSettings) -> String {
    match v.as_i64() {
        Some(minor) if field.ends_with("_minor") => settings.money(minor),
        _ => show_value(v),
    }
}

fn row(r: AuditRow, settings: &ClinicSettings) -> Row {
    let changes = r
        .diff
        .as_deref()
        .and_then(|d| Diff::parse(d).ok())
        .map(|d| {
            d.fields()
                .map(|(field, old, new)| Change {
                    field: field.to_owned(),
                    old: show_field(field, old, settings),
                    new: show_field(field, new, settings),
                })
                .collect()
        })
        .unwrap_or_default();
    let entity = match (r.entity_type, r.entity_id) {
        (Some(t), Some(id)) => format!("{t} {id}"),
        (Some(t), None) => t,
        _ => String::new(),
    };
    let role = match (r.actor_kind.as_str(), r.actor_role) {
        // Support sessions are operator rows with a role: "support", "emergency support".
        ("user" | "operator", Some(role)) => role,
        (kind, _) => kind.to_owned(),
    };
    Row {
        seq: r.seq,
        when: settings.local(r.at).format("%Y-%m-%d %H:%M:%S").to_string(),
        actor: r.actor_name,
        role,
        action: r.action.replace('_', " "),
        entity,
        ip: r.ip.unwrap_or_default(),
        reason: r.reason.unwrap_or_default(),
        detail: r.detail.unwrap_or_default(),
        changes,
    }
}

fn parse_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// A day field: empty is none; anything else must be a date.
fn day_field(text: &str, field: &str, errors: &mut FormErrors) -> Option<NaiveDate> {
    if text.trim().is_empty() {
        return None;
    }
    let day = parse_day(text);
    if day.is_none() {
        errors.add(field, "Enter a date as YYYY-MM-DD.");
    }
    day
}

/// Parses the filter form; each bad field gets its error.
fn wanted(q: &AuditQuery, errors: &mut FormErrors) -> Search {
    let mut filter = Filter::default();
    if !q.actor.trim().is_empty() {
        filter.actor_id = Some(q.actor.trim().to_owned());
    }
    if !q.action.trim().is_empty() {
        match Action::parse(q.action.trim()) {
            Some(a) => filter.action = Some(a),
            None => errors.add("action", "Choose an action from the list."),
        }
    }
    let patient = q.patient.trim();
    let patient_number = match patient.trim_start_matches('#').parse::<i64>() {
        _ if patient.is_empty() => None,
        Ok(n) if n > 0 => Some(n),
        _ => {
            errors.add("patient", "Enter a patient number, e.g. 1024.");
            None
        }
    };
    let (from_day, to_day) = (
        day_field(&q.from, "from", errors),
        day_field(&q.to, "to", errors),
    );
    if let (Some(f), Some(t)) = (from_day, to_day)
        && t < f
    {
        errors.add("to", "The last day is before the first.");
    }
    let before = q.before.trim().parse::<i64>().ok();
    Search {
        filter,
        patient_number,
        from_day,
        to_day,
        before,
    }
}

/// `base` with `q` as its query (none when `q` is all empty).
fn with_query(base: &str, q: &AuditQuery) -> String {
    match serde_urlencoded::to_string(q).unwrap_or_default() {
        query if query.is_empty() => base.to_owned(),
        query => format!("{base}?{query}"),
    }
}

/// The viewer's links to the next page (older than `last`, when there are more) and,
/// away from the first page (`before` given), back to it.
fn page_links(
    base: &str,
    q: &AuditQuery,
    last: Option<&Row>,
    before: Option<i64>,
) -> (Option<String>, Option<String>) {
    let next = last.map(|last| {
        let q = AuditQuery {
            before: last.seq.to_string(),
            ..q.clone()
        };
        with_query(base, &q)
    });
    let first_page = before.map(|_| {
        let q = AuditQuery {
            before: String::new(),
            ..q.clone()
        };
        with_query(base, &q)
    });
    (next, first_page)
}

/// The log, newest first, filtered and paginated by sequence number.
pub async fn audit_get(
    PageRequest(app, access, csrf): ClinicPage,
    Query(q): Query<AuditQuery>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewAudit)?;
    let members = app.control.clinic_members(access.clinic_id).await?;
    let mut errors = FormErrors::new();
    let wanted = wanted(&q, &mut errors);
    let (before, valid) = (wanted.before, errors.is_empty());
    let search = valid.then_some(wanted);
    let (settings, found) = access
        .tenant
        .with(|conn| audit_viewer::search(&conn, search, PAGE_SIZE + 1))
        .await?;
    let found = found.unwrap_or_else(|| {
        errors.add("patient", "No patient has this number.");
        Vec::new()
    });
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let frame = ClinicFrame::load(&app, &access, csrf, "audit").await?;
    let base = format!("/c/{}/audit", access.slug);
    let page = AuditPage::new(
        frame,
        members,
        (q, errors),
        &settings,
        (found, &base, before),
    );
    crate::views::respond::html(status, &page)
}

impl AuditPage {
    /// The viewer of `found` (one page and one row more, to know there is more) for
    /// query `q` at `base`, `before` the cursor it was asked from.
    fn new(
        frame: ClinicFrame,
        members: Vec<ward_control::Member>,
        (q, errors): (AuditQuery, FormErrors),
        settings: &ClinicSettings,
        (found, base, before): (Vec<AuditRow>, &str, Option<i64>),
    ) -> Self {
        let more = found.len() > PAGE_SIZE as usize;
        let rows: Vec<Row> = (found.into_iter().take(PAGE_SIZE as usize))
            .map(|r| row(r, settings))
            .collect();
        let (next, first_page) = page_links(base, &q, more.then(|| rows.last()).flatten(), before);
        Self {
            frame,
            actors: audit_actors(members, &q.actor),
            q,
            actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
            errors,
            rows,
            timezone: settings.timezone.name().to_owned(),
            next,
            first_page,
        }
    }
}

// ---------------------------------------------------------------- accessed by

/// One line of "accessed by".
pub struct AccessLine {
    /// When, in the clinic's time.
    pub when: String,
    /// Who (name at the time).
    pub who: String,
    /// Their role at the time, or `operator` / `system`.
    pub role: String,
    /// What they did: `view`, `update`, `print`, …
    pub action: String,
}

/// Who viewed or changed a record, for its page; render with
/// `{% include "_accessed_by.html" %}` from a template that has a field
/// `accessed_by: Option<AccessedBy>`.
pub struct AccessedBy {
    /// Newest first.
    pub lines: Vec<AccessLine>,
    /// Link to the full history in the audit viewer, when the record is a patient.
    pub more_href: Option<String>,
    /// Link to the patient's access report, when the record is a patient.
    pub report_href: Option<String>,
}

/// What an access was, for people: the action, the kind of record when it is not the
/// patient's own, and the detail (`view visit (version 1)`, `view (patient list)`).
pub fn describe(a: &audit::Access) -> String {
    let mut text = a.action.replace('_', " ");
    if let Some(kind) = a.entity_type.as_deref().filter(|k| *k != "patient") {
        text.push(' ');
        text.push_str(kind);
    }
    if let Some(detail) = a.detail.as_deref().filter(|d| !d.is_empty()) {
        text.push_str(&format!(" ({detail})"));
    }
    text
}

impl AccessedBy {
    /// The accesses to `entity_type` `entity_id` (e.g. `"patient"`, the patient's id) the
    /// box lists, newest first. Read on the page's own connection hand-off, and only for
    /// a role that may see the audit log.
    pub fn rows(
        conn: &ward_tenancy::Db,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<Vec<audit::Access>, ward_clinic::ClinicError> {
        audit::accessed_by(conn, entity_type, entity_id, ACCESSED_BY_LIMIT)
            .map_err(ward_clinic::ClinicError::from)
    }

    /// The newest accesses to anything about patient `id` (the record, every list that
    /// showed them, their visits, appointments and payments), for the patient page.
    pub fn patient_rows(
        conn: &ward_tenancy::Db,
        id: PatientId,
    ) -> Result<Vec<audit::Access>, ward_clinic::ClinicError> {
        audit::accessed_by_patient(conn, id, ACCESSED_BY_LIMIT)
            .map_err(ward_clinic::ClinicError::from)
    }

    /// The box from `rows`, times shown in the clinic's timezone. `patient`, when given
    /// (id, number), links to the viewer filtered on that patient and to their access
    /// report.
    pub fn new(
        access: &ClinicAccess,
        settings: &ClinicSettings,
        rows: Vec<audit::Access>,
        patient: Option<(PatientId, i64)>,
    ) -> Self {
        Self {
            lines: rows
                .into_iter()
                .map(|a| AccessLine {
                    action: describe(&a),
                    when: settings.local(a.at).format("%Y-%m-%d %H:%M").to_string(),
                    role: match (a.actor_kind.as_str(), a.actor_role) {
                        ("user" | "operator", Some(r)) => r,
                        (kind, _) => kind.to_owned(),
                    },
                    who: a.actor_name,
                })
                .collect(),
            more_href: patient.map(|(_, n)| format!("/c/{}/audit?patient={n}", access.slug)),
            report_href: patient.map(|(id, _)| format!("/c/{}/patients/{id}/access", access.slug)),
        }
    }
}

/// One line of a patient's access report.
pub struct ReportLine {
    when: String,
    who: String,
    role: String,
    what: String,
    from: String,
}

#[derive(Template)]
#[template(path = "patient_access.html")]
struct AccessReport {
    frame: ClinicFrame,
    patient: ward_clinic::patients::Patient,
    generated: String,
    timezone: String,
    lines: Vec<ReportLine>,
    /// The report stops at [`audit::MAX_PATIENT_REPORT`] lines: say so when it does.
    truncated: bool,
}

/// `GET /c/{slug}/patients/{id}/access`: the per-patient access report — who saw or
/// changed anything about the patient (the record, every list that showed them, their
/// visits, appointments and payments), when, what and from where — as a page that
/// prints as a document. For roles that see the audit log; itself audited as a `view`.
pub async fn patient_access_get(
    PageRequest(app, access, csrf): ClinicPage,
    crate::extract::RecordId(id): crate::extract::RecordId<ward_clinic::PatientId>,
) -> Result<Response, AppError> {
    access.require(Permission::ViewAudit)?;
    let report = access
        .tenant
        .read(|conn| ward_clinic::rights::access_report(&conn, id))
        .await?;
    let now = app.clock.now();
    let entry = access.audit_entry(now, Action::View);
    access.note_view(&app, entry.entity("patient", id).detail("access report"))?;
    let frame = ClinicFrame::load(&app, &access, csrf, "patients").await?;
    let page = AccessReport::new(frame, report, now, &access.session.user.name);
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Html(page.render()?),
    )
        .into_response())
}

impl AccessReport {
    /// The document for `report`, generated at `now` by `by`.
    fn new(
        frame: ClinicFrame,
        report: ward_clinic::rights::AccessReport,
        now: DateTime<Utc>,
        by: &str,
    ) -> Self {
        let s = &report.settings;
        Self {
            generated: format!("{} by {by}", s.local(now).format("%Y-%m-%d %H:%M")),
            timezone: s.timezone.name().to_owned(),
            truncated: report.accesses.len() >= audit::MAX_PATIENT_REPORT as usize,
            lines: report
                .accesses
                .iter()
                .map(|a| ReportLine::new(a, s))
                .collect(),
            patient: report.patient,
            frame,
        }
    }
}

impl ReportLine {
    fn new(a: &audit::Access, s: &ClinicSettings) -> Self {
        Self {
            when: s.local(a.at).format("%Y-%m-%d %H:%M:%S").to_string(),
            who: a.actor_name.clone(),
            role: match (a.actor_kind.as_str(), &a.actor_role) {
                ("user", Some(r)) => r.clone(),
                (kind, _) => kind.to_owned(),
            },
            what: describe(a),
            from: a.ip.clone().unwrap_or_else(|| "—".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::{AccessLine, AccessedBy};

    #[derive(Template)]
    #[template(source = "{% include \"_accessed_by.html\" %}", ext = "html")]
    struct Host {
        accessed_by: Option<AccessedBy>,
    }

    #[test]
    fn the_partial_lists_accesses_and_is_empty_for_other_roles() {
        let html = Host {
            accessed_by: Some(AccessedBy {
                lines: vec![AccessLine {
                    when: "2026-03-01 14:30".into(),
                    who: "Dr. <Bo>".into(),
                    role: "doctor".into(),
                    action: "view".into(),
                }],
                more_href: Some("/c/acme/audit?patient=7".into()),
                report_href: None,
            }),
        }
        .render()
        .unwrap();
        assert!(html.contains("Accessed by"));
        assert!(html.contains("2026-03-01 14:30"));
        assert!(
            html.contains("Dr. &#60;Bo&#62;") || html.contains("Dr. &lt;Bo&gt;"),
            "{html}"
        );
        assert!(html.contains("/c/acme/audit?patient=7"));
        let none = Host { accessed_by: None }.render().unwrap();
        assert!(!none.contains("Accessed by"));
    }
}
