//! Support access on the web: the owners' page listing support sessions with Approve,
//! Refuse and End now (`/c/{slug}/support`), the operator's sign-in link
//! (`/support/{token}`), and what a support session may reach (one clinic, read only
//! unless an owner allowed changes, never exports, staff, closing, support itself).

use askama::Template;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use ward_clinic::audit::{Action, support_actor_id};
use ward_control::support::{Grant, GrantState, SupportSession};
use ward_control::{Session, User};
use ward_core::{ClinicStatus, Permission, Role, Slug};

use crate::extract::{AppForm, ClientInfo, ClinicAccess, ClinicPage, Csrf, PageRequest, SlugParam};
use crate::session::{ResolvedSupport, clear_session_cookie, session_cookie};
use crate::views::frame::ClinicFrame;
use crate::views::pages;
use crate::{AppError, AppState};
use ward_app::support::{self as support_access, access_words};

type Page = Result<Response, AppError>;

/// What a support session may never do, even with changes allowed.
pub const NEVER: [Permission; 4] = [
    Permission::Export,
    Permission::ManageStaff,
    Permission::CloseClinic,
    Permission::PatientRights,
];

/// Clinic paths (after `/c/{slug}/`) a support session never reaches.
const NEVER_PATHS: [&str; 4] = ["export", "staff", "support", "settings/close"];

/// A support session inside its clinic.
#[derive(Debug, Clone)]
pub struct SupportInfo {
    /// Its grant.
    pub grant: Grant,
    /// When the page was asked for.
    pub now: DateTime<Utc>,
}

/// What an owner's pages say about support: requests waiting, the open window.
#[derive(Debug, Clone, Default)]
pub struct OwnerNotice {
    /// Requests waiting for an answer.
    pub pending: Vec<Grant>,
    /// The window open now.
    pub open: Option<Grant>,
}

fn hhmm(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_default()
}

impl SupportInfo {
    /// The banner on every page of the session.
    pub fn banner(&self) -> String {
        let left = self
            .grant
            .ends_at
            .map_or(0, |end| ((end - self.now).num_seconds().max(0) + 59) / 60);
        format!(
            "Support session ({}) — {} — ends at {} ({left} minute{} left)",
            self.grant.operator,
            access_words(&self.grant),
            hhmm(self.grant.ends_at),
            if left == 1 { "" } else { "s" }
        )
    }
}

impl OwnerNotice {
    /// The notice on an owner's pages, if there is anything to say.
    pub fn text(&self) -> Option<String> {
        if let Some(g) = self.pending.first() {
            let kind = if g.write_requested {
                "and to make changes"
            } else {
                "read only"
            };
            return Some(format!(
                "Support ({}) asks to look at this clinic for up to {} minutes ({kind}). Nothing is opened until an owner approves.",
                g.operator, g.minutes
            ));
        }
        self.open.as_ref().map(|g| {
            format!(
                "{} ({}) is open until {} — {}.",
                if g.emergency {
                    "An emergency support session"
                } else {
                    "A support session"
                },
                g.operator,
                hhmm(g.ends_at),
                access_words(g)
            )
        })
    }
}

/// The owners' notice for `clinic`.
pub async fn owner_notice(
    app: &AppState,
    clinic: ward_core::ClinicId,
) -> Result<OwnerNotice, AppError> {
    let (pending, open) = app.control.support_notice(clinic).await?;
    Ok(OwnerNotice { pending, open })
}

fn refused(title: &str, text: &str) -> Response {
    (StatusCode::FORBIDDEN, pages::message(title, text)).into_response()
}

/// [`ClinicAccess`] for a support session: only its grant's clinic (any other is "not
/// found", as for anyone who is not a member), seen as an owner would, writes refused
/// unless allowed, and every page view noted in the clinic's audit log.
pub async fn clinic_access(
    parts: &mut Parts,
    state: &AppState,
    support: SupportSession,
) -> Result<ClinicAccess, Response> {
    let grant = support.grant;
    let (clinic_id, slug) = grant_clinic(parts, state, &grant).await?;
    crate::observe::record_clinic(clinic_id);
    let path = parts.uri.path().to_owned();
    let reads =
        within_reach(parts, &slug, &path, &grant).map_err(|(title, text)| refused(title, text))?;
    let tenant = state
        .tenants
        .get(clinic_id)
        .await
        .map_err(|e| AppError::from(e).into_response())?;
    let ip = crate::client_ip::client_ip(&parts.headers, &parts.extensions, state.trusted_proxy)
        .map(|ip| ip.to_string());
    let now = state.clock.now();
    let session = support_session(support.id, support.csrf_token, &grant, now);
    let access = ClinicAccess {
        session,
        ip,
        clinic_id,
        slug,
        role: Role::Owner,
        second_factor_due: None,
        tenant,
        support: Some(SupportInfo { grant, now }),
        support_notice: None,
    };
    if reads {
        let entry = access
            .audit_entry(now, Action::View)
            .detail(&format!("page {}", page_seen(path, parts.uri.query())));
        access
            .note_view(state, entry)
            .map_err(IntoResponse::into_response)?;
    }
    Ok(access)
}

