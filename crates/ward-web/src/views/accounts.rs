//! Sign-in and out, password reset, the account page (signup and its confirmation are
//! in `signup`).
//!
//! Enumeration: signup, sign-in and reset answer the same way, with the same status and
//! (password hashing included) the same work, whether or not an address has an account.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_control::passwords::check_new_password;
use ward_control::{Purpose, Session, TokenInfo};
use ward_core::Email;

use crate::extract::{
    AppForm, ClientInfo, Csrf, CurrentUser, MaybeUser, PageRequest, SignedInPage,
};
use crate::form::FormErrors;
use crate::limits::{check, too_many};
use crate::session::{clear_session_cookie, session_cookie};
use crate::views::{pages, second_factor};
use crate::{AppError, AppState, Web};
use ward_app::accounts::{self, Attempt, PasswordChange, PasswordStep};

type Page = Result<Response, AppError>;

pub(crate) use crate::views::respond::html;

/// Records in the sign-in log that an attempt of `kind` for the address `email`, by no
/// known account, ended in `outcome`.
pub(crate) async fn log(
    app: &Web,
    kind: &str,
    outcome: &str,
    email: Option<&str>,
    client: &ClientInfo,
) {
    Attempt::new(kind, client.origin())
        .email(email)
        .log(app, outcome)
        .await;
}

/// Starts a session and answers with a redirect to `to`, setting the cookie.
pub(crate) async fn sign_in(
    app: &Web,
    user_id: &str,
    client: &ClientInfo,
    old: Option<&Session>,
    to: &str,
) -> Page {
    sign_in_with(app, user_id, client, old, to, false).await
}

/// As [`sign_in`]; `second_factor` when the sign-in proved it too.
pub(crate) async fn sign_in_with(
    app: &Web,
    user_id: &str,
    client: &ClientInfo,
    old: Option<&Session>,
    to: &str,
    second_factor: bool,
) -> Page {
    let origin = client.origin();
    let token = accounts::start_session(app, user_id, origin, old, second_factor).await?;
    let mut r = Redirect::to(to).into_response();
    let cookie = session_cookie(&app.config, token, app.session_policy.absolute);
    r.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(r)
}

// ---------------------------------------------------------------- home

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage;

/// `/`: signed in, on to the clinic; otherwise a welcome with sign-in and signup.
pub async fn home_get(State(app): State<AppState>, MaybeUser(user): MaybeUser) -> Page {
    match user {
        Some(s) => Ok(Redirect::to(&accounts::landing(&app, &s.user.id).await?).into_response()),
        None => html(StatusCode::OK, &HomePage),
    }
}

/// `?token=` of a one-time link.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    pub(crate) token: String,
}

pub(crate) fn expired_link() -> Page {
    Ok((
        StatusCode::BAD_REQUEST,
        pages::message_with_link(
            "This link has expired or was already used",
            "Links in Ward's emails work once and only for a limited time. Sign in, or ask for a new link.",
            "/login",
            "Go to sign in",
        ),
    )
        .into_response())
}

/// The page a mailed link opens: `page` of the token and its contents while the token
/// is good, [`expired_link`] otherwise. Opening it uses nothing.
pub(crate) async fn link_page<T: Template>(
    app: &AppState,
    purpose: Purpose,
    token: String,
    page: impl FnOnce(String, TokenInfo) -> T,
) -> Page {
    match app.control.peek_token(purpose, &token).await? {
        Some(info) => html(StatusCode::OK, &page(token, info)),
        None => expired_link(),
    }
}

// ---------------------------------------------------------------- sign in and out

/// The sign-in form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    error: Option<&'static str>,
}

/// The sign-in form.
pub async fn login_get(Csrf(csrf): Csrf) -> Page {
    html(
        StatusCode::OK,
        &LoginPage {
            csrf,
            email: String::new(),
            error: None,
        },
    )
}

const BAD_LOGIN: &str =
    "That email and password do not match an account. Check them and try again.";

/// Checks the password (the same work for unknown addresses) and starts a session.
/// Counts a refused sign-in for the operator's metrics. The reason is one of a few fixed
/// words; never the address typed.
fn signin_failed(reason: &'static str) {
    metrics::counter!("ward_signin_failures_total", "reason" => reason).increment(1);
}

