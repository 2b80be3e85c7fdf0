use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use ward_app::App;

use crate::client_ip::TrustedProxy;
use crate::limits::{EmailLimits, IpLimit};
use crate::views::{
    accounts, appointments, assets, attachments, audit, clinic, export, health, lifecycle, merge,
    patients, payments, rights, second_factor, settings, signup, staff, support, visits,
};
use crate::{headers, limits, session, views};

/// The web layer's settings: the app's (`ward_app::Settings`).
pub use ward_app::Settings as WebConfig;

/// What the pages need besides the app: who the client is, the per-address and
/// per-email limits of the account forms, and where attachments' bytes go.
pub struct WebOptions {
    /// Which proxy header names the client.
    pub trusted_proxy: TrustedProxy,
    /// Per-address limits on the account forms.
    pub ip_limit: IpLimit,
    /// Per-email limits on the account forms.
    pub email_limits: EmailLimits,
    /// Where attachments' encrypted bytes go (`WARD_ATTACHMENT_URL`).
    pub attachments: crate::attachments::AttachmentStore,
}

/// Everything a request handler can reach: the app (through `Deref`, so
/// `web.control` is the app's control plane) and the web layer's own parts.
pub struct Web {
    /// The app the pages call.
    pub app: Arc<App>,
    /// Which proxy header names the client.
    pub trusted_proxy: TrustedProxy,
    /// Per-address limits on the account forms.
    pub ip_limit: IpLimit,
    /// Per-email limits on the account forms.
    pub email_limits: EmailLimits,
    /// Where attachments' encrypted bytes go (`WARD_ATTACHMENT_URL`).
    pub attachments: crate::attachments::AttachmentStore,
}

impl Web {
    /// The web layer over `app`.
    pub fn new(app: Arc<App>, options: WebOptions) -> Arc<Self> {
        Arc::new(Self {
            app,
            trusted_proxy: options.trusted_proxy,
            ip_limit: options.ip_limit,
            email_limits: options.email_limits,
            attachments: options.attachments,
        })
    }
}

