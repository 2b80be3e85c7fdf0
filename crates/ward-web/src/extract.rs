//! Extractors: who is asking, from where, with which form, for which clinic.

use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use ward_app::accounts::Origin;
use ward_clinic::audit::{Action, Actor, Entry};
use ward_clinic::{AttachmentId, ParseIdError, PatientId};
use ward_control::Session;
use ward_core::{ClinicId, ClinicStatus, Permission, Role, Slug};
use ward_tenancy::TenantHandle;

use crate::client_ip::client_ip;
use crate::session::{CsrfToken, ResolvedSession, ResolvedSupport};
use crate::views::pages;
use crate::{AppError, AppState};

/// The signed-in user; pages that need one redirect to sign-in without it.
pub struct CurrentUser(pub Session);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ResolvedSession>() {
            Some(ResolvedSession(Some(s))) => Ok(Self(s.clone())),
            _ => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// The signed-in user, if any.
pub struct MaybeUser(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ResolvedSession>()
                .and_then(|s| s.0.clone()),
        ))
    }
}

/// The CSRF token to put in this page's forms.
pub struct Csrf(pub String);

impl FromRequestParts<AppState> for Csrf {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| {
                if let Some(used) = &t.used {
                    used.store(true, std::sync::atomic::Ordering::Release);
                }
                Self(t.token.clone())
            })
            .ok_or_else(|| AppError::Internal("the session middleware did not run".into()))
    }
}

/// The client's address (as the rate limiter sees it) and browser, for the auth log:
/// its `ip` and `user_agent` (truncated) are the [`Origin`]'s.
pub struct ClientInfo(pub Origin);

impl ClientInfo {
    /// Where the request came from, as the workflows log it.
    pub fn origin(&self) -> &Origin {
        &self.0
    }
}

impl std::ops::Deref for ClientInfo {
    type Target = Origin;

    fn deref(&self) -> &Origin {
        &self.0
    }
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(Origin {
            ip: client_ip(&parts.headers, &parts.extensions, state.trusted_proxy)
                .map(|ip| ip.to_string()),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().filter(|c| !c.is_control()).take(300).collect()),
        }))
    }
}

/// A urlencoded form; an unreadable one is a 400 page, not a bare-text error.
pub struct AppForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for AppForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(_) => Err((
                StatusCode::BAD_REQUEST,
                pages::message("The form could not be read", "Some fields were missing or not in the expected form. Go back, check the form and send it again."),
            )
                .into_response()),
        }
    }
}

/// A clinic page's context: a verified member of an open clinic, with its database.
/// A clinic the user does not belong to is "not found", exactly like one that does not
/// exist.
pub struct ClinicAccess {
    /// The user.
    pub session: Session,
    /// The client's address, for the audit log.
    pub ip: Option<String>,
    /// The clinic's id.
    pub clinic_id: ClinicId,
    /// Its URL name.
    pub slug: Slug,
    /// The user's role there.
    pub role: Role,
    /// An owner without a second factor, inside the grace: when it ends.
    pub second_factor_due: Option<chrono::DateTime<chrono::Utc>>,
    /// The open database.
    pub tenant: TenantHandle,
    /// A support session's grant: the operator, seen as a read-only owner.
    pub support: Option<crate::views::support::SupportInfo>,
    /// For an owner: support requests waiting and the open support session.
    pub support_notice: Option<crate::views::support::OwnerNotice>,
}

#[derive(serde::Deserialize)]
pub(crate) struct SlugParam {
    pub(crate) slug: String,
}

/// The clinic the path's `{slug}` names and the user's membership of it: its id, status
/// and the user's role. "Not found" for a malformed slug or a clinic they are not in.
async fn membership(
    parts: &mut Parts,
    state: &AppState,
    session: &Session,
) -> Result<(Slug, ClinicId, ClinicStatus, Role), Response> {
    let Path(SlugParam { slug }) = Path::<SlugParam>::from_request_parts(parts, state)
        .await
        .map_err(|_| AppError::NotFound.into_response())?;
    let slug = Slug::parse(&slug).map_err(|_| AppError::NotFound.into_response())?;
    let membership = state
        .control
        .membership_by_slug(&session.user.id, slug.as_str())
        .await
        .map_err(|e| AppError::from(e).into_response())?;
    let Some((clinic_id, status, role)) = membership else {
        return Err(AppError::NotFound.into_response());
    };
    Ok((slug, clinic_id, status, role))
}