/// The clinic of the address, if it is the grant's own and open; any other is "not
/// found".
async fn grant_clinic(
    parts: &mut Parts,
    state: &AppState,
    grant: &Grant,
) -> Result<(ward_core::ClinicId, Slug), Response> {
    let not_found = || AppError::NotFound.into_response();
    let Path(SlugParam { slug }) = Path::<SlugParam>::from_request_parts(parts, state)
        .await
        .map_err(|_| not_found())?;
    let slug = Slug::parse(&slug).map_err(|_| not_found())?;
    let clinic = match state.control.clinic_by_slug(&slug).await {
        Ok(c) => c,
        Err(ward_control::ControlError::NoSuchClinic(_)) => return Err(not_found()),
        Err(e) => return Err(AppError::from(e).into_response()),
    };
    if clinic.id != grant.clinic_id || clinic.status != ClinicStatus::Active {
        return Err(not_found());
    }
    Ok((clinic.id, slug))
}

/// Whether a support session may reach `path` of clinic `slug` this way: never the
/// owners' pages, and changes only when allowed. `true` for a read.
/// `Err` holds the refusal page's title and text.
fn within_reach(
    parts: &Parts,
    slug: &Slug,
    path: &str,
    grant: &Grant,
) -> Result<bool, (&'static str, &'static str)> {
    let rest = path
        .strip_prefix(&format!("/c/{slug}/"))
        .unwrap_or_default();
    if NEVER_PATHS
        .iter()
        .any(|p| rest == *p || rest.starts_with(&format!("{p}/")))
    {
        return Err((
            "Not available in a support session",
            "Exports, staff changes, closing the clinic and support approval are only for the clinic's owners.",
        ));
    }
    let reads = matches!(parts.method, Method::GET | Method::HEAD);
    if !reads && !grant.write_allowed {
        return Err((
            "This support session is read only",
            "The clinic's owners allowed this support session to look, not to make changes. Nothing was changed.",
        ));
    }
    Ok(reads)
}

/// The session a support grant acts as: the operator, named for the grant, as a user
/// with no address, password or second factor.
fn support_session(id: String, csrf_token: String, grant: &Grant, now: DateTime<Utc>) -> Session {
    let started = grant.starts_at.unwrap_or(grant.requested_at);
    Session {
        id,
        user: User {
            id: support_actor_id(grant.id),
            email: String::new(),
            name: format!("Support ({})", grant.operator),
            password_hash: String::new(),
            email_verified: true,
            disabled: false,
            password_changed_at: None,
        },
        csrf_token,
        authenticated_at: started,
        second_factor_at: None,
        has_second_factor: false,
        account_created_at: grant.requested_at,
        created_at: started,
        last_seen_at: now,
    }
}

/// The page as the audit log names it: the path, and only the names of the query's
/// parameters (a search's text, a patient's name or phone number, never reaches the
/// log).
fn page_seen(path: String, query: Option<&str>) -> String {
    match query {
        Some(q) => {
            let names: Vec<&str> = q
                .split('&')
                .filter_map(|pair| pair.split('=').next())
                .filter(|name| !name.is_empty())
                .collect();
            format!("{path} (with {})", names.join(", "))
        }
        None => path,
    }
}

// ---------------------------------------------------------------- the owners' page

struct GrantRow {
    id: i64,
    operator: String,
    reason: String,
    minutes: u32,
    asked: &'static str,
    access: &'static str,
    state: String,
    emergency: bool,
    requested: String,
    decided: String,
    window: String,
    ended: String,
    audit_href: String,
}

#[derive(Template)]
#[template(path = "support.html")]
struct SupportPage {
    frame: ClinicFrame,
    pending: Vec<GrantRow>,
    open: Vec<GrantRow>,
    past: Vec<GrantRow>,
    notice: Option<&'static str>,
}

/// `?done=` after an answer.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

