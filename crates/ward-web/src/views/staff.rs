//! The owner's staff page (`/c/{slug}/staff`) and accepting an invitation (`/invite`).
//!
//! A staff change touches two databases: the membership lives in the control plane, the
//! record of it in the clinic's audit log. The control-plane change runs inside the
//! clinic's audit transaction and the audit row is written right after it: a refused
//! change (last owner, not a member) rolls the audit transaction back, and a change
//! that could not be recorded is reported in the server log.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_clinic::ClinicError;
use ward_clinic::audit::{self, Action, Actor, AuditError, Diff, Entry};
use ward_control::passwords::check_new_password;
use ward_control::{
    AuthEvent, ControlError, Invitation, Invited, Inviter, Member, Purpose, StaffChange,
    invitation_link, parse_person_name,
};
use ward_core::{Email, Permission, Role};
use ward_mail::Message;

use crate::extract::{AppForm, ClientInfo, ClinicAccess, Csrf, MaybeUser};
use crate::session::session_cookie;
use crate::views::frame::ClinicFrame;
use crate::views::pages;
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// An error inside a clinic transaction that also changes the control plane.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TxError {
    #[error(transparent)]
    Clinic(#[from] ClinicError),
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The change was refused; the transaction rolls back and the caller answers.
    #[error("refused")]
    Refused(StaffChange),
}

impl From<ward_tenancy::sql::Error> for TxError {
    fn from(e: ward_tenancy::sql::Error) -> Self {
        Self::Clinic(e.into())
    }
}

impl From<AuditError> for TxError {
    fn from(e: AuditError) -> Self {
        Self::Clinic(e.into())
    }
}

impl From<TxError> for AppError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Clinic(c) => c.into(),
            TxError::Control(c) => c.into(),
            TxError::Refused(_) => AppError::Refused("The change was refused.".into()),
        }
    }
}

/// Writes `entry` to the clinic's audit log in its own transaction.
async fn record(access: &ClinicAccess, entry: Entry) -> Result<(), AppError> {
    access
        .tenant
        .with(|conn| {
            audit::in_transaction(&conn, |tx| {
                audit::record(&tx, &entry)?;
                Ok::<_, ClinicError>(())
            })
        })
        .await?;
    Ok(())
}

async fn auth_event(
    app: &AppState,
    kind: &str,
    outcome: &str,
    user: Option<&str>,
    email: Option<&str>,
    client: &ClientInfo,
    detail: Option<String>,
) {
    let event = AuthEvent {
        kind: kind.to_owned(),
        user_id: user.map(str::to_owned),
        email: email.map(str::to_owned),
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        outcome: outcome.to_owned(),
        detail,
    };
    if let Err(e) = app.control.record_auth_event(event).await {
        tracing::error!(error = %e, kind, "could not record an auth event");
    }
}

// ---------------------------------------------------------------- the staff page

/// One member as the page shows them.
struct MemberRow {
    user_id: String,
    name: String,
    email: String,
    role: &'static str,
    since: String,
    is_me: bool,
}

/// An open invitation as the page shows it.
struct InviteRow {
    id: String,
    email: String,
    role: &'static str,
    expires: String,
}

#[derive(Template)]
#[template(path = "staff.html")]
struct StaffPage {
    frame: ClinicFrame,
    members: Vec<MemberRow>,
    invites: Vec<InviteRow>,
    roles: Vec<&'static str>,
    notice: Option<&'static str>,
    error: Option<String>,
    invite_email: String,
    invite_role: String,
    invite_error_email: Option<&'static str>,
    invite_error_role: Option<&'static str>,
}

/// `?done=` after a change.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

/// The invitation form.
#[derive(Debug, Default, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// The role-change form.
#[derive(Debug, Default, Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

struct PageState {
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<String>,
    invite: InviteForm,
    invite_error_email: Option<&'static str>,
    invite_error_role: Option<&'static str>,
}

impl Default for PageState {
    fn default() -> Self {
        Self {
            status: StatusCode::OK,
            notice: None,
            error: None,
            invite: InviteForm {
                email: String::new(),
                role: Role::Doctor.as_str().to_owned(),
            },
            invite_error_email: None,
            invite_error_role: None,
        }
    }
}