/// Whether the member may enter: a confirmed address, and an owner's second factor
/// (enrolled, or still within the grace: `Some(end)`).
async fn admitted(
    state: &AppState,
    session: &Session,
    role: Role,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Response> {
    if !session.user.email_verified {
        return Err((
            StatusCode::FORBIDDEN,
            pages::message("Confirm your email address first", "We sent you a link when you signed up. Open it to confirm your address, then sign in again."),
        )
            .into_response());
    }
    if role != Role::Owner {
        return Ok(None);
    }
    match crate::views::second_factor::owner_enrolment(state, session)
        .await
        .map_err(IntoResponse::into_response)?
    {
        crate::views::second_factor::OwnerFactor::Overdue => {
            // Owners hold every record of the clinic: no way in on a password alone.
            Err(Redirect::to("/account/two-factor?required=1").into_response())
        }
        crate::views::second_factor::OwnerFactor::DueBy(at) => Ok(Some(at)),
        crate::views::second_factor::OwnerFactor::Done => Ok(None),
    }
}

/// Whether the clinic is open to this role on this path: an active one is; a suspended
/// one gets its page; a closed one shows its owner the closed page (or lets them take
/// the export) and is "not found" to everyone else, like a purged one.
async fn open_to(
    parts: &Parts,
    state: &AppState,
    (clinic_id, status, role): (ClinicId, ClinicStatus, Role),
) -> Result<(), Response> {
    match status {
        ClinicStatus::Active => Ok(()),
        ClinicStatus::Suspended => Err((
            StatusCode::FORBIDDEN,
            pages::message("This clinic is suspended", "Access to this clinic has been suspended by the operator. Its records are kept safe; contact the operator to restore access."),
        )
            .into_response()),
        // While closed, owners can still take their export.
        ClinicStatus::Closed if role == Role::Owner && parts.uri.path().ends_with("/export") => {
            Ok(())
        }
        ClinicStatus::Closed if role == Role::Owner => {
            // Owners learn when the data goes and that an export is still possible;
            // everyone else sees no clinic at all.
            let clinic = state
                .control
                .clinic_by_id(clinic_id)
                .await
                .map_err(|e| AppError::from(e).into_response())?;
            Err(crate::views::lifecycle::closed_page(state, &clinic))
        }
        ClinicStatus::Closed | ClinicStatus::Purged => Err(AppError::NotFound.into_response()),
    }
}

impl FromRequestParts<AppState> for ClinicAccess {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(ResolvedSupport(Some(support))) = parts.extensions.get().cloned() {
            return crate::views::support::clinic_access(parts, state, support).await;
        }
        let CurrentUser(session) = CurrentUser::from_request_parts(parts, state).await?;
        let (slug, clinic_id, status, role) = membership(parts, state, &session).await?;
        crate::observe::record_clinic(clinic_id);
        let second_factor_due = admitted(state, &session, role).await?;
        open_to(parts, state, (clinic_id, status, role)).await?;
        let tenant = state
            .tenants
            .get(clinic_id)
            .await
            .map_err(|e| AppError::from(e).into_response())?;
        let ip = client_ip(&parts.headers, &parts.extensions, state.trusted_proxy)
            .map(|ip| ip.to_string());
        let support_notice = match role {
            Role::Owner => Some(
                crate::views::support::owner_notice(state, clinic_id)
                    .await
                    .map_err(IntoResponse::into_response)?,
            ),
            _ => None,
        };
        Ok(Self {
            session,
            ip,
            clinic_id,
            slug,
            role,
            second_factor_due,
            tenant,
            support: None,
            support_notice,
        })
    }
}

/// What a page's handler starts from: the app, who is asking (`W`, an extractor taken
/// first) and the CSRF token for the page's forms (see [`Csrf`]).
pub struct PageRequest<W>(pub AppState, pub W, pub String);

/// A clinic page's request: the user's access to the clinic, then the token.
pub type ClinicPage = PageRequest<ClinicAccess>;

/// A signed-in user's own page (outside any clinic): their session, then the token.
pub type SignedInPage = PageRequest<CurrentUser>;

impl<W> FromRequestParts<AppState> for PageRequest<W>
where
    W: FromRequestParts<AppState> + Send,
    W::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let who = W::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Csrf(csrf) = Csrf::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self(state.clone(), who, csrf))
    }
}

/// A clinic page about one record: [`ClinicPage`]'s app, access and token, then the
/// record's [`RecordId`] (`T`: its kind), read in that order.
pub struct RecordRequest<T>(pub AppState, pub ClinicAccess, pub String, pub T);

impl<T: FromStr<Err = ParseIdError> + Send> FromRequestParts<AppState> for RecordRequest<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let PageRequest(app, access, csrf) = ClinicPage::from_request_parts(parts, state).await?;
        let RecordId(id) = RecordId::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self(app, access, csrf, id))
    }
}

