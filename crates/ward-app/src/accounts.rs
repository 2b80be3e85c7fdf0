//! People's accounts: signing up and confirming the address, signing in (the password
//! step), sessions, and password resets; and the sign-in log they all write.
//!
//! Enumeration: signup, sign-in and reset do the same work (password hashing included)
//! whether or not an address has an account; the pages answer the same way.

use chrono::TimeDelta;
use ward_clinic::audit::{Action, Actor, Entry};
use ward_control::passwords::check_new_password;
use ward_control::signup::SignupOutcome;
use ward_control::{AuthEvent, Purpose, Session, User};
use ward_core::Email;
use ward_mail::Message;

use crate::{App, Error};

/// Verification links last two days; reset links half an hour.
pub const VERIFY_TTL: TimeDelta = TimeDelta::hours(48);
/// How long a password-reset link works.
pub const RESET_TTL: TimeDelta = TimeDelta::minutes(30);
/// Failed sign-ins processed per address per hour; past it, back off (not a lock-out).
pub const MAX_FAILED_LOGINS_PER_HOUR: u64 = 100;

/// Where a request came from, for the sign-in log.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The client's address.
    pub ip: Option<String>,
    /// Its user agent, truncated.
    pub user_agent: Option<String>,
}

/// One attempt for the sign-in log: what was tried, by which account (when one is
/// known), for which address, and from where. Each way it ends is written with
/// [`Attempt::log`].
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// What was tried: `login`, `signup`, `reset_request`, ...
    pub kind: &'a str,
    /// The account, when one is known.
    pub user: Option<&'a str>,
    /// The address typed, or the account's.
    pub email: Option<&'a str>,
    /// Where the request came from.
    pub origin: &'a Origin,
}

impl<'a> Attempt<'a> {
    /// An attempt of `kind` from `origin`, by no known account, for no address.
    pub fn new(kind: &'a str, origin: &'a Origin) -> Self {
        Self {
            kind,
            user: None,
            email: None,
            origin,
        }
    }

    /// The same attempt, by the account `user_id` (or none).
    #[must_use]
    pub fn user(self, user_id: Option<&'a str>) -> Self {
        Self {
            user: user_id,
            ..self
        }
    }

    /// The same attempt, for the address `email` (or none).
    #[must_use]
    pub fn email(self, email: Option<&'a str>) -> Self {
        Self { email, ..self }
    }

    /// The same attempt, by `user` with their address.
    #[must_use]
    pub fn by(self, user: &'a User) -> Self {
        self.user(Some(&user.id)).email(Some(&user.email))
    }

    /// Records that the attempt ended in `outcome`.
    pub async fn log(self, app: &App, outcome: &str) {
        self.log_detail(app, outcome, None).await;
    }

    /// Records that the attempt ended in `outcome`, with `detail`; a failure is
    /// logged, not returned. The address typed is kept without control characters and
    /// at most 254 characters long.
    pub async fn log_detail(self, app: &App, outcome: &str, detail: Option<String>) {
        let event = AuthEvent {
            kind: self.kind.to_owned(),
            user_id: self.user.map(str::to_owned),
            email: self
                .email
                .map(|e| e.chars().filter(|c| !c.is_control()).take(254).collect()),
            ip: self.origin.ip.clone(),
            user_agent: self.origin.user_agent.clone(),
            outcome: outcome.to_owned(),
            detail,
        };
        if let Err(e) = app.control.record_auth_event(event).await {
            tracing::error!(error = %e, kind = self.kind, "could not record an auth event");
        }
    }
}

/// A one-time link sent to the address was used: the address is the user's, so it is
/// marked verified, and the auth log records `kind` as ok.
async fn address_proved(
    app: &App,
    user_id: &str,
    email: Option<&str>,
    kind: &str,
    origin: &Origin,
) -> Result<(), Error> {
    app.control.mark_email_verified(user_id).await?;
    let attempt = Attempt::new(kind, origin).user(Some(user_id));
    attempt.email(email).log(app, "ok").await;
    Ok(())
}

/// Issues a one-time token of `purpose` for the account `user_id`, valid for `ttl`;
/// `email` is the address a link with it is mailed to, if one is. Returns the secret.
pub async fn user_token(
    app: &App,
    purpose: Purpose,
    user_id: &str,
    email: Option<&str>,
    ttl: TimeDelta,
) -> Result<String, Error> {
    let control = &app.control;
    let token = control
        .issue_token(purpose, Some(user_id), None, email, None, ttl)
        .await?;
    Ok(token)
}

