//! Two-step sign-in: the code asked for after the password, turning it on and off from
//! the account page, and confirming who you are again before a sensitive action.
//!
//! - A right password for an account with a second factor starts no session: it sets a
//!   short-lived, single-use "pending" cookie and asks for the code. Refused codes are
//!   counted per account and per address; past the limit the pending sign-in is dropped.
//! - Owners must have a second factor (after the configured grace); everyone else may.
//! - Sensitive actions (export, closing, staff changes, changes to the second factor)
//!   need a password and, when the user has one, a code from the last 15 minutes.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use ward_control::second_factor::{Enrolment, FactorCheck};
use ward_control::{Purpose, Session, User};
use ward_core::{Email, Role};
use ward_mail::{Message, SecurityEvent};

use crate::extract::{
    AppForm, ClientInfo, Csrf, CurrentUser, MaybeUser, PageRequest, SignedInPage,
};
use crate::limits::too_many;
use crate::session::{clear_pending_cookie, pending_cookie, pending_cookie_name};
use crate::views::accounts::{html, sign_in_with};
use crate::views::pages;
use crate::{AppError, AppState, Web};
use ward_app::accounts::{self, Attempt, landing, send};

type Page = Result<Response, AppError>;

/// How long the code may be typed after the password.
const PENDING_TTL: TimeDelta = TimeDelta::minutes(5);
/// Refused codes counted over this window.
const FAILURE_WINDOW: TimeDelta = TimeDelta::minutes(15);
/// Refused codes per account in the window; then the pending sign-in ends.
const MAX_FAILURES_PER_ACCOUNT: u64 = 5;
/// Refused codes per client address in the window, whichever account.
const MAX_FAILURES_PER_ADDRESS: u64 = 20;
/// How long a sign-in (or a later confirmation) counts as recent.
pub const FRESH_FOR: TimeDelta = TimeDelta::minutes(15);

/// Whether `s` proved its password, and its second factor if the user has one, within
/// [`FRESH_FOR`].
pub fn is_fresh(app: &Web, s: &Session) -> bool {
    let now = app.clock.now();
    now - s.authenticated_at <= FRESH_FOR
        && (!s.has_second_factor || s.second_factor_at.is_some_and(|t| now - t <= FRESH_FOR))
}

/// `Ok` when the session is fresh; otherwise the error that sends the user to the
/// confirmation page, which comes back to `back` (a path on this site).
pub fn require_fresh(app: &Web, s: &Session, back: &str) -> Result<(), AppError> {
    if is_fresh(app, s) {
        Ok(())
    } else {
        Err(AppError::Reconfirm(back.to_owned()))
    }
}

/// Where an owner stands with the second factor they must have.
pub enum OwnerFactor {
    /// They have one.
    Done,
    /// They have none yet and may work until then.
    DueBy(DateTime<Utc>),
    /// They have none and their grace is over: they must set it up now.
    Overdue,
}

/// Where the owner of session `s` stands.
pub async fn owner_enrolment(app: &Web, s: &Session) -> Result<OwnerFactor, AppError> {
    if s.has_second_factor {
        return Ok(OwnerFactor::Done);
    }
    let since = app.control.owners_second_factor_since().await?;
    let due = s
        .account_created_at
        .max(since)
        .checked_add_signed(app.config.owner_second_factor_grace);
    Ok(match due {
        Some(due) if app.clock.now() >= due => OwnerFactor::Overdue,
        Some(due) => OwnerFactor::DueBy(due),
        // A grace too long to represent never ends.
        None => OwnerFactor::DueBy(DateTime::<Utc>::MAX_UTC),
    })
}

/// A safe place to go back to: a path on this site, never another origin.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/account".to_owned(),
    }
}

async fn notify(app: &Web, user: &User, event: SecurityEvent) {
    if let Ok(to) = Email::parse(&user.email) {
        let link = format!("{}/account", app.base_url());
        send(
            app,
            &to,
            &user.name,
            Message::SecurityNotice {
                name: user.name.clone(),
                event,
                link,
            },
        )
        .await;
    }
}

