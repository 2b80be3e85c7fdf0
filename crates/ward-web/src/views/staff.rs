//! The owner's staff page (`/c/{slug}/staff`) and accepting an invitation (`/invite`).
//! The changes themselves, each with its audit row, are `ward_app::staff`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_app::accounts::{Attempt, Origin};
use ward_app::staff::{self, Accepted, Acceptor, ByMember, Change};
use ward_clinic::audit::Action;
use ward_clinic::settings::ClinicSettings;
use ward_control::passwords::check_new_password;
use ward_control::{Invitation, StaffChange, parse_person_name};
use ward_core::{Email, Permission, Role};

use crate::extract::{AppForm, ClientInfo, ClinicAccess, ClinicPage, MaybeUser, PageRequest};
use crate::session::session_cookie;
use crate::views::frame::ClinicFrame;
use crate::views::pages;
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

fn by(access: &ClinicAccess) -> ByMember<'_> {
    ByMember {
        id: &access.session.user.id,
        name: &access.session.user.name,
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

impl MemberRow {
    fn new(m: ward_control::Member, settings: &ClinicSettings, me: &str) -> Self {
        Self {
            is_me: m.user_id == me,
            since: settings.local(m.since).format("%Y-%m-%d").to_string(),
            user_id: m.user_id,
            name: m.name,
            email: m.email,
            role: m.role.as_str(),
        }
    }
}

impl InviteRow {
    fn new(i: ward_control::PendingInvite, settings: &ClinicSettings) -> Self {
        Self {
            expires: settings
                .local(i.expires_at)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            id: i.id,
            email: i.email,
            role: i.role.as_str(),
        }
    }
}

async fn staff_page(app: &AppState, access: &ClinicAccess, csrf: String, state: PageState) -> Page {
    let settings = access
        .tenant
        .with(|conn| ward_clinic::settings::load(&conn))
        .await?;
    let me = &access.session.user.id;
    let members = app.control.clinic_members(access.clinic_id).await?;
    let members = members
        .into_iter()
        .map(|m| MemberRow::new(m, &settings, me))
        .collect();
    let invites = app.control.pending_invites(access.clinic_id).await?;
    let invites = invites
        .into_iter()
        .map(|i| InviteRow::new(i, &settings))
        .collect();
    let page = StaffPage {
        frame: ClinicFrame::load(app, access, csrf, "staff").await?,
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
    crate::views::respond::html(state.status, &page)
}

/// The staff list, the invitation form, role changes and removal.
pub async fn staff_get(
    PageRequest(app, access, csrf): ClinicPage,
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
    PageRequest(app, access, csrf): ClinicPage,
    AppForm(form): AppForm<InviteForm>,
) -> Page {
    access.require_confirmed(Permission::ManageStaff, &app, "staff")?;
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
    let entry = access.audit_entry(app.clock.now(), Action::Create);
    let (tenant, clinic) = (&access.tenant, access.clinic_id);
    if !staff::invite(&app, tenant, clinic, by(&access), &email, role, entry).await? {
        let state = PageState {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            invite_error_email: Some("This person is already on the staff."),
            invite: form,
            ..PageState::default()
        };
        return staff_page(&app, &access, csrf, state).await;
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

/// Makes `change` to member `user_id` as the signed-in member, audited as `action`:
/// `None` once it is done, otherwise the answer to the refusal (see [`refused`]), which
/// names what could not be done to the member (`what`).
async fn change_member(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    user_id: &str,
    (change, action, what): (Change, Action, &str),
) -> Result<Option<Response>, AppError> {
    let entry = access.audit_entry(app.clock.now(), action);
    let me = &access.session.user.id;
    let done = staff::change(
        app,
        &access.tenant,
        access.clinic_id,
        me,
        user_id,
        change,
        entry,
    );
    let outcome = done.await?;
    if matches!(outcome, StaffChange::Done(_)) {
        Ok(None)
    } else {
        refused(app, access, csrf, outcome, what).await.map(Some)
    }
}

/// Changes a member's role; the last owner cannot be demoted.
pub async fn role_post(
    PageRequest(app, access, csrf): ClinicPage,
    Path((_, user_id)): Path<(String, String)>,
    AppForm(form): AppForm<RoleForm>,
) -> Page {
    access.require_confirmed(Permission::ManageStaff, &app, "staff")?;
    let Ok(role) = Role::parse(form.role.trim()) else {
        return Err(AppError::Refused(
            "Choose one of the roles in the list.".into(),
        ));
    };
    let change = (Change::Role(role), Action::Update, "demote");
    if let Some(refusal) = change_member(&app, &access, csrf, &user_id, change).await? {
        return Ok(refusal);
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
    PageRequest(app, access, csrf): ClinicPage,
    Path((_, user_id)): Path<(String, String)>,
) -> Page {
    access.require_confirmed(Permission::ManageStaff, &app, "staff")?;
    let Some(m) = app
        .control
        .clinic_member(access.clinic_id, &user_id)
        .await?
    else {
        return Err(AppError::NotFound);
    };
    let page = RemovePage {
        frame: ClinicFrame::load(&app, &access, csrf, "staff").await?,
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
    PageRequest(app, access, csrf): ClinicPage,
    Path((_, user_id)): Path<(String, String)>,
) -> Page {
    access.require_confirmed(Permission::ManageStaff, &app, "staff")?;
    let change = (Change::Remove, Action::Delete, "remove");
    if let Some(refusal) = change_member(&app, &access, csrf, &user_id, change).await? {
        return Ok(refusal);
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
    access.require_confirmed(Permission::ManageStaff, &app, "staff")?;
    let entry = access.audit_entry(app.clock.now(), Action::Delete);
    let me = &access.session.user.id;
    if !staff::withdraw(&app, &access.tenant, access.clinic_id, me, &id, entry).await? {
        return Err(AppError::NotFound);
    }
    Ok(Redirect::to(&format!("/c/{}/staff?done=withdrawn", access.slug)).into_response())
}

// ---------------------------------------------------------------- accepting

/// `?token=` of an invitation link, and the accept form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AcceptForm {
    token: String,
    name: String,
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
    PageRequest(app, MaybeUser(user), csrf): PageRequest<MaybeUser>,
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
    PageRequest(app, MaybeUser(user), csrf): PageRequest<MaybeUser>,
    client: ClientInfo,
    AppForm(form): AppForm<AcceptForm>,
) -> Page {
    let origin = client.origin();
    let me = user.as_ref().map(|s| s.user.id.as_str());
    let Some(inv) = app.control.peek_invitation(&form.token).await? else {
        return invalid_token(&app, me, origin).await;
    };
    let (name, hash);
    let who = match (offer(&app, &inv, user.as_ref()).await?, user.as_ref()) {
        (Offer::Join, Some(s)) => Acceptor::Member(ByMember {
            id: &s.user.id,
            name: &s.user.name,
        }),
        (Offer::CreateAccount, _) => {
            match (
                parse_person_name(&form.name),
                check_new_password(&form.password),
            ) {
                (Ok(n), Ok(())) => name = n,
                (n, p) => return new_account_refused(csrf, form, inv, (n.err(), p.err())),
            }
            hash = app.hasher.hash(&form.password).await?;
            Acceptor::NewAccount {
                name: &name,
                hash: &hash,
            }
        }
        (offer, _) => return wrong_account(&app, (me, origin), csrf, form, inv, offer).await,
    };
    let to = format!("/c/{}/", inv.clinic.slug);
    let accepted = staff::accept(&app, &inv, &form.token, who, origin).await?;
    accepted_answer(&app, accepted, &to, client).await
}

/// No invitation has the link's token (any more): logged, and the expired page.
async fn invalid_token(app: &AppState, me: Option<&str>, origin: &Origin) -> Page {
    let attempt = Attempt::new("invite_accept", origin).user(me);
    attempt.log(app, "invalid_token").await;
    expired()
}

/// The new account's name or password refused: the form again, with why.
fn new_account_refused(
    csrf: String,
    form: AcceptForm,
    inv: Invitation,
    (name_error, password_error): (Option<&'static str>, Option<&'static str>),
) -> Page {
    let mut page = invite_page(csrf, form.token, inv, Offer::CreateAccount);
    (page.name, page.name_error, page.password_error) = (form.name, name_error, password_error);
    let page = Html(page.render()?);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// Nobody, or someone other than the invited account, is signed in: logged, and the
/// page says what to do.
async fn wrong_account(
    app: &AppState,
    (me, origin): (Option<&str>, &Origin),
    csrf: String,
    form: AcceptForm,
    inv: Invitation,
    offer: Offer,
) -> Page {
    let email = Some(inv.email.as_str());
    let attempt = Attempt::new("invite_accept", origin).user(me);
    attempt.email(email).log(app, "wrong_account").await;
    let page = invite_page(csrf, form.token, inv, offer);
    crate::views::respond::html(StatusCode::FORBIDDEN, &page)
}

/// The answer to an acceptance: on to the clinic at `to`, a new account signed in.
async fn accepted_answer(app: &AppState, accepted: Accepted, to: &str, client: ClientInfo) -> Page {
    match accepted {
        Accepted::Expired => expired(),
        Accepted::AddressTaken => Err(AppError::Refused("An account with this address was created meanwhile. Sign in, then ask for a new invitation.".into())),
        Accepted::Member { user_id, created: true, .. } => {
            let ClientInfo(Origin { ip, user_agent }) = client;
            let token = app.control.create_session(&user_id, ip, user_agent).await?;
            let mut r = Redirect::to(to).into_response();
            let cookie = session_cookie(&app.config, token, app.session_policy.absolute);
            r.headers_mut().append(header::SET_COOKIE, cookie);
            Ok(r)
        }
        Accepted::Member { .. } => Ok(Redirect::to(to).into_response()),
    }
}