pub async fn login_post(
    State(app): State<AppState>,
    Csrf(csrf): Csrf,
    MaybeUser(old): MaybeUser,
    client: ClientInfo,
    AppForm(form): AppForm<LoginForm>,
) -> Page {
    let typed = form.email.trim().to_lowercase();
    if let Err(wait) = check(&app.email_limits.login, &typed) {
        signin_failed("limited");
        log(&app, "login", "limited", Some(&typed), &client).await;
        return Ok(too_many(wait));
    }
    let origin = client.origin();
    match accounts::check_password(&app, &typed, &form.password, origin).await? {
        PasswordStep::Limited => Ok(too_many(15 * 60)),
        PasswordStep::Refused => {
            let page = LoginPage {
                csrf,
                email: typed,
                error: Some(BAD_LOGIN),
            };
            html(StatusCode::UNAUTHORIZED, &page)
        }
        PasswordStep::Unverified(user) => unverified(&app, &user).await,
        PasswordStep::NeedsCode(user) => second_factor::start_pending(&app, &user).await,
        PasswordStep::Done(user) => {
            let to = accounts::landing(&app, &user.id).await?;
            sign_in(&app, &user.id, &client, old.as_ref(), &to).await
        }
    }
}

/// The right password of an address not yet confirmed: a new link (within the mail
/// limit) and the page saying so.
async fn unverified(app: &Web, user: &ward_control::User) -> Page {
    if check(&app.email_limits.mail, &user.email).is_ok() {
        accounts::resend_verification(app, user).await?;
    }
    Ok((
        StatusCode::FORBIDDEN,
        pages::message(
            "Confirm your email address first",
            "We have sent you a new link. Open it to confirm your address; you will be signed in.",
        ),
    )
        .into_response())
}

/// Ends this session and removes the cookie.
pub async fn logout_post(
    State(app): State<AppState>,
    MaybeUser(user): MaybeUser,
    client: ClientInfo,
) -> Page {
    if let Some(s) = user {
        accounts::sign_out(&app, &s, client.origin()).await?;
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie(&app.config));
    Ok(r)
}

// ---------------------------------------------------------------- password reset

/// The forgot-password form's field.
#[derive(Debug, Default, Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    email: String,
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    csrf: String,
    email: String,
    error: Option<&'static str>,
}

/// The forgot-password form.
pub async fn forgot_get(Csrf(csrf): Csrf) -> Page {
    html(
        StatusCode::OK,
        &ForgotPage {
            csrf,
            email: String::new(),
            error: None,
        },
    )
}

/// Always the same answer; mails a link only when the address has an account.
pub async fn forgot_post(
    PageRequest(app, client, csrf): PageRequest<ClientInfo>,
    AppForm(form): AppForm<ForgotForm>,
) -> Page {
    let Ok(email) = Email::parse(&form.email) else {
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ForgotPage {
                csrf,
                email: form.email,
                error: Some("Enter an email address such as name@example.com."),
            },
        );
    };
    if let Err(wait) = check(&app.email_limits.mail, email.as_str()) {
        log(
            &app,
            "reset_request",
            "limited",
            Some(email.as_str()),
            &client,
        )
        .await;
        return Ok(too_many(wait));
    }
    accounts::request_reset(&app, &email, client.origin()).await?;
    Ok(pages::message(
        "Check your email",
        "If an account exists for that address, we have sent it a link to choose a new password. The link works once, for 30 minutes.",
    )
    .into_response())
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    csrf: String,
    token: String,
    error: Option<&'static str>,
}

/// The new-password form, if the link is still good.
pub async fn reset_get(
    State(app): State<AppState>,
    Csrf(csrf): Csrf,
    Query(q): Query<TokenQuery>,
) -> Page {
    link_page(&app, Purpose::ResetPassword, q.token, |token, _| {
        ResetPage {
            csrf,
            token,
            error: None,
        }
    })
    .await
}

/// The reset form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

/// Sets the new password and ends every session of the account.
pub async fn reset_post(
    PageRequest(app, client, csrf): PageRequest<ClientInfo>,
    AppForm(form): AppForm<ResetForm>,
) -> Page {
    if let Err(e) = check_new_password(&form.password) {
        // Check the link before complaining about the password: a dead link is the news.
        if app
            .control
            .peek_token(Purpose::ResetPassword, &form.token)
            .await?
            .is_none()
        {
            return expired_link();
        }
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ResetPage {
                csrf,
                token: form.token,
                error: Some(e),
            },
        );
    }
    let origin = client.origin();
    if !accounts::reset_password(&app, &form.token, &form.password, origin).await? {
        return expired_link();
    }
    let mut r = pages::message_with_link(
        "Your password has been changed",
        "Every session of your account has been signed out. Sign in with the new password.",
        "/login",
        "Sign in",
    )
    .into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie(&app.config));
    Ok(r)
}

// ---------------------------------------------------------------- account

#[derive(Template)]
#[template(path = "clinics.html")]
struct ClinicsPage {
    csrf: String,
    user_name: String,
    memberships: Vec<ward_control::Membership>,
}

/// The clinic chooser for people in several clinics.
pub async fn clinics_get(PageRequest(app, CurrentUser(s), csrf): SignedInPage) -> Page {
    let memberships = app.control.memberships(&s.user.id).await?;
    html(
        StatusCode::OK,
        &ClinicsPage {
            csrf,
            user_name: s.user.name,
            memberships,
        },
    )
}