/// Where a grant stands at `now`, in words.
fn grant_state(g: &Grant, now: DateTime<Utc>) -> String {
    match g.state {
        GrantState::Approved if g.open_at(now) => "approved, link not used yet".to_owned(),
        GrantState::Active if g.open_at(now) => "in progress".to_owned(),
        GrantState::Approved | GrantState::Active => "expired".to_owned(),
        GrantState::Requested if !g.pending_at(now) => "expired".to_owned(),
        s => s.to_string(),
    }
}

fn row(
    access: &ClinicAccess,
    settings: &ward_clinic::settings::ClinicSettings,
    g: Grant,
    now: DateTime<Utc>,
) -> GrantRow {
    let local = |t: Option<DateTime<Utc>>| {
        t.map(|t| settings.local(t).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let state = grant_state(&g, now);
    GrantRow {
        id: g.id,
        asked: if g.write_requested {
            "to make changes"
        } else {
            "to look only"
        },
        access: access_words(&g),
        state,
        emergency: g.emergency,
        requested: local(Some(g.requested_at)),
        decided: match (&g.decided_by, g.decided_at) {
            (Some(by), at) => format!("{by}, {}", local(at)),
            _ => String::new(),
        },
        window: match (g.starts_at, g.ends_at) {
            (Some(s), Some(e)) => format!("{} – {}", local(Some(s)), local(Some(e))),
            _ => String::new(),
        },
        ended: match (&g.ended_by, g.ended_at) {
            (Some(by), at) => format!("{by}, {}", local(at)),
            _ => String::new(),
        },
        audit_href: format!("/c/{}/audit?actor={}", access.slug, support_actor_id(g.id)),
        operator: g.operator,
        reason: g.reason,
        minutes: g.minutes,
    }
}

fn owner_only(access: &ClinicAccess) -> Result<(), AppError> {
    if access.support.is_none() && access.role == Role::Owner {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// What the page says after an answer (`?done=`).
fn done_notice(done: &str) -> Option<&'static str> {
    match done {
        "approved" => Some("Approved. The operator can now open the session, for the time shown."),
        "refused" => Some("Refused. Nothing was opened."),
        "ended" => Some("Ended. The support session is signed out at its next page."),
        "gone" => Some("That request is no longer waiting or open; nothing changed."),
        _ => None,
    }
}

/// Pending, current and past support sessions, with the owner's buttons.
pub async fn support_get(
    PageRequest(app, access, csrf): ClinicPage,
    axum::extract::Query(q): axum::extract::Query<DoneQuery>,
) -> Page {
    owner_only(&access)?;
    support_access::expire(&app.control, &app.tenants, Some(access.clinic_id))
        .await
        .map_err(AppError::Internal)?;
    let settings = access
        .tenant
        .with(|conn| ward_clinic::settings::load(&conn))
        .await?;
    let now = app.clock.now();
    let (mut pending, mut open, mut past) = (Vec::new(), Vec::new(), Vec::new());
    for g in app.control.support_grants(access.clinic_id, 100).await? {
        if g.pending_at(now) {
            pending.push(row(&access, &settings, g, now));
        } else if g.open_at(now) {
            open.push(row(&access, &settings, g, now));
        } else {
            past.push(row(&access, &settings, g, now));
        }
    }
    let notice = done_notice(&q.done);
    let page = SupportPage {
        frame: ClinicFrame::load(&app, &access, csrf, "support").await?,
        pending,
        open,
        past,
        notice,
    };
    Ok(Html(page.render()?).into_response())
}

/// The approval form: whether changes are allowed.
#[derive(Debug, Default, Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    allow_changes: Option<String>,
}

fn back(access: &ClinicAccess, done: &str) -> Response {
    Redirect::to(&format!("/c/{}/support?done={done}", access.slug)).into_response()
}

async fn record(
    app: &AppState,
    access: &ClinicAccess,
    grant: &Grant,
    what: &str,
) -> Result<(), AppError> {
    support_access::record_step(
        &app.control,
        &app.tenants,
        grant,
        access.actor(),
        access.ip.as_deref(),
        what,
    )
    .await
    .map_err(AppError::Internal)
}

/// Approves a pending request (a recent sign-in and second factor required).
pub async fn approve_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, i64)>,
    AppForm(form): AppForm<ApproveForm>,
) -> Page {
    owner_only(&access)?;
    access.require_fresh(&app, "support")?;
    let allow = form.allow_changes.is_some();
    let Some(grant) = app
        .control
        .decide_support(access.clinic_id, id, &access.session.user.name, true, allow)
        .await?
    else {
        return Ok(back(&access, "gone"));
    };
    let what = format!(
        "support approved by {}: {} minutes, {}",
        access.session.user.name,
        grant.minutes,
        access_words(&grant)
    );
    record(&app, &access, &grant, &what).await?;
    Ok(back(&access, "approved"))
}