/// Records an auth-log event about `user`.
async fn log_user(app: &Web, kind: &str, outcome: &str, user: &User, client: &ClientInfo) {
    Attempt::new(kind, client.origin())
        .by(user)
        .log(app, outcome)
        .await;
}

/// Counts a refused code for the operator's metrics.
fn refused(outcome: &'static str) {
    metrics::counter!("ward_signin_failures_total", "reason" => outcome).increment(1);
}

fn outcome_word(check: FactorCheck) -> &'static str {
    match check {
        FactorCheck::Totp => "ok",
        FactorCheck::Recovery { .. } => "recovery_code",
        FactorCheck::Replayed => "replayed",
        FactorCheck::Wrong | FactorCheck::NotEnrolled => "failed",
    }
}

fn refusal_text(check: FactorCheck) -> &'static str {
    match check {
        FactorCheck::Replayed => {
            "That code was already used. Wait for your app to show the next one, then type it."
        }
        _ => "That code is not right. Type the six digits your app shows now, or a recovery code.",
    }
}

/// Checks a code for `user` and, when it passed, tells them by mail if it was a
/// recovery code. Logs the attempt under `kind`.
async fn check_code(
    app: &Web,
    user: &User,
    code: &str,
    kind: &str,
    client: &ClientInfo,
) -> Result<FactorCheck, AppError> {
    let check = app.control.check_second_factor(user, code).await?;
    log_user(app, kind, outcome_word(check), user, client).await;
    if let FactorCheck::Recovery { left } = check {
        notify(app, user, SecurityEvent::RecoveryCodeUsed { left }).await;
    }
    if !check.passed() {
        refused("second_factor");
    }
    Ok(check)
}

/// Whether `kind` attempts for `user` from this client are over the limits.
async fn over_limit(
    app: &Web,
    kind: &str,
    user: &User,
    client: &ClientInfo,
) -> Result<bool, AppError> {
    let since = app.clock.now() - FAILURE_WINDOW;
    let (by_user, by_ip) = app
        .control
        .failed_codes_since(kind, &user.id, client.ip.as_deref(), since)
        .await?;
    Ok(by_user >= MAX_FAILURES_PER_ACCOUNT || by_ip >= MAX_FAILURES_PER_ADDRESS)
}

// ---------------------------------------------------------------- sign-in, second step

/// After a right password for an account with a second factor: no session yet, a
/// pending sign-in and the code form.
pub async fn start_pending(app: &Web, user: &User) -> Page {
    let token = accounts::user_token(app, Purpose::SignInCode, &user.id, None, PENDING_TTL).await?;
    let mut r = Redirect::to("/login/code").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        pending_cookie(&app.config, token, PENDING_TTL),
    );
    Ok(r)
}

#[derive(Template)]
#[template(path = "login_code.html")]
struct CodePage {
    csrf: String,
    error: Option<&'static str>,
}

/// The code form.
pub async fn code_get(State(app): State<AppState>, Csrf(csrf): Csrf, jar: CookieJar) -> Page {
    if jar.get(pending_cookie_name(&app.config)).is_none() {
        return Ok(Redirect::to("/login").into_response());
    }
    html(StatusCode::OK, &CodePage { csrf, error: None })
}

/// The code form's field.
#[derive(Debug, Default, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// Finishes a sign-in with a code (or a recovery code).
pub async fn code_post(
    State(app): State<AppState>,
    Csrf(csrf): Csrf,
    MaybeUser(old): MaybeUser,
    client: ClientInfo,
    jar: CookieJar,
    AppForm(form): AppForm<CodeForm>,
) -> Page {
    let token = jar
        .get(pending_cookie_name(&app.config))
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let Some(user) = pending_user(&app, &token).await? else {
        return start_again_cleared(&app);
    };
    if over_limit(&app, "second_factor", &user, &client).await? {
        return limited(&app, &token, &user, &client).await;
    }
    let check = check_code(&app, &user, &form.code, "second_factor", &client).await?;
    if !check.passed() {
        return html(
            StatusCode::UNAUTHORIZED,
            &CodePage {
                csrf,
                error: Some(refusal_text(check)),
            },
        );
    }
    finish(&app, &token, &user, &client, old.as_ref()).await
}