struct SessionRow {
    id: String,
    device: String,
    ip: String,
    created: String,
    last_seen: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    csrf: String,
    user_name: String,
    email: String,
    sessions: Vec<SessionRow>,
    errors: FormErrors,
    notice: Option<&'static str>,
    two_factor: bool,
}

fn describe_agent(ua: Option<&str>) -> String {
    let Some(ua) = ua else {
        return "Unknown device".to_owned();
    };
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/"]
        .iter()
        .find(|b| ua.contains(*b))
        .map_or("Browser", |b| match *b {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            _ => "Safari",
        });
    let os = ["Android", "iPhone", "iPad", "Windows", "Mac OS", "Linux"]
        .iter()
        .find(|o| ua.contains(*o))
        .copied();
    match os {
        Some(os) => format!("{browser} on {}", if os == "Mac OS" { "macOS" } else { os }),
        None if ua.len() <= 60 => ua.to_owned(),
        None => browser.to_owned(),
    }
}

async fn account_page(
    app: &AppState,
    s: &Session,
    csrf: String,
    errors: FormErrors,
    notice: Option<&'static str>,
    status: StatusCode,
) -> Page {
    let sessions = app
        .control
        .list_sessions(&s.user.id, app.session_policy)
        .await?
        .into_iter()
        .map(|x| SessionRow {
            current: x.id == s.id,
            device: describe_agent(x.user_agent.as_deref()),
            ip: x.ip.unwrap_or_else(|| "unknown".to_owned()),
            created: x.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            last_seen: x.last_seen_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            id: x.id,
        })
        .collect();
    html(
        status,
        &AccountPage {
            csrf,
            user_name: s.user.name.clone(),
            email: s.user.email.clone(),
            sessions,
            errors,
            notice,
            two_factor: s.has_second_factor,
        },
    )
}

/// `?changed=1` after a password change.
#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    changed: Option<String>,
}

/// The account page: password and sessions.
pub async fn account_get(
    PageRequest(app, CurrentUser(s), csrf): SignedInPage,
    Query(q): Query<AccountQuery>,
) -> Page {
    let notice = q
        .changed
        .map(|_| "Your password has been changed, and every other session has been signed out.");
    account_page(&app, &s, csrf, FormErrors::new(), notice, StatusCode::OK).await
}

/// The change-password form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// Changes the password (the current one required), ends every session, and signs this
/// browser in again with a fresh one.
pub async fn password_post(
    PageRequest(app, CurrentUser(s), csrf): SignedInPage,
    client: ClientInfo,
    AppForm(form): AppForm<PasswordForm>,
) -> Page {
    let typed = (form.current_password.as_str(), form.new_password.as_str());
    match accounts::change_password(&app, &s.user, typed, client.origin()).await? {
        PasswordChange::Refused(errors) => {
            let (errors, status) = (FormErrors::from(errors), StatusCode::UNPROCESSABLE_ENTITY);
            account_page(&app, &s, csrf, errors, None, status).await
        }
        PasswordChange::Changed(token) => {
            let mut r = Redirect::to("/account?changed=1").into_response();
            r.headers_mut().append(
                header::SET_COOKIE,
                session_cookie(&app.config, token, app.session_policy.absolute),
            );
            Ok(r)
        }
    }
}

/// The revoke form's field.
#[derive(Debug, Default, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    session: String,
}

/// Ends one of the user's sessions.
pub async fn revoke_post(
    State(app): State<AppState>,
    CurrentUser(s): CurrentUser,
    client: ClientInfo,
    AppForm(form): AppForm<RevokeForm>,
) -> Page {
    let revoked = app
        .control
        .revoke_session(&s.user.id, &form.session)
        .await?;
    let attempt = Attempt::new("session_revoke", client.origin()).by(&s.user);
    attempt
        .log(&app, if revoked { "ok" } else { "not_found" })
        .await;
    if form.session == s.id {
        let mut r = Redirect::to("/login").into_response();
        r.headers_mut()
            .append(header::SET_COOKIE, clear_session_cookie(&app.config));
        return Ok(r);
    }
    Ok(Redirect::to("/account").into_response())
}

/// Ends every session of the user, this one included.
pub async fn revoke_all_post(
    State(app): State<AppState>,
    CurrentUser(s): CurrentUser,
    client: ClientInfo,
) -> Page {
    let n = app.control.revoke_all_sessions(&s.user.id, None).await?;
    let attempt = Attempt::new("session_revoke", client.origin()).by(&s.user);
    attempt.log(&app, &format!("all:{n}")).await;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie(&app.config));
    Ok(r)
}