/// Queues `message` to `to`; a failure is logged (the page says the same either way).
pub async fn send(app: &App, to: &Email, name: &str, message: Message) {
    if let Err(e) = app.mailer.send(to, name, message).await {
        tracing::error!(error = %e, "could not queue mail");
    }
}

/// A one-time link to `path` of this Ward.
pub fn link(app: &App, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", app.base_url())
}

// ---------------------------------------------------------------- signup

/// A signup's answers, already checked.
pub struct Signup<'a> {
    /// The clinic's name.
    pub clinic_name: &'a str,
    /// The owner's name.
    pub name: &'a str,
    /// The owner's address.
    pub email: &'a Email,
    /// The password they chose.
    pub password: &'a str,
}

/// Keeps the answers and mails the confirmation link; nothing else is made until the
/// address is confirmed ([`confirm_email`]). An address that has an account gets a
/// mail saying so (with a reset link) instead, after the same work.
pub async fn start_signup(app: &App, signup: Signup<'_>, origin: &Origin) -> Result<(), Error> {
    let email = signup.email;
    let attempt = Attempt::new("signup", origin).email(Some(email.as_str()));
    // Hash first, whether or not the address is taken: both paths cost the same.
    let hash = app.hasher.hash(signup.password).await?;
    if let Some(existing) = app.control.user_by_email(email).await? {
        let message = Message::SignupAttempt {
            name: existing.name.clone(),
            reset_link: format!("{}/password/forgot", app.base_url()),
        };
        send(app, email, &existing.name, message).await;
        let user = Some(existing.id.as_str());
        attempt.user(user).log(app, "existing_email").await;
        return Ok(());
    }
    let token = app
        .control
        .start_signup(email, signup.name, signup.clinic_name, &hash)
        .await?;
    let message = Message::VerifyEmail {
        name: signup.name.to_owned(),
        link: link(app, "/verify-email", &token),
    };
    send(app, email, signup.name, message).await;
    attempt.log(app, "ok").await;
    Ok(())
}

/// What following a confirmation link did.
pub enum Confirmed {
    /// A signup's account, clinic and database were made; sign the owner in and open
    /// the clinic at `to`.
    Created {
        /// The new owner.
        user_id: String,
        /// The clinic's home page.
        to: String,
    },
    /// An account was made with the address after the signup; nothing was created.
    AddressTaken,
    /// An existing account's address is confirmed; sign it in and go `to`.
    Confirmed {
        /// The account.
        user_id: String,
        /// Where to go: the clinic the link was for, or the person's landing page.
        to: String,
    },
    /// The link was used, expired or never issued.
    Expired,
}

/// Confirms the address of the link `token`: a signup's account, clinic and database
/// are made now (all or nothing, `ward_control::signup`). Links sent to accounts made
/// before signups waited for confirmation just mark the address confirmed.
pub async fn confirm_email(app: &App, token: &str, origin: &Origin) -> Result<Confirmed, Error> {
    let attempt = Attempt::new("verify_email", origin);
    match app.control.finish_signup(token, &app.tenants).await? {
        SignupOutcome::Created { user_id, clinic } => {
            let user = Some(user_id.as_str());
            attempt.user(user).log(app, "ok").await;
            let signup = Attempt::new("signup", origin).user(user);
            signup.log(app, "clinic_created").await;
            let to = format!("/c/{}/", clinic.slug);
            return Ok(Confirmed::Created { user_id, to });
        }
        SignupOutcome::AddressTaken => {
            attempt.log(app, "existing_email").await;
            return Ok(Confirmed::AddressTaken);
        }
        SignupOutcome::NoSuchSignup => {}
    }
    let Some(info) = app
        .control
        .consume_token(Purpose::VerifyEmail, token)
        .await?
    else {
        attempt.log(app, "invalid_token").await;
        return Ok(Confirmed::Expired);
    };
    let Some(user_id) = info.user_id else {
        return Ok(Confirmed::Expired);
    };
    address_proved(app, &user_id, info.email.as_deref(), "verify_email", origin).await?;
    let to = match info.clinic_id {
        Some(id) => format!("/c/{}/", app.control.clinic_by_id(id).await?.slug),
        None => landing(app, &user_id).await?,
    };
    Ok(Confirmed::Confirmed { user_id, to })
}

// ---------------------------------------------------------------- sign in

/// The password step of a sign-in.
pub enum PasswordStep {
    /// Too many failed sign-ins for this address in the last hour.
    Limited,
    /// No such account, a wrong password, or a disabled account: the same answer.
    Refused,
    /// The password is right but the address is not confirmed yet.
    Unverified(User),
    /// The password is right; the account has a second factor to ask for.
    NeedsCode(User),
    /// Signed in: start a session.
    Done(User),
}