impl std::ops::Deref for Web {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

/// The state handed to handlers.
#[derive(Clone)]
pub struct AppState(pub Arc<Web>);

impl std::ops::Deref for AppState {
    type Target = Web;
    fn deref(&self) -> &Web {
        &self.0
    }
}

/// The whole application as one router.
pub fn router(web: Arc<Web>) -> Router {
    let state = AppState(web);
    let https = state.config.is_https();
    let limited = limits::per_ip(
        Router::new()
            .route("/signup", get(signup::signup_get).post(signup::signup_post))
            .route(
                "/verify-email",
                get(signup::verify_email_get).post(signup::verify_email_post),
            )
            .route(
                "/login",
                get(accounts::login_get).post(accounts::login_post),
            )
            .route(
                "/password/forgot",
                get(accounts::forgot_get).post(accounts::forgot_post),
            )
            .route(
                "/password/reset",
                get(accounts::reset_get).post(accounts::reset_post),
            )
            .route(
                "/login/code",
                get(second_factor::code_get).post(second_factor::code_post),
            ),
        state.trusted_proxy,
        state.ip_limit,
    );
    let pages = Router::new()
        .route("/", get(accounts::home_get))
        .route("/logout", post(accounts::logout_post))
        .route("/account", get(accounts::account_get))
        .route("/account/password", post(accounts::password_post))
        .route("/account/two-factor", get(second_factor::factor_get))
        .route("/account/two-factor/setup", post(second_factor::setup_post))
        .route(
            "/account/two-factor/confirm",
            post(second_factor::confirm_setup_post),
        )
        .route(
            "/account/two-factor/remove",
            post(second_factor::remove_post),
        )
        .route(
            "/account/confirm",
            get(second_factor::confirm_get).post(second_factor::confirm_post),
        )
        .route("/account/sessions/revoke", post(accounts::revoke_post))
        .route(
            "/account/sessions/revoke-all",
            post(accounts::revoke_all_post),
        )
        .route("/clinics", get(accounts::clinics_get))
        .route("/c/{slug}/", get(clinic::home_get))
        // The owner's pages: staff, settings, the audit log; accepting an invitation.
        .route("/c/{slug}/staff", get(staff::staff_get))
        .route("/c/{slug}/staff/invite", post(staff::invite_post))
        .route("/c/{slug}/staff/{user_id}/role", post(staff::role_post))
        .route(
            "/c/{slug}/staff/{user_id}/remove",
            get(staff::remove_get).post(staff::remove_post),
        )
        .route(
            "/c/{slug}/staff/invites/{id}/withdraw",
            post(staff::withdraw_post),
        )
        .route(
            "/c/{slug}/settings",
            get(settings::settings_get).post(settings::settings_post),
        )
        .route("/c/{slug}/audit", get(audit::audit_get))
        // Support access: the owners' answers, the operator's one-time link.
        .route("/c/{slug}/support", get(support::support_get))
        .route(
            "/c/{slug}/support/{id}/approve",
            post(support::approve_post),
        )
        .route("/c/{slug}/support/{id}/refuse", post(support::refuse_post))
        .route("/c/{slug}/support/{id}/end", post(support::end_post))
        .route("/support/start", post(support::start_post))
        .route("/support/end", post(support::end_self_post))
        .route("/support/{token}", get(support::start_get))
        .route(
            "/invite",
            get(staff::invite_get).post(staff::invite_post_accept),
        )
        // Patients and visits.
        .route("/c/{slug}/patients", get(patients::list_get))
        .route("/c/{slug}/patients/search", get(patients::search_get))
        .route(
            "/c/{slug}/patients/new",
            get(patients::new_get).post(patients::new_post),
        )
        .route("/c/{slug}/patients/{id}", get(patients::show_get))
        .route(
            "/c/{slug}/patients/{id}/history",
            get(patients::history_get),
        )
        .route(
            "/c/{slug}/patients/{id}/access",
            get(audit::patient_access_get),
        )
        .route("/c/{slug}/patients/{id}/record", get(rights::record_get))
        .route(
            "/c/{slug}/patients/{id}/merge",
            get(merge::merge_get).post(merge::merge_post),
        )
        .route(
            "/c/{slug}/patients/{id}/merges/{merge}/undo",
            post(merge::undo_post),
        )
        .route(
            "/c/{slug}/patients/{id}/record.json",
            get(rights::record_json_get),
        )
        .route(
            "/c/{slug}/patients/{id}/legal-hold",
            post(rights::legal_hold_post),
        )
        .route(
            "/c/{slug}/patients/{id}/restriction",
            post(rights::restriction_post),
        )
        .route(
            "/c/{slug}/patients/{id}/erase",
            get(rights::erase_get).post(rights::erase_post),
        )
        .route(
            "/c/{slug}/patients/{id}/attachments",
            // Only this route takes large bodies; the files stream, capped as they come.
            post(attachments::upload_post).layer(axum::extract::DefaultBodyLimit::max(
                attachments::body_limit(&state.attachments),
            )),
        )
        .route(
            "/c/{slug}/patients/{id}/attachments/{attachment}",
            get(attachments::view_get),
        )
        .route(
            "/c/{slug}/patients/{id}/attachments/{attachment}/download",
            get(attachments::download_get),
        )
        .route(
            "/c/{slug}/patients/{id}/attachments/{attachment}/thumbnail",
            get(attachments::thumbnail_get),
        )
        .route(
            "/c/{slug}/patients/{id}/attachments/{attachment}/delete",
            post(attachments::delete_post),
        )
        .route(
            "/c/{slug}/patients/{id}/edit",
            get(patients::edit_get).post(patients::edit_post),
        )
        .route("/c/{slug}/patients/{id}/visits/new", get(visits::new_get))
        .route("/c/{slug}/patients/{id}/visits", post(visits::create_post))
        .route("/c/{slug}/visits/{id}", get(visits::show_get))
        .route("/c/{slug}/visits/{id}/history", get(visits::history_get))
        .route(
            "/c/{slug}/visits/{id}/edit",
            get(visits::edit_get).post(visits::edit_post),
        )
        .route(
            "/c/{slug}/visits/{id}/prescription",
            get(visits::prescription_get),
        )
        // Front desk: appointment book, payments and receipts, collections.
        .route(
            "/c/{slug}/appointments",
            get(appointments::day_get).post(appointments::book_post),
        )
        .route("/c/{slug}/appointments/{id}", get(appointments::show_get))
        .route(
            "/c/{slug}/appointments/{id}/status",
            post(appointments::status_post),
        )
        .route(
            "/c/{slug}/appointments/{id}/reschedule",
            post(appointments::reschedule_post),
        )
        .route(
            "/c/{slug}/payments",
            get(payments::list_get).post(payments::create_post),
        )
        .route("/c/{slug}/payments/new", get(payments::new_get))
        .route("/c/{slug}/payments/report", get(payments::report_get))
        .route(
            "/c/{slug}/payments/{id}/receipt",
            get(payments::receipt_get),
        )
        .route(
            "/c/{slug}/payments/{id}/refund",
            get(payments::correct_get).post(payments::correct_post),
        )
        .route(
            "/c/{slug}/payments/{id}/void",
            get(payments::correct_get).post(payments::correct_post),
        )
        .route(
            "/c/{slug}/corrections/{id}/receipt",
            get(payments::correction_receipt_get),
        )
        // Taking the data away, and closing.
        .route(
            "/c/{slug}/export",
            get(export::export_get).post(export::export_post),
        )
        .route(
            "/export/download",
            get(export::download_get).post(export::download_post),
        )
        .route(
            "/c/{slug}/settings/close",
            get(lifecycle::close_get).post(lifecycle::close_post),
        )
        .merge(limited)
        .fallback(views::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::middleware,
        ));
    let routes = Router::new()
        .route("/healthz", get(health::healthz_get))
        .route("/status", get(health::status_get))
        .route("/static/ward.css", get(assets::css_get))
        .route("/static/search.js", get(assets::search_js_get))
        .route("/static/upload.js", get(attachments::upload_js_get))
        .merge(pages)
        .with_state(state);
    // Outermost, so every response (a rate limit's, a rejection's) carries the request id
    // and is counted; applied per route, so it sees the route's template.
    headers::apply(routes, https).layer(axum::middleware::from_fn(crate::observe::track))
}
