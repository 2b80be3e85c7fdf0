//! Signup and the confirmation of its address: nothing is made until the address is
//! confirmed (see `ward_control::signup`), and answers no person sends are refused.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use ward_app::accounts::{self, Confirmed};
use ward_control::passwords::check_new_password;
use ward_control::{Purpose, parse_person_name};
use ward_core::Email;

use crate::extract::{AppForm, ClientInfo, Csrf, MaybeUser, PageRequest};
use crate::form::FormErrors;
use crate::limits::{check, too_many};
use crate::views::accounts::{TokenQuery, expired_link, html, link_page, log, sign_in};
use crate::views::pages;
use crate::{AppError, AppState, Web};

type Page = Result<Response, AppError>;

// ---------------------------------------------------------------- signup

/// The signup form's fields, whose names outside checks rely on.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignupForm {
    clinic_name: String,
    name: String,
    email: String,
    password: String,
    /// The form stamp: when the form was shown (see `ward_control::signup`).
    started: String,
    /// A field people never see or fill; bots that fill every field do.
    website: String,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    csrf: String,
    form: SignupForm,
    errors: FormErrors,
    stamp: String,
    error: Option<&'static str>,
}

/// The signup form.
pub async fn signup_get(State(app): State<AppState>, Csrf(csrf): Csrf) -> Page {
    html(
        StatusCode::OK,
        &SignupPage {
            csrf,
            form: SignupForm::default(),
            errors: FormErrors::new(),
            stamp: app.control.form_stamp(app.clock.now()),
            error: None,
        },
    )
}

/// Refuses answers no person sends: the hidden field filled, no stamp of ours, or
/// sent faster than the form can be read. `Some(reason)` to refuse (a word for the log).
fn looks_automated(app: &Web, form: &SignupForm) -> Option<&'static str> {
    if !form.website.is_empty() {
        return Some("honeypot");
    }
    if app.email_limits.signup_min_fill <= chrono::TimeDelta::zero() {
        // The timing check is turned off (WARD_SIGNUP_MIN_SECONDS=0).
        return None;
    }
    match app.control.form_stamp_age(&form.started) {
        None => Some("no_stamp"),
        Some(age) if age < app.email_limits.signup_min_fill => Some("too_fast"),
        Some(age) if age > ward_control::signup::SIGNUP_TTL => Some("stale_form"),
        Some(_) => None,
    }
}

fn check_email_page() -> Page {
    Ok(pages::message(
        "Check your email",
        "We have sent a link to confirm your address. Open it to finish creating your clinic: nothing is made until then. The link works once and expires in 24 hours.",
    )
    .into_response())
}

impl SignupForm {
    /// The clinic's name, the person's name and address as typed, checked (with the
    /// password's strength), or every field's error.
    fn parse(&self) -> Result<(String, String, Email), FormErrors> {
        let mut errors = FormErrors::new();
        let clinic_name = self.clinic_name.trim().to_owned();
        if clinic_name.is_empty() {
            errors.add("clinic_name", "Enter the clinic's name.");
        } else if clinic_name.chars().count() > 200 || clinic_name.chars().any(char::is_control) {
            errors.add(
                "clinic_name",
                "A clinic name is at most 200 characters, on one line.",
            );
        }
        let name = parse_person_name(&self.name)
            .map_err(|e| errors.add("name", e))
            .ok();
        let email = Email::parse(&self.email)
            .map_err(|_| errors.add("email", "Enter an email address such as name@example.com."))
            .ok();
        if let Err(e) = check_new_password(&self.password) {
            errors.add("password", e);
        }
        match (name, email, errors.is_empty()) {
            (Some(name), Some(email), true) => Ok((clinic_name, name, email)),
            _ => Err(errors),
        }
    }
}

