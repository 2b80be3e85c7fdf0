//! The owner's settings page (`/c/{slug}/settings`): name, letterhead, timezone,
//! currency. Closing the clinic has its own section at the bottom.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_clinic::ClinicError;
use ward_clinic::audit::{self, Action, Diff};
use ward_clinic::settings::{self, CURRENCIES, ClinicSettings, Currency};
use ward_core::Permission;

use crate::extract::{AppForm, ClinicAccess, Csrf};
use crate::views::frame::ClinicFrame;
use crate::views::staff::TxError;
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// The settings form (also what the page shows).
#[derive(Debug, Default, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    letterhead: String,
}

/// Errors next to the fields.
#[derive(Debug, Default)]
struct Errors {
    name: Option<String>,
    address: Option<String>,
    phone: Option<String>,
    timezone: Option<String>,
    currency: Option<String>,
    letterhead: Option<String>,
}

impl Errors {
    fn any(&self) -> bool {
        self.name.is_some()
            || self.address.is_some()
            || self.phone.is_some()
            || self.timezone.is_some()
            || self.currency.is_some()
            || self.letterhead.is_some()
    }
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    frame: ClinicFrame,
    form: SettingsForm,
    errors: Errors,
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
    errors: Errors,
    saved: bool,
) -> Page {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let page = SettingsPage {
        frame: ClinicFrame::new(access, clinic.name, csrf, "settings"),
        form,
        errors,
        saved,
        timezones: settings::timezone_names().collect(),
        currencies: CURRENCIES,
        files_usage: crate::views::attachments::usage_line(app, access).await?,
    };
    Ok((status, Html(page.render()?)).into_response())
}

/// The settings form, filled in.
pub async fn settings_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
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
        Errors::default(),
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

/// Saves the settings; every change is audited with a diff.
pub async fn settings_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    AppForm(form): AppForm<SettingsForm>,
) -> Page {
    access.require(Permission::ManageSettings)?;
    let mut errors = Errors::default();
    let name = form.name.trim().to_owned();
    if name.is_empty() {
        errors.name = Some("Enter the clinic's name.".to_owned());
    } else if let Err(e) = one_line(&name, 200) {
        errors.name = Some(e);
    }
    let address = form
        .address
        .trim()
        .to_owned()
        .chars()
        .filter(|c| *c != '\r')
        .collect::<String>();
    if address.chars().count() > 300 {
        errors.address = Some("At most 300 characters.".to_owned());
    }
    let phone = one_line(&form.phone, 60)
        .map_err(|e| errors.phone = Some(e))
        .ok();
    let letterhead = one_line(&form.letterhead, 300)
        .map_err(|e| errors.letterhead = Some(e))
        .ok();
    let timezone = settings::parse_timezone(&form.timezone)
        .map_err(|_| {
            errors.timezone = Some("Choose a timezone from the list, e.g. Asia/Kolkata.".into())
        })
        .ok();
    let currency = Currency::parse(&form.currency);
    if currency.is_none() {
        errors.currency = Some("Choose a currency from the list.".to_owned());
    }
    let (false, Some(phone), Some(letterhead), Some(timezone), Some(currency)) =
        (errors.any(), phone, letterhead, timezone, currency)
    else {
        return render(
            &app,
            &access,
            csrf,
            StatusCode::UNPROCESSABLE_ENTITY,
            form,
            errors,
            false,
        )
        .await;
    };
    let new = ClinicSettings {
        address,
        phone,
        timezone,
        currency,
        letterhead,
    };
    let now = app.clock.now();

    // The name lives in the control plane; its change is recorded like the others.
    let (control, clinic_id, actor) = (
        app.control.clone(),
        access.clinic_id,
        format!("user:{}", access.session.user.id),
    );
    let entry = access.audit_entry(now, Action::Update);
    let new_name = name.clone();
    access
        .tenant
        .with_async(|conn| async move {
            audit::in_transaction_async(&conn, |tx| async move {
                let old = control.rename_clinic(clinic_id, &new_name, &actor).await?;
                if old != new_name {
                    let entry = entry.entity("settings", "clinic").diff(Diff::new().field(
                        "name",
                        old,
                        new_name.clone(),
                    ));
                    audit::record(&tx, &entry)?;
                }
                Ok::<_, TxError>(())
            })
            .await
        })
        .await?;

    let actor = access.actor();
    let ip = access.ip.clone();
    let saved = access
        .tenant
        .with(|conn| settings::save(&conn, &new, actor, ip.as_deref(), now))
        .await;
    match saved {
        Ok(()) => Ok(Redirect::to(&format!("/c/{}/settings?saved=1", access.slug)).into_response()),
        Err(ClinicError::Invalid { field, message }) => {
            match field {
                "address" => errors.address = Some(message),
                "phone" => errors.phone = Some(message),
                "timezone" => errors.timezone = Some(message),
                "currency" => errors.currency = Some(message),
                _ => errors.letterhead = Some(message),
            }
            render(
                &app,
                &access,
                csrf,
                StatusCode::UNPROCESSABLE_ENTITY,
                form,
                errors,
                false,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