async fn staff_page(app: &AppState, access: &ClinicAccess, csrf: String, state: PageState) -> Page {
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let settings = access
        .tenant
        .with(|conn| ward_clinic::settings::load(&conn))
        .await?;
    let members = app
        .control
        .clinic_members(access.clinic_id)
        .await?
        .into_iter()
        .map(|m: Member| MemberRow {
            is_me: m.user_id == access.session.user.id,
            since: settings.local(m.since).format("%Y-%m-%d").to_string(),
            user_id: m.user_id,
            name: m.name,
            email: m.email,
            role: m.role.as_str(),
        })
        .collect();
    let invites = app
        .control
        .pending_invites(access.clinic_id)
        .await?
        .into_iter()
        .map(|i| InviteRow {
            expires: settings
                .local(i.expires_at)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            id: i.id,
            email: i.email,
            role: i.role.as_str(),
        })
        .collect();
    let page = StaffPage {
        frame: ClinicFrame::new(access, clinic.name, csrf, "staff"),
        members,
        invites,
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        notice: state.notice,
        error: state.error,
        invite_email: state.invite.email,
        invite_role: state.invite.role,
        invite_error_email: state.invite_error_email,
        invite_error_role: state.invite_error_role,
    };
    Ok((state.status, Html(page.render()?)).into_response())
}

/// The staff list, the invitation form, role changes and removal.
pub async fn staff_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    Query(q): Query<DoneQuery>,
) -> Page {
    access.require(Permission::ManageStaff)?;
    let notice = match q.done.as_str() {
        "invited" => Some("Invitation sent. The link works once, for 72 hours."),
        "role" => Some("Role changed."),
        "removed" => Some("Removed. Their sessions have ended and they no longer have access."),
        "withdrawn" => Some("Invitation withdrawn. Its link no longer works."),
        _ => None,
    };
    staff_page(
        &app,
        &access,
        csrf,
        PageState {
            notice,
            ..PageState::default()
        },
    )
    .await
}

/// Sends an invitation: a one-time link valid for 72 hours.
pub async fn invite_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    AppForm(form): AppForm<InviteForm>,
) -> Page {
    access.require(Permission::ManageStaff)?;
    access.require_fresh(&app, "staff")?;
    let email = Email::parse(&form.email).ok();
    let role = Role::parse(form.role.trim()).ok();
    let (Some(email), Some(role)) = (email.clone(), role) else {
        return staff_page(
            &app,
            &access,
            csrf,
            PageState {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                invite_error_email: email
                    .is_none()
                    .then_some("Enter an email address such as name@example.com."),
                invite_error_role: role.is_none().then_some("Choose a role."),
                invite: form,
                ..PageState::default()
            },
        )
        .await;
    };
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let actor = format!("user:{}", access.session.user.id);
    let inviter = Inviter {
        name: &access.session.user.name,
        user_id: Some(&access.session.user.id),
        actor: &actor,
    };
    let token = match app
        .control
        .invite_to_clinic(access.clinic_id, &email, role, inviter)
        .await?
    {
        Invited::Sent(token) => token,
        Invited::AlreadyMember => {
            return staff_page(
                &app,
                &access,
                csrf,
                PageState {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    invite_error_email: Some("This person is already on the staff."),
                    invite: form,
                    ..PageState::default()
                },
            )
            .await;
        }
    };
    let entry = access
        .audit_entry(app.clock.now(), Action::Create)
        .staff_added(email.as_str(), role, "invitation sent");
    record(&access, entry).await?;
    let link = invitation_link(app.base_url(), &token);
    if let Err(e) = app
        .mailer
        .send(
            &email,
            "",
            Message::StaffInvite {
                clinic_name: clinic.name,
                inviter: access.session.user.name.clone(),
                role: role.as_str().to_owned(),
                link,
            },
        )
        .await
    {
        tracing::error!(error = %e, "could not queue an invitation");
        return Err(AppError::Internal(Box::new(e)));
    }
    Ok(Redirect::to(&format!("/c/{}/staff?done=invited", access.slug)).into_response())
}