/// Counts a refused sign-in for the operator's metrics. The reason is one of a few
/// fixed words; never the address typed.
fn refused(reason: &'static str) {
    metrics::counter!("ward_signin_failures_total", "reason" => reason).increment(1);
}

/// Checks `password` for the address `typed` (lower-cased), with the same work for
/// unknown addresses, and logs the outcome. A password hashed under the pepper before
/// a rotation is hashed again now that it is known.
pub async fn check_password(
    app: &App,
    typed: &str,
    password: &str,
    origin: &Origin,
) -> Result<PasswordStep, Error> {
    let attempt = Attempt::new("login", origin).email(Some(typed));
    let since = app.clock.now() - TimeDelta::hours(1);
    if app.control.failed_logins_since(None, typed, since).await? >= MAX_FAILED_LOGINS_PER_HOUR {
        refused("limited");
        attempt.log(app, "limited").await;
        return Ok(PasswordStep::Limited);
    }
    let user = match Email::parse(typed) {
        Ok(email) => app.control.user_by_email(&email).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.as_str());
    let ok = app.hasher.verify(password, hash).await;
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        other => {
            refused("credentials");
            let id = other.as_ref().map(|u| u.id.as_str());
            attempt.user(id).log(app, "failed").await;
            return Ok(PasswordStep::Refused);
        }
    };
    if app.hasher.needs_rehash(&user.password_hash) {
        let rehashed = match app.hasher.hash(password).await {
            Ok(h) => {
                app.control
                    .rehash_password(&user.id, &user.password_hash, &h)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = rehashed {
            tracing::warn!(error = %e, "could not re-hash a password under the current pepper");
        }
    }
    let attempt = attempt.user(Some(&user.id));
    if !user.email_verified {
        refused("unverified");
        attempt.log(app, "unverified").await;
        return Ok(PasswordStep::Unverified(user));
    }
    if app.control.second_factor_enrolled(&user.id).await? {
        // The password was right; the session starts only after the code.
        attempt.log(app, "password_ok").await;
        return Ok(PasswordStep::NeedsCode(user));
    }
    attempt.log(app, "ok").await;
    Ok(PasswordStep::Done(user))
}

/// Mails `user` a new link to confirm their address.
pub async fn resend_verification(app: &App, user: &User) -> Result<(), Error> {
    let Ok(email) = Email::parse(&user.email) else {
        return Ok(());
    };
    let email_to = Some(user.email.as_str());
    let token = user_token(app, Purpose::VerifyEmail, &user.id, email_to, VERIFY_TTL).await?;
    let message = Message::VerifyEmail {
        name: user.name.clone(),
        link: link(app, "/verify-email", &token),
    };
    send(app, &email, &user.name, message).await;
    Ok(())
}

/// Starts a session for `user_id` (`second_factor`: the sign-in proved it too),
/// ending `old` first (a token planted before sign-in is worthless after), and writes
/// the sign-in into the log of each of their clinics. Returns the session's token.
pub async fn start_session(
    app: &App,
    user_id: &str,
    origin: &Origin,
    old: Option<&Session>,
    second_factor: bool,
) -> Result<String, Error> {
    if let Some(old) = old {
        app.control.revoke_session(&old.user.id, &old.id).await?;
    }
    let (ip, agent) = (origin.ip.clone(), origin.user_agent.clone());
    let token = app
        .control
        .create_session_with(user_id, ip, agent, second_factor)
        .await?;
    note_in_clinics(app, user_id, origin, Action::Login).await;
    Ok(token)
}

/// Ends `session` and writes the sign-out into the logs.
pub async fn sign_out(app: &App, session: &Session, origin: &Origin) -> Result<(), Error> {
    let user = &session.user;
    app.control.revoke_session(&user.id, &session.id).await?;
    note_in_clinics(app, &user.id, origin, Action::Logout).await;
    Attempt::new("logout", origin).by(user).log(app, "ok").await;
    Ok(())
}

/// Writes a sign-in or sign-out (`action`) of `user_id` into the log of every clinic
/// they are a member of, with their role there and the client's address, so a
/// clinic's own log says who was signed in when. Queued through the read auditor:
/// a clinic that cannot be written to (damaged, being restored) never stops the
/// sign-in, and the failure is logged without the person's details.
pub async fn note_in_clinics(app: &App, user_id: &str, origin: &Origin, action: Action) {
    let (user, memberships) = match (
        app.control.user_by_id(user_id).await,
        app.control.memberships(user_id).await,
    ) {
        (Ok(Some(user)), Ok(m)) => (user, m),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "could not note the sign-in in the clinics' logs");
            return;
        }
        (Ok(None), _) => return,
    };
    let now = app.clock.now();
    for m in memberships {
        let actor = Actor::User {
            id: user.id.clone(),
            name: user.name.clone(),
            role: m.role,
        };
        let mut entry = Entry::new(now, actor, action).entity("staff", &user.id);
        if let Some(ip) = &origin.ip {
            entry = entry.ip(ip);
        }
        if let Err(e) = app.audit.note_view(m.clinic.id, entry) {
            tracing::warn!(error = %e, clinic = %m.clinic.id, "could not note the sign-in");
        }
    }
}