/// The code was right: the pending sign-in (`token`) is used up, logged, and the
/// session starts with the second factor proved; the pending cookie is cleared.
async fn finish(
    app: &Web,
    token: &str,
    user: &User,
    client: &ClientInfo,
    old: Option<&Session>,
) -> Page {
    let used = app
        .control
        .consume_token(Purpose::SignInCode, token)
        .await?;
    if used.is_none() {
        return start_again_cleared(app);
    }
    log_user(app, "login", "ok", user, client).await;
    let to = landing(app, &user.id).await?;
    let mut r = sign_in_with(app, &user.id, client, old, &to, true).await?;
    r.headers_mut()
        .append(header::SET_COOKIE, clear_pending_cookie(&app.config));
    Ok(r)
}

/// The account a pending sign-in (its cookie's `token`) is for, if it is still open
/// and the account not disabled.
async fn pending_user(app: &Web, token: &str) -> Result<Option<User>, AppError> {
    let pending = app.control.peek_token(Purpose::SignInCode, token).await?;
    let user = match pending.and_then(|p| p.user_id) {
        Some(id) => app.control.user_by_id(&id).await?,
        None => None,
    };
    Ok(user.filter(|u| !u.disabled))
}

/// Too many wrong codes: the pending sign-in ends (the next try needs the password
/// again), logged, and the 429 page clears its cookie.
async fn limited(app: &Web, token: &str, user: &User, client: &ClientInfo) -> Page {
    app.control
        .consume_token(Purpose::SignInCode, token)
        .await?;
    refused("limited");
    log_user(app, "second_factor", "limited", user, client).await;
    let mut r = too_many(FAILURE_WINDOW.num_seconds().unsigned_abs());
    r.headers_mut()
        .append(header::SET_COOKIE, clear_pending_cookie(&app.config));
    Ok(r)
}

fn start_again_cleared(app: &Web) -> Page {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        pages::message_with_link(
            "Sign in again",
            "That sign-in waited too long for its code, or was already finished. Sign in again with your password.",
            "/login",
            "Sign in",
        ),
    )
        .into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, clear_pending_cookie(&app.config));
    Ok(r)
}

// ---------------------------------------------------------------- the account's factor

#[derive(Template)]
#[template(path = "two_factor.html")]
struct FactorPage {
    csrf: String,
    user_name: String,
    enrolled: bool,
    codes_left: usize,
    required: bool,
    setup: Option<Setup>,
    codes: Vec<String>,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

/// What the setup step shows.
struct Setup {
    qr_svg: String,
    secret: String,
}

impl FactorPage {
    fn new(s: &Session, csrf: String, enrolled: bool, required: bool) -> Self {
        Self {
            user_name: s.user.name.clone(),
            csrf,
            enrolled,
            codes_left: 0,
            required,
            setup: None,
            codes: Vec::new(),
            notice: None,
            error: None,
        }
    }
}

/// Whether the user is an owner anywhere (and so must have a second factor).
async fn is_owner(app: &Web, user_id: &str) -> Result<bool, AppError> {
    Ok(app
        .control
        .memberships(user_id)
        .await?
        .iter()
        .any(|m| m.role == Role::Owner))
}

fn setup_of(e: &Enrolment) -> Result<Setup, AppError> {
    let qr = qrcode::QrCode::new(e.otpauth_url.as_bytes())
        .map_err(|e| AppError::Internal(Box::new(e)))?;
    let svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    // Inline in the page: the XML declaration has no place in HTML.
    let svg = match svg.find("<svg") {
        Some(i) => svg[i..].to_owned(),
        None => svg,
    };
    // Groups of four are easier to type into an app.
    let secret = e
        .secret_base32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Setup {
        qr_svg: svg,
        secret,
    })
}