/// Refuses a pending request.
pub async fn refuse_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, i64)>,
) -> Page {
    owner_only(&access)?;
    let Some(grant) = app
        .control
        .decide_support(
            access.clinic_id,
            id,
            &access.session.user.name,
            false,
            false,
        )
        .await?
    else {
        return Ok(back(&access, "gone"));
    };
    let what = format!("support refused by {}", access.session.user.name);
    record(&app, &access, &grant, &what).await?;
    Ok(back(&access, "refused"))
}

/// Ends an open session (or withdraws a request) now.
pub async fn end_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, i64)>,
) -> Page {
    owner_only(&access)?;
    let by = access.session.user.name.clone();
    let Some(grant) = app
        .control
        .end_support(id, Some(access.clinic_id), &by, "ended by an owner")
        .await?
    else {
        return Ok(back(&access, "gone"));
    };
    record(&app, &access, &grant, &format!("support ended by {by}")).await?;
    Ok(back(&access, "ended"))
}

// ---------------------------------------------------------------- the operator's link

#[derive(Template)]
#[template(path = "support_start.html")]
struct StartPage {
    csrf: String,
    token: String,
    clinic_name: String,
    minutes: u32,
    access: &'static str,
    reason: String,
}

/// The page a sign-in link opens: one button, so that merely fetching the link (a
/// preview, a scanner) does not use it.
pub async fn start_get(
    Csrf(csrf): Csrf,
    Path(token): Path<String>,
    State(app): State<AppState>,
) -> Page {
    match app.control.support_link_grant(&token).await? {
        Some(grant) => {
            let clinic = app.control.clinic_by_id(grant.clinic_id).await?;
            let page = StartPage {
                csrf,
                token,
                clinic_name: clinic.name,
                minutes: grant.minutes,
                access: access_words(&grant),
                reason: grant.reason,
            };
            Ok(Html(page.render()?).into_response())
        }
        None => Ok(used_link()),
    }
}

fn used_link() -> Response {
    (
        StatusCode::GONE,
        pages::message(
            "This support link no longer works",
            "A support link works once, for a few minutes, and only while the clinic's approval lasts. Ask for a new one with `ward support link`.",
        ),
    )
        .into_response()
}

/// The sign-in form's field.
#[derive(Debug, Deserialize)]
pub struct StartForm {
    token: String,
}

/// Uses the link: the session starts, bound to the grant's clinic, until its end.
pub async fn start_post(
    State(app): State<AppState>,
    client: ClientInfo,
    AppForm(form): AppForm<StartForm>,
) -> Page {
    let Some((cookie, grant)) = app
        .control
        .start_support_session(&form.token, client.ip.clone(), client.user_agent.clone())
        .await?
    else {
        return Ok(used_link());
    };
    let clinic = app.control.clinic_by_id(grant.clinic_id).await?;
    let now = app.clock.now();
    let end = grant.ends_at.unwrap_or(now);
    let what = format!(
        "support session started: until {}, {}",
        ward_core::format_time(end),
        access_words(&grant)
    );
    support_access::record_step(
        &app.control,
        &app.tenants,
        &grant,
        support_access::actor(&grant),
        client.ip.as_deref(),
        &what,
    )
    .await
    .map_err(AppError::Internal)?;
    let mut response = Redirect::to(&format!("/c/{}/", clinic.slug)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&app.config, cookie, end - now),
    );
    Ok(response)
}

/// The support session ends itself (the banner's button).
pub async fn end_self_post(
    State(app): State<AppState>,
    client: ClientInfo,
    support: Option<axum::Extension<ResolvedSupport>>,
) -> Page {
    let grant = support
        .and_then(|axum::Extension(ResolvedSupport(s))| s)
        .map(|s| s.grant);
    if let Some(grant) = grant {
        let by = format!("Support ({})", grant.operator);
        if let Some(ended) = app
            .control
            .end_support(grant.id, None, &by, "ended from the support session")
            .await?
        {
            support_access::record_step(
                &app.control,
                &app.tenants,
                &ended,
                support_access::actor(&ended),
                client.ip.as_deref(),
                "support session ended by the operator",
            )
            .await
            .map_err(AppError::Internal)?;
        }
    }
    let mut response = pages::message(
        "Support session ended",
        "The support session is over; its link will not work again.",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_session_cookie(&app.config));
    Ok(response)
}