async fn refused(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    change: StaffChange,
    what: &str,
) -> Page {
    match change {
        StaffChange::NotMember => Err(AppError::NotFound),
        StaffChange::LastOwner => staff_page(
            app,
            access,
            csrf,
            PageState {
                status: StatusCode::CONFLICT,
                error: Some(format!(
                    "You cannot {what} the clinic's only owner. Make another member an owner first."
                )),
                ..PageState::default()
            },
        )
        .await,
        StaffChange::Done(_) | StaffChange::Unchanged => {
            Ok(Redirect::to(&format!("/c/{}/staff", access.slug)).into_response())
        }
    }
}

/// Changes a member's role; the last owner cannot be demoted.
pub async fn role_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    Path((_, user_id)): Path<(String, String)>,
    AppForm(form): AppForm<RoleForm>,
) -> Page {
    access.require(Permission::ManageStaff)?;
    access.require_fresh(&app, "staff")?;
    let Ok(role) = Role::parse(form.role.trim()) else {
        return Err(AppError::Refused(
            "Choose one of the roles in the list.".into(),
        ));
    };
    let (control, clinic_id, actor) = (
        app.control.clone(),
        access.clinic_id,
        format!("user:{}", access.session.user.id),
    );
    let entry = access.audit_entry(app.clock.now(), Action::Update);
    let target = user_id.clone();
    let outcome = access
        .tenant
        .with_async(|conn| async move {
            audit::in_transaction_async(&conn, |tx| async move {
                let before = match control.change_role(clinic_id, &target, role, &actor).await? {
                    StaffChange::Done(before) => before,
                    other => return Err(TxError::Refused(other)),
                };
                let mut entry = entry
                    .entity("staff", &target)
                    .diff(Diff::new().field("role", before.role.as_str(), role.as_str()));
                entry.detail = Some(format!("{} <{}>", before.name, before.email));
                if let Err(e) = audit::record(&tx, &entry) {
                    tracing::error!(error = %e, "a role change was made but could not be recorded in the clinic's audit log");
                    return Err(e.into());
                }
                Ok(())
            })
            .await
        })
        .await;
    match outcome {
        Ok(()) => {}
        Err(TxError::Refused(change)) => {
            return refused(&app, &access, csrf, change, "demote").await;
        }
        Err(e) => return Err(e.into()),
    }
    if user_id == access.session.user.id && !role.can(Permission::ManageStaff) {
        return Ok(Redirect::to(&format!("/c/{}/", access.slug)).into_response());
    }
    Ok(Redirect::to(&format!("/c/{}/staff?done=role", access.slug)).into_response())
}

#[derive(Template)]
#[template(path = "staff_remove.html")]
struct RemovePage {
    frame: ClinicFrame,
    member: MemberRow,
}

/// Asks before removing a member (removal ends their sessions at once).
pub async fn remove_get(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    Path((_, user_id)): Path<(String, String)>,
) -> Page {
    access.require(Permission::ManageStaff)?;
    access.require_fresh(&app, "staff")?;
    let Some(m) = app
        .control
        .clinic_member(access.clinic_id, &user_id)
        .await?
    else {
        return Err(AppError::NotFound);
    };
    let clinic = app.control.clinic_by_id(access.clinic_id).await?;
    let page = RemovePage {
        frame: ClinicFrame::new(&access, clinic.name, csrf, "staff"),
        member: MemberRow {
            is_me: m.user_id == access.session.user.id,
            since: String::new(),
            user_id: m.user_id,
            name: m.name,
            email: m.email,
            role: m.role.as_str(),
        },
    };
    Ok(Html(page.render()?).into_response())
}

