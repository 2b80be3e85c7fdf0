//! The owner's settings page (`/c/{slug}/settings`): name, letterhead, timezone,
//! currency. Closing the clinic has its own section at the bottom.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_app::clinic;
use ward_clinic::ClinicError;
use ward_clinic::audit::Action;
use ward_clinic::settings::{self, CURRENCIES, ClinicSettings, Currency};
use ward_core::Permission;

use crate::extract::{AppForm, ClinicAccess, ClinicPage, PageRequest};
use crate::form::FormErrors;
use crate::views::frame::ClinicFrame;
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// The settings form (also what the page shows).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SettingsForm {
    name: String,
    address: String,
    phone: String,
    timezone: String,
    currency: String,
    letterhead: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    frame: ClinicFrame,
    form: SettingsForm,
    errors: FormErrors,
    saved: bool,
    timezones: Vec<&'static str>,
    currencies: &'static [Currency],
    /// The clinic's use of its attachment quota.
    files_usage: String,
}

/// `?saved=1` after saving.
#[derive(Debug, Default, Deserialize)]
pub struct SavedQuery {
    #[serde(default)]
    saved: Option<String>,
}

async fn render(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    status: StatusCode,
    form: SettingsForm,
    errors: FormErrors,
    saved: bool,
) -> Page {
    let page = SettingsPage {
        frame: ClinicFrame::load(app, access, csrf, "settings").await?,
        form,
        errors,
        saved,
        timezones: settings::timezone_names().collect(),
        currencies: CURRENCIES,
        files_usage: crate::views::attachments::usage_line(app, access).await?,
    };
    crate::views::respond::html(status, &page)
}

/// The settings form, filled in.
pub async fn settings_get(
    PageRequest(app, access, csrf): ClinicPage,
    Query(q): Query<SavedQuery>,
) -> Page {
    access.require(Permission::ManageSettings)?;
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let s = access.tenant.with(|conn| settings::load(&conn)).await?;
    let form = SettingsForm {
        name: clinic.name,
        address: s.address,
        phone: s.phone,
        timezone: s.timezone.name().to_owned(),
        currency: s.currency.code.to_owned(),
        letterhead: s.letterhead,
    };
    render(
        &app,
        &access,
        csrf,
        StatusCode::OK,
        form,
        FormErrors::new(),
        q.saved.is_some(),
    )
    .await
}

fn one_line(value: &str, max: usize) -> Result<String, String> {
    let v = value.trim();
    if v.chars().count() > max {
        return Err(format!("At most {max} characters."));
    }
    if v.chars().any(char::is_control) {
        return Err("Keep this on one line.".to_owned());
    }
    Ok(v.to_owned())
}

/// `r`'s value, or `None` with its error added to `field`.
fn kept<T>(errors: &mut FormErrors, field: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| errors.add(field, e)).ok()
}

impl SettingsForm {
    /// The clinic's name and settings as typed, checked, or every field's error.
    fn parse(&self) -> Result<(String, ClinicSettings), FormErrors> {
        let mut errors = FormErrors::new();
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            errors.add("name", "Enter the clinic's name.".to_owned());
        } else if let Err(e) = one_line(&name, 200) {
            errors.add("name", e);
        }
        let address = self.address.trim().chars().filter(|c| *c != '\r');
        let address = address.collect::<String>();
        if address.chars().count() > 300 {
            errors.add("address", "At most 300 characters.".to_owned());
        }
        let phone = kept(&mut errors, "phone", one_line(&self.phone, 60));
        let letterhead = kept(&mut errors, "letterhead", one_line(&self.letterhead, 300));
        let timezone = settings::parse_timezone(&self.timezone)
            .map_err(|_| "Choose a timezone from the list, e.g. Asia/Kolkata.".to_owned());
        let timezone = kept(&mut errors, "timezone", timezone);
        let currency = Currency::parse(&self.currency);
        if currency.is_none() {
            errors.add("currency", "Choose a currency from the list.".to_owned());
        }
        match (errors.is_empty(), phone, letterhead, timezone, currency) {
            (true, Some(phone), Some(letterhead), Some(timezone), Some(currency)) => Ok((
                name,
                ClinicSettings {
                    address,
                    phone,
                    timezone,
                    currency,
                    letterhead,
                },
            )),
            _ => Err(errors),
        }
    }
}

/// Saves the settings; every change is audited with a diff.
pub async fn settings_post(
    PageRequest(app, access, csrf): ClinicPage,
    AppForm(form): AppForm<SettingsForm>,
) -> Page {
    access.require(Permission::ManageSettings)?;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let (name, new) = match form.parse() {
        Ok(v) => v,
        Err(errors) => {
            return render(&app, &access, csrf, unprocessable, form, errors, false).await;
        }
    };
    // The name lives in the control plane; its change is recorded like the others.
    let entry = access.audit_entry(app.clock.now(), Action::Update);
    let (me, tenant) = (&access.session.user.id, &access.tenant);
    let saved = clinic::save_settings(&app, tenant, access.clinic_id, me, (&name, &new), entry);
    match saved.await {
        Ok(()) => Ok(Redirect::to(&format!("/c/{}/settings?saved=1", access.slug)).into_response()),
        Err(ward_app::Error::Clinic(ClinicError::Invalid { field, message })) => {
            // A field the form does not show is reported beside the letterhead.
            let shown = ["address", "phone", "timezone", "currency"].contains(&field);
            let field = if shown { field } else { "letterhead" };
            let errors = FormErrors::one(field, message);
            render(&app, &access, csrf, unprocessable, form, errors, false).await
        }
        Err(e) => Err(e.into()),
    }
}