/// `?required=1` when an owner was sent here before reaching their clinic.
#[derive(Debug, Default, Deserialize)]
pub struct FactorQuery {
    required: Option<String>,
}

/// The account's two-step sign-in: its state, and the way to turn it on or off.
pub async fn factor_get(
    PageRequest(app, CurrentUser(s), csrf): SignedInPage,
    Query(q): Query<FactorQuery>,
) -> Page {
    let required = q.required.is_some() || is_owner(&app, &s.user.id).await?;
    let mut page = FactorPage::new(&s, csrf, s.has_second_factor, required);
    if s.has_second_factor {
        page.codes_left = app.control.recovery_codes_left(&s.user.id).await?;
    } else if let Some(e) = app.control.pending_totp(&s.user).await? {
        page.setup = Some(setup_of(&e)?);
    }
    if q.required.is_some() && !s.has_second_factor {
        page.notice = Some(
            "Owners sign in with two steps: turn it on to reach your clinic. It takes a minute with an authenticator app on your phone.",
        );
    }
    html(StatusCode::OK, &page)
}

/// Starts enrolment: a fresh secret, shown as a QR code and as text.
pub async fn setup_post(PageRequest(app, CurrentUser(s), csrf): SignedInPage) -> Page {
    require_fresh(&app, &s, "/account/two-factor")?;
    let required = is_owner(&app, &s.user.id).await?;
    let Some(e) = app.control.begin_totp(&s.user).await? else {
        return Ok(Redirect::to("/account/two-factor").into_response());
    };
    let mut page = FactorPage::new(&s, csrf, false, required);
    page.setup = Some(setup_of(&e)?);
    html(StatusCode::OK, &page)
}