/// Removes a member: their membership and every session end at once.
pub async fn remove_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Csrf(csrf): Csrf,
    Path((_, user_id)): Path<(String, String)>,
) -> Page {
    access.require(Permission::ManageStaff)?;
    access.require_fresh(&app, "staff")?;
    let (control, clinic_id, actor) = (
        app.control.clone(),
        access.clinic_id,
        format!("user:{}", access.session.user.id),
    );
    let entry = access.audit_entry(app.clock.now(), Action::Delete);
    let target = user_id.clone();
    let outcome = access
        .tenant
        .with_async(|conn| async move {
            audit::in_transaction_async(&conn, |tx| async move {
                let before = match control.remove_member(clinic_id, &target, &actor).await? {
                    StaffChange::Done(before) => before,
                    other => return Err(TxError::Refused(other)),
                };
                let mut entry = entry
                    .entity("staff", &target)
                    .diff(Diff::new().field("role", before.role.as_str(), serde_json::Value::Null));
                entry.detail = Some(format!("{} <{}>", before.name, before.email));
                if let Err(e) = audit::record(&tx, &entry) {
                    tracing::error!(error = %e, "a member was removed but it could not be recorded in the clinic's audit log");
                    return Err(e.into());
                }
                Ok(())
            })
            .await
        })
        .await;
    match outcome {
        Ok(()) => {}
        Err(TxError::Refused(change)) => {
            return refused(&app, &access, csrf, change, "remove").await;
        }
        Err(e) => return Err(e.into()),
    }
    if user_id == access.session.user.id {
        // They removed themselves: their own session ended with the others.
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(Redirect::to(&format!("/c/{}/staff?done=removed", access.slug)).into_response())
}

/// Withdraws an open invitation: its link stops working.
pub async fn withdraw_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Page {
    access.require(Permission::ManageStaff)?;
    access.require_fresh(&app, "staff")?;
    let Some(email) = app.control.withdraw_invite(access.clinic_id, &id).await? else {
        return Err(AppError::NotFound);
    };
    let mut entry = access
        .audit_entry(app.clock.now(), Action::Delete)
        .entity("staff", &email);
    entry.detail = Some("invitation withdrawn".to_owned());
    record(&access, entry).await?;
    app.control
        .record_clinic_event(
            access.clinic_id,
            "staff_invite_withdrawn",
            &format!("user:{}", access.session.user.id),
            serde_json::json!({"email": email}),
        )
        .await?;
    Ok(Redirect::to(&format!("/c/{}/staff?done=withdrawn", access.slug)).into_response())
}

// ---------------------------------------------------------------- accepting

/// `?token=` of an invitation link, and the accept form.
#[derive(Debug, Default, Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// What the page offers.
#[derive(PartialEq, Eq)]
enum Offer {
    /// Signed in as the invited account: a join button.
    Join,
    /// No account for the address: name and password, then join.
    CreateAccount,
    /// The address has an account and nobody is signed in.
    SignInFirst,
    /// Signed in as someone else.
    WrongAccount(String),
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    csrf: String,
    token: String,
    clinic_name: String,
    role: String,
    inviter: String,
    email: String,
    offer: Offer,
    name: String,
    name_error: Option<&'static str>,
    password_error: Option<&'static str>,
}

fn expired() -> Page {
    Ok((
        StatusCode::BAD_REQUEST,
        pages::message_with_link(
            "This invitation has expired or was already used",
            "Invitation links work once and for 72 hours. Ask the clinic's owner to invite you again.",
            "/login",
            "Go to sign in",
        ),
    )
        .into_response())
}

async fn offer(
    app: &AppState,
    inv: &Invitation,
    user: Option<&ward_control::Session>,
) -> Result<Offer, AppError> {
    let existing = app.control.user_by_email(&inv.email).await?;
    Ok(match (existing, user) {
        (Some(e), Some(s)) if e.id == s.user.id => Offer::Join,
        (_, Some(s)) => Offer::WrongAccount(s.user.email.clone()),
        (Some(_), None) => Offer::SignInFirst,
        (None, None) => Offer::CreateAccount,
    })
}

fn invite_page(csrf: String, token: String, inv: Invitation, offer: Offer) -> InvitePage {
    InvitePage {
        csrf,
        token,
        clinic_name: inv.clinic.name,
        role: inv.role.as_str().to_owned(),
        inviter: inv.inviter,
        email: inv.email.to_string(),
        offer,
        name: String::new(),
        name_error: None,
        password_error: None,
    }
}

/// Shows the invitation. Changes nothing: mail scanners open links.
pub async fn invite_get(
    State(app): State<AppState>,
    MaybeUser(user): MaybeUser,
    Csrf(csrf): Csrf,
    Query(q): Query<AcceptForm>,
) -> Page {
    let Some(inv) = app.control.peek_invitation(&q.token).await? else {
        return expired();
    };
    let offer = offer(&app, &inv, user.as_ref()).await?;
    let status = match offer {
        Offer::WrongAccount(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::OK,
    };
    Ok((
        status,
        Html(invite_page(csrf, q.token, inv, offer).render()?),
    )
        .into_response())
}

/// Accepts: joins the signed-in invited account to the clinic, or creates the account
/// (the link proves the address) and signs it in; then opens the clinic.
pub async fn invite_post_accept(
    State(app): State<AppState>,
    MaybeUser(user): MaybeUser,
    Csrf(csrf): Csrf,
    client: ClientInfo,
    AppForm(form): AppForm<AcceptForm>,
) -> Page {
    let Some(inv) = app.control.peek_invitation(&form.token).await? else {
        auth_event(
            &app,
            "invite_accept",
            "invalid_token",
            user.as_ref().map(|s| s.user.id.as_str()),
            None,
            &client,
            None,
        )
        .await;
        return expired();
    };
    let offer = offer(&app, &inv, user.as_ref()).await?;
    let (user_id, name, created) = match offer {
        Offer::Join => {
            let Some(s) = user.as_ref() else {
                return expired();
            };
            (s.user.id.clone(), s.user.name.clone(), false)
        }
        Offer::SignInFirst | Offer::WrongAccount(_) => {
            auth_event(
                &app,
                "invite_accept",
                "wrong_account",
                user.as_ref().map(|s| s.user.id.as_str()),
                Some(inv.email.as_str()),
                &client,
                None,
            )
            .await;
            let token = form.token;
            return Ok((
                StatusCode::FORBIDDEN,
                Html(invite_page(csrf, token, inv, offer).render()?),
            )
                .into_response());
        }
        Offer::CreateAccount => {
            let name = parse_person_name(&form.name);
            let password = check_new_password(&form.password);
            let name = match (name, password) {
                (Ok(name), Ok(())) => name,
                (name, password) => {
                    let mut page = invite_page(csrf, form.token, inv, Offer::CreateAccount);
                    page.name = form.name;
                    page.name_error = name.err();
                    page.password_error = password.err();
                    return Ok(
                        (StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response()
                    );
                }
            };
            let hash = app.hasher.hash(&form.password).await?;
            // Use the link before creating anything: two tabs cannot both create.
            if app
                .control
                .consume_token(Purpose::Invite, &form.token)
                .await?
                .is_none()
            {
                return expired();
            }
            let Some(created) = app.control.create_user(&inv.email, &name, &hash).await? else {
                return Err(AppError::Refused("An account with this address was created meanwhile. Sign in, then ask for a new invitation.".into()));
            };
            app.control.mark_email_verified(&created.id).await?;
            auth_event(
                &app,
                "signup",
                "ok",
                Some(&created.id),
                Some(inv.email.as_str()),
                &client,
                Some("by invitation".into()),
            )
            .await;
            (created.id, name, true)
        }
    };
    if !created
        && app
            .control
            .consume_token(Purpose::Invite, &form.token)
            .await?
            .is_none()
    {
        return expired();
    }
    let joined = app
        .control
        .join_clinic(
            inv.clinic.id,
            &user_id,
            inv.role,
            &format!("user:{user_id}"),
        )
        .await?;
    // An existing account's address is proven by the link too.
    app.control.mark_email_verified(&user_id).await?;
    if joined {
        let tenant = app.tenants.get(inv.clinic.id).await?;
        let mut entry = Entry::new(
            app.clock.now(),
            Actor::User {
                id: user_id.clone(),
                name,
                role: inv.role,
            },
            Action::Create,
        )
        .staff_added(&user_id, inv.role, "joined by invitation");
        if let Some(ip) = &client.ip {
            entry = entry.ip(ip);
        }
        tenant
            .with(|conn| {
                audit::in_transaction(&conn, |tx| {
                    audit::record(&tx, &entry)?;
                    Ok::<_, ClinicError>(())
                })
            })
            .await?;
    }
    auth_event(
        &app,
        "invite_accept",
        if joined { "ok" } else { "already_member" },
        Some(&user_id),
        Some(inv.email.as_str()),
        &client,
        Some(format!("clinic {}", inv.clinic.id)),
    )
    .await;
    let to = format!("/c/{}/", inv.clinic.slug);
    if created {
        let token = app
            .control
            .create_session(&user_id, client.ip.clone(), client.user_agent.clone())
            .await?;
        let mut r = Redirect::to(&to).into_response();
        r.headers_mut().append(
            header::SET_COOKIE,
            session_cookie(&app.config, token, app.session_policy.absolute),
        );
        return Ok(r);
    }
    Ok(Redirect::to(&to).into_response())
}