/// The form refused as not sent by a person (`why`, for the log): logged, counted, and
/// shown again with a fresh stamp and the general error.
async fn refuse_automated(
    app: &Web,
    csrf: String,
    client: &ClientInfo,
    form: SignupForm,
    why: &'static str,
) -> Page {
    log(app, "signup", why, None, client).await;
    metrics::counter!("ward_signup_refused_total", "reason" => why).increment(1);
    html(
        StatusCode::UNPROCESSABLE_ENTITY,
        &SignupPage {
            csrf,
            stamp: app.control.form_stamp(app.clock.now()),
            form: SignupForm {
                password: String::new(),
                started: String::new(),
                website: String::new(),
                ..form
            },
            errors: FormErrors::new(),
            error: Some("Please check your details and send the form again."),
        },
    )
}

/// The 429 page when signups from this client's address (as the rate limiter sees
/// it: a forwarded header only from a trusted proxy), then for the address typed, are
/// over their limit; logged.
async fn limited(app: &Web, client: &ClientInfo, email: &Email) -> Option<Response> {
    let address = client.ip.clone().unwrap_or_default();
    let (why, wait) = match check(&app.email_limits.signup_per_address, &address) {
        Err(wait) => ("limited_address", wait),
        Ok(_) => match check(&app.email_limits.signup, email.as_str()) {
            Err(wait) => ("limited", wait),
            Ok(_) => return None,
        },
    };
    log(app, "signup", why, Some(email.as_str()), client).await;
    Some(too_many(wait))
}

/// Keeps the answers and sends the confirmation link; nothing else is made until the
/// address is confirmed.
pub async fn signup_post(
    PageRequest(app, client, csrf): PageRequest<ClientInfo>,
    AppForm(form): AppForm<SignupForm>,
) -> Page {
    if let Some(why) = looks_automated(&app, &form) {
        return refuse_automated(&app, csrf, &client, form, why).await;
    }
    let (clinic_name, name, email) = match form.parse() {
        Ok(v) => v,
        Err(errors) => {
            let page = SignupPage {
                csrf,
                stamp: form.started.clone(),
                form: SignupForm {
                    password: String::new(),
                    ..form
                },
                errors,
                error: None,
            };
            return html(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    if let Some(page) = limited(&app, &client, &email).await {
        return Ok(page);
    }
    let signup = accounts::Signup {
        clinic_name: &clinic_name,
        name: &name,
        email: &email,
        password: &form.password,
    };
    accounts::start_signup(&app, signup, client.origin()).await?;
    check_email_page()
}

// ---------------------------------------------------------------- verification

#[derive(Template)]
#[template(path = "verify_email.html")]
struct VerifyPage {
    csrf: String,
    token: String,
    email: String,
}

/// Shows a confirm button; opening the link changes nothing (mail scanners follow links).
pub async fn verify_email_get(
    State(app): State<AppState>,
    Csrf(csrf): Csrf,
    Query(q): Query<TokenQuery>,
) -> Page {
    link_page(&app, Purpose::VerifyEmail, q.token, |token, info| {
        VerifyPage {
            csrf,
            token,
            email: info.email.unwrap_or_default(),
        }
    })
    .await
}

/// Confirms the address: a signup's account, clinic and database are made now, and
/// the owner is signed in. (Links sent to accounts made before signups waited for
/// confirmation just mark the address confirmed.)
pub async fn verify_email_post(
    State(app): State<AppState>,
    MaybeUser(old): MaybeUser,
    client: ClientInfo,
    AppForm(q): AppForm<TokenQuery>,
) -> Page {
    match accounts::confirm_email(&app, &q.token, client.origin()).await? {
        Confirmed::Created { user_id, to } | Confirmed::Confirmed { user_id, to } => {
            sign_in(&app, &user_id, &client, old.as_ref(), &to).await
        }
        Confirmed::AddressTaken => Ok((
            StatusCode::CONFLICT,
            pages::message_with_link(
                "This address already has an account",
                "An account was made with this address after you signed up, so no new clinic was created. Sign in with it, or reset its password if you do not know it.",
                "/login",
                "Go to sign in",
            ),
        )
            .into_response()),
        Confirmed::Expired => expired_link(),
    }
}