impl ClinicAccess {
    /// `Ok` if the user's role allows `p`, otherwise the 403 page.
    pub fn require(&self, p: Permission) -> Result<(), AppError> {
        if self.can(p) {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }

    /// `Ok` if the user proved who they are in the last minutes (password, and second
    /// factor when they have one); otherwise the error that asks them to confirm and
    /// then come back to `back`, a page of this clinic (e.g. `staff`).
    pub fn require_fresh(&self, app: &crate::Web, back: &str) -> Result<(), AppError> {
        if self.support.is_some() {
            // A support session has no password or second factor to confirm.
            return Err(AppError::Forbidden);
        }
        crate::views::second_factor::require_fresh(
            app,
            &self.session,
            &format!("/c/{}/{back}", self.slug),
        )
    }

    /// [`require`](Self::require) `p`, then [`require_fresh`](Self::require_fresh): what a
    /// change that needs a recent confirmation checks first.
    pub fn require_confirmed(
        &self,
        p: Permission,
        app: &crate::Web,
        back: &str,
    ) -> Result<(), AppError> {
        self.require(p)?;
        self.require_fresh(app, back)
    }

    /// Whether the user's role allows `p` (to show or hide links and sections).
    pub fn can(&self, p: Permission) -> bool {
        self.role.can(p) && (self.support.is_none() || !crate::views::support::NEVER.contains(&p))
    }

    /// The user as the audit log records them: id, name and role at this moment.
    pub fn actor(&self) -> Actor {
        if let Some(s) = &self.support {
            return ward_app::support::actor(&s.grant);
        }
        Actor::User {
            id: self.session.user.id.clone(),
            name: self.session.user.name.clone(),
            role: self.role,
        }
    }

    /// An audit entry by this user, from this address, at `at`.
    pub fn audit_entry(&self, at: chrono::DateTime<chrono::Utc>, action: Action) -> Entry {
        let entry = Entry::new(at, self.actor(), action);
        match &self.ip {
            Some(ip) => entry.ip(ip),
            None => entry,
        }
    }

    /// An audit `view` of the `entity_type` record `id` by this user, now.
    pub fn view_entry(&self, app: &AppState, entity_type: &str, id: impl ToString) -> Entry {
        self.audit_entry(app.clock.now(), Action::View)
            .entity(entity_type, id)
    }

    /// Queues `entry`, a read of this clinic's records, for the read auditor, with the
    /// handle this request holds (so writing it never reopens the clinic).
    pub fn note_view(&self, app: &AppState, entry: Entry) -> Result<(), AppError> {
        app.audit
            .note_view_in(&self.tenant, entry)
            .map_err(|e| AppError::Internal(Box::new(e)))
    }

    /// Queues one `view` of each patient a page listed (`patients`, in any order, repeats
    /// noted once), with `what` naming the list ("patient list", "today's appointments").
    /// A patient is *shown* when the page names them: a row of a list, a search result,
    /// an appointment on a day's book. So "accessed by" includes everyone who saw the
    /// patient in a list, not only those who opened the record.
    pub fn note_shown(
        &self,
        app: &AppState,
        patients: impl IntoIterator<Item = PatientId>,
        what: &str,
    ) -> Result<(), AppError> {
        let now = app.clock.now();
        let mut seen = std::collections::BTreeSet::new();
        for id in patients {
            if seen.insert(id) {
                self.note_view(
                    app,
                    self.audit_entry(now, Action::View)
                        .entity("patient", id)
                        .detail(what),
                )?;
            }
        }
        Ok(())
    }
}

/// A record's id from the path: anything but a positive integer is "not found".
pub fn parse_id<T: FromStr<Err = ParseIdError>>(text: &str) -> Result<T, AppError> {
    text.parse().map_err(|_| AppError::NotFound)
}

/// The path parameter `name` of the request's route as a record's id: a positive
/// integer; anything else, or no such parameter, is "not found". Every id in a path is
/// read this way ([`RecordId`], [`AttachmentRequest`]).
async fn path_id<T: FromStr<Err = ParseIdError>, S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Result<T, AppError> {
    let Path(params) =
        Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound)?;
    parse_id(params.get(name).ok_or(AppError::NotFound)?)
}

/// The `{id}` of a record's address (`/c/{slug}/patients/{id}`, `…/visits/{id}`): a
/// positive integer; anything else, or no `{id}` in the route, is "not found". `T` is
/// the kind of record the route is about ([`PatientId`], [`ward_clinic::VisitId`], …).
pub struct RecordId<T>(pub T);

impl<T: FromStr<Err = ParseIdError> + Send, S: Send + Sync> FromRequestParts<S> for RecordId<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        path_id(parts, state, "id").await.map(Self)
    }
}

/// A request about one attachment (`/c/{slug}/patients/{id}/attachments/{attachment}…`):
/// the app, the user's access to the clinic (as [`ClinicAccess`] reads it), and the
/// patient's `{id}` and the attachment's `{attachment}` (read like [`RecordId`]).
pub struct AttachmentRequest(
    pub AppState,
    pub ClinicAccess,
    pub (PatientId, AttachmentId),
);

impl FromRequestParts<AppState> for AttachmentRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let access = ClinicAccess::from_request_parts(parts, state).await?;
        let RecordId(id) = RecordId::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let aid = path_id(parts, state, "attachment")
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self(state.clone(), access, (id, aid)))
    }
}