/// Finishes enrolment with a first code; shows the recovery codes once.
pub async fn confirm_setup_post(
    PageRequest(app, CurrentUser(s), csrf): SignedInPage,
    client: ClientInfo,
    AppForm(form): AppForm<CodeForm>,
) -> Page {
    let required = is_owner(&app, &s.user.id).await?;
    match app.control.confirm_totp(&s.user, &form.code).await? {
        Some(codes) => {
            app.control.mark_reauthenticated(&s.id, true).await?;
            log_user(&app, "second_factor_added", "ok", &s.user, &client).await;
            notify(&app, &s.user, SecurityEvent::SecondFactorAdded).await;
            let mut page = FactorPage::new(&s, csrf, true, required);
            page.codes_left = codes.len();
            page.codes = codes;
            page.notice = Some("Two-step sign-in is on.");
            html(StatusCode::OK, &page)
        }
        None => {
            log_user(&app, "second_factor_added", "failed", &s.user, &client).await;
            let mut page = FactorPage::new(&s, csrf, false, required);
            match app.control.pending_totp(&s.user).await? {
                Some(e) => page.setup = Some(setup_of(&e)?),
                None => return Ok(Redirect::to("/account/two-factor").into_response()),
            }
            page.error = Some(
                "That code is not right. Check that the app shows Ward and type the six digits it shows now.",
            );
            html(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

/// The removal form's fields: the password and a current code.
#[derive(Debug, Default, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

/// Turns two-step sign-in off, after the password and a code.
pub async fn remove_post(
    PageRequest(app, CurrentUser(s), csrf): SignedInPage,
    client: ClientInfo,
    AppForm(form): AppForm<RemoveForm>,
) -> Page {
    let required = is_owner(&app, &s.user.id).await?;
    let refuse = |csrf: String, error: &'static str, codes_left: usize| {
        let mut page = FactorPage::new(&s, csrf, true, required);
        page.codes_left = codes_left;
        page.error = Some(error);
        html(StatusCode::UNPROCESSABLE_ENTITY, &page)
    };
    if !s.has_second_factor {
        return Ok(Redirect::to("/account/two-factor").into_response());
    }
    if over_limit(&app, "second_factor_removed", &s.user, &client).await? {
        return Ok(too_many(FAILURE_WINDOW.num_seconds().unsigned_abs()));
    }
    let left = app.control.recovery_codes_left(&s.user.id).await?;
    if !app
        .hasher
        .verify(&form.password, Some(&s.user.password_hash))
        .await
    {
        log_user(&app, "second_factor_removed", "failed", &s.user, &client).await;
        return refuse(csrf, "That is not your password.", left);
    }
    let check = check_code(&app, &s.user, &form.code, "second_factor_removed", &client).await?;
    if !check.passed() {
        return refuse(csrf, refusal_text(check), left);
    }
    app.control.remove_second_factor(&s.user.id).await?;
    log_user(&app, "second_factor_removed", "ok", &s.user, &client).await;
    notify(&app, &s.user, SecurityEvent::SecondFactorRemoved).await;
    let mut page = FactorPage::new(&s, csrf, false, required);
    page.notice = Some("Two-step sign-in is off.");
    html(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- confirming again

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    csrf: String,
    user_name: String,
    next: String,
    needs_code: bool,
    error: Option<&'static str>,
}

/// Where to go once confirmed.
#[derive(Debug, Default, Deserialize)]
pub struct ConfirmQuery {
    next: Option<String>,
}

/// "Confirm it's you": the password, and a code when the user has a second factor.
pub async fn confirm_get(
    PageRequest(app, CurrentUser(s), csrf): SignedInPage,
    Query(q): Query<ConfirmQuery>,
) -> Page {
    let next = local_path(q.next.as_deref());
    if is_fresh(&app, &s) {
        return Ok(Redirect::to(&next).into_response());
    }
    html(
        StatusCode::OK,
        &ConfirmPage {
            user_name: s.user.name.clone(),
            csrf,
            next,
            needs_code: s.has_second_factor,
            error: None,
        },
    )
}

/// The confirmation form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfirmForm {
    password: String,
    code: String,
    next: String,
}

/// Checks the password (and code) and goes back to where the user was.
pub async fn confirm_post(
    PageRequest(app, CurrentUser(s), csrf): SignedInPage,
    client: ClientInfo,
    AppForm(form): AppForm<ConfirmForm>,
) -> Page {
    let next = local_path(Some(&form.next));
    let refuse = |csrf: String, next: String, error: &'static str| {
        html(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ConfirmPage {
                user_name: s.user.name.clone(),
                csrf,
                next,
                needs_code: s.has_second_factor,
                error: Some(error),
            },
        )
    };
    match confirm_inline(&app, &s, &form.password, &form.code, &client).await? {
        Ok(()) => {}
        Err(error) => return refuse(csrf, next, error),
    }
    Ok(Redirect::to(&next).into_response())
}

/// Confirms a session inline (the export form): the password and, when the user has a
/// second factor, a code. `Err` carries the message to show.
pub async fn confirm_inline(
    app: &Web,
    s: &Session,
    password: &str,
    code: &str,
    client: &ClientInfo,
) -> Result<Result<(), &'static str>, AppError> {
    if over_limit(app, "reauth", &s.user, client).await? {
        return Ok(Err(
            "Too many wrong attempts. Wait 15 minutes and try again.",
        ));
    }
    if !app
        .hasher
        .verify(password, Some(&s.user.password_hash))
        .await
    {
        log_user(app, "reauth", "failed", &s.user, client).await;
        return Ok(Err("That is not your password."));
    }
    if s.has_second_factor {
        let check = check_code(app, &s.user, code, "reauth", client).await?;
        if !check.passed() {
            return Ok(Err(refusal_text(check)));
        }
    } else {
        log_user(app, "reauth", "ok", &s.user, client).await;
    }
    app.control
        .mark_reauthenticated(&s.id, s.has_second_factor)
        .await?;
    Ok(Ok(()))
}