/// Where a user lands after signing in: their clinic, or the chooser.
pub async fn landing(app: &App, user_id: &str) -> Result<String, Error> {
    let memberships = app.control.memberships(user_id).await?;
    Ok(match memberships.as_slice() {
        [only] => format!("/c/{}/", only.clinic.slug),
        _ => "/clinics".to_owned(),
    })
}

// ---------------------------------------------------------------- password reset

/// Mails a reset link when `email` has an (enabled) account, and logs either way.
pub async fn request_reset(app: &App, email: &Email, origin: &Origin) -> Result<(), Error> {
    let typed = Some(email.as_str());
    let attempt = Attempt::new("reset_request", origin).email(typed);
    let Some(user) = app
        .control
        .user_by_email(email)
        .await?
        .filter(|u| !u.disabled)
    else {
        attempt.log(app, "no_account").await;
        return Ok(());
    };
    let token = user_token(app, Purpose::ResetPassword, &user.id, typed, RESET_TTL).await?;
    let message = Message::ResetPassword {
        name: user.name.clone(),
        link: link(app, "/password/reset", &token),
    };
    send(app, email, &user.name, message).await;
    attempt.user(Some(&user.id)).log(app, "sent").await;
    Ok(())
}

/// What became of a change of password.
#[derive(Debug)]
pub enum PasswordChange {
    /// Refused: the messages by form field (`current_password`, `new_password`).
    Refused(Vec<(&'static str, String)>),
    /// Changed, every session of the account and every reset link ended: the token of
    /// the new session for this browser (a password proves the password only, so
    /// sensitive actions ask for a code again).
    Changed(String),
}

/// Changes `user`'s password to `new` if `current` is theirs and `new` is strong
/// enough; a wrong current password is written to the sign-in log, and so is the
/// change.
pub async fn change_password(
    app: &App,
    user: &User,
    (current, new): (&str, &str),
    origin: &Origin,
) -> Result<PasswordChange, Error> {
    let attempt = Attempt::new("password_change", origin).by(user);
    let mut refused = Vec::new();
    if !app.hasher.verify(current, Some(&user.password_hash)).await {
        refused.push((
            "current_password",
            "That is not your current password.".to_owned(),
        ));
        attempt.log(app, "failed").await;
    }
    if let Err(e) = check_new_password(new) {
        refused.push(("new_password", e.to_owned()));
    }
    if !refused.is_empty() {
        return Ok(PasswordChange::Refused(refused));
    }
    let hash = app.hasher.hash(new).await?;
    app.control.set_password(&user.id, &hash).await?;
    app.control
        .revoke_tokens(&user.id, Purpose::ResetPassword)
        .await?;
    attempt.log(app, "ok").await;
    let (ip, agent) = (origin.ip.clone(), origin.user_agent.clone());
    let token = app
        .control
        .create_session_with(&user.id, ip, agent, false)
        .await?;
    Ok(PasswordChange::Changed(token))
}

/// Uses the reset link `token`: sets the new password (already checked), ends every
/// session of the account and every other reset link, and marks the address
/// confirmed (following the link proved it). `false` when the link is no good.
pub async fn reset_password(
    app: &App,
    token: &str,
    password: &str,
    origin: &Origin,
) -> Result<bool, Error> {
    let hash = app.hasher.hash(password).await?;
    let Some(info) = app
        .control
        .consume_token(Purpose::ResetPassword, token)
        .await?
    else {
        return Ok(false);
    };
    let Some(user_id) = info.user_id else {
        return Ok(false);
    };
    app.control.set_password(&user_id, &hash).await?;
    app.control
        .revoke_tokens(&user_id, Purpose::ResetPassword)
        .await?;
    address_proved(
        app,
        &user_id,
        info.email.as_deref(),
        "reset_complete",
        origin,
    )
    .await?;
    Ok(true)
}
