//! A clinic's staff: invitations, role changes, removals and accepting an invitation.
//!
//! A staff change touches two databases: the membership lives in the control plane, the
//! record of it in the clinic's audit log. The control-plane change runs inside the
//! clinic's audit transaction and the audit row is written right after it: a refused
//! change (last owner, not a member) rolls the audit transaction back, and a change
//! that could not be recorded is reported in the server log.

use ward_clinic::ClinicError;
use ward_clinic::audit::{self, Action, Actor, AuditError, Diff, Entry};
use ward_control::{
    ControlError, Invitation, Invited, Inviter, Purpose, StaffChange, invitation_link,
};
use ward_core::{ClinicId, Email, Role};
use ward_mail::Message;
use ward_tenancy::Tenant;

use crate::accounts::{Origin, auth_event};
use crate::{App, Error, record};

/// The member making a change: their user id and name.
#[derive(Debug, Clone, Copy)]
pub struct ByMember<'a> {
    /// Their user id.
    pub id: &'a str,
    /// Their name, as invitations show it.
    pub name: &'a str,
}

impl ByMember<'_> {
    /// How the control plane's clinic history names them.
    fn actor(&self) -> String {
        format!("user:{}", self.id)
    }
}

/// An error inside a clinic transaction that also changes the control plane.
#[derive(Debug, thiserror::Error)]
enum TxError {
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

/// Invites `email` to the clinic as `role`: the control plane issues a one-time link,
/// the clinic's log gets `entry` as "invitation sent", and the mail is queued. `false`
/// when the address is already on the staff (nothing is issued).
pub async fn invite(
    app: &App,
    tenant: &Tenant,
    clinic: ClinicId,
    by: ByMember<'_>,
    email: &Email,
    role: Role,
    entry: Entry,
) -> Result<bool, Error> {
    let record_ = app.control.clinic_by_id(clinic).await?;
    let actor = by.actor();
    let inviter = Inviter {
        name: by.name,
        user_id: Some(by.id),
        actor: &actor,
    };
    let token = match app
        .control
        .invite_to_clinic(clinic, email, role, inviter)
        .await?
    {
        Invited::Sent(token) => token,
        Invited::AlreadyMember => return Ok(false),
    };
    record(
        tenant,
        entry.staff_added(email.as_str(), role, "invitation sent"),
    )
    .await?;
    let message = Message::StaffInvite {
        clinic_name: record_.name,
        inviter: by.name.to_owned(),
        role: role.as_str().to_owned(),
        link: invitation_link(app.base_url(), &token),
    };
    app.mailer
        .send(email, "", message)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "could not queue an invitation"))
        .map_err(Error::other)?;
    Ok(true)
}

/// Which change to make to a member.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    /// Give them this role (the last owner cannot be demoted).
    Role(Role),
    /// Remove them: their membership and every session end at once.
    Remove,
}

/// Changes `target`'s membership as `by`, and writes `entry` (who, when, from where)
/// with the role before and after to the clinic's log, in the clinic's transaction.
/// Anything but [`StaffChange::Done`] changed nothing.
pub async fn change(
    app: &App,
    tenant: &Tenant,
    clinic: ClinicId,
    by: &str,
    target: &str,
    change: Change,
    entry: Entry,
) -> Result<StaffChange, Error> {
    let (control, actor, target) = (app.control.clone(), format!("user:{by}"), target.to_owned());
    let outcome = tenant
        .with_async(|conn| async move {
            audit::in_transaction_async(&conn, |tx| async move {
                let done = match change {
                    Change::Role(role) => control.change_role(clinic, &target, role, &actor).await?,
                    Change::Remove => control.remove_member(clinic, &target, &actor).await?,
                };
                let StaffChange::Done(before) = done else {
                    return Err(TxError::Refused(done));
                };
                let after = match change {
                    Change::Role(role) => serde_json::Value::from(role.as_str()),
                    Change::Remove => serde_json::Value::Null,
                };
                let mut entry = entry
                    .entity("staff", &target)
                    .diff(Diff::new().field("role", before.role.as_str(), after));
                entry.detail = Some(format!("{} <{}>", before.name, before.email));
                if let Err(e) = audit::record(&tx, &entry) {
                    tracing::error!(error = %e, "a staff change was made but could not be recorded in the clinic's audit log");
                    return Err(e.into());
                }
                Ok(before)
            })
            .await
        })
        .await;
    match outcome {
        Ok(before) => Ok(StaffChange::Done(before)),
        Err(TxError::Refused(change)) => Ok(change),
        Err(TxError::Clinic(e)) => Err(e.into()),
        Err(TxError::Control(e)) => Err(e.into()),
    }
}

/// Withdraws an open invitation (its link stops working) and records it in the
/// clinic's log and history. `false` when there is no such open invitation.
pub async fn withdraw(
    app: &App,
    tenant: &Tenant,
    clinic: ClinicId,
    by: &str,
    invitation: &str,
    entry: Entry,
) -> Result<bool, Error> {
    let Some(email) = app.control.withdraw_invite(clinic, invitation).await? else {
        return Ok(false);
    };
    let mut entry = entry.entity("staff", &email);
    entry.detail = Some("invitation withdrawn".to_owned());
    record(tenant, entry).await?;
    app.control
        .record_clinic_event(
            clinic,
            "staff_invite_withdrawn",
            &format!("user:{by}"),
            serde_json::json!({"email": email}),
        )
        .await?;
    Ok(true)
}

/// Who accepts an invitation.
pub enum Acceptor<'a> {
    /// The signed-in account the invitation is for.
    Member(ByMember<'a>),
    /// A new account for the invited address (the link proves it), with this name and
    /// password hash.
    NewAccount {
        /// The person's name.
        name: &'a str,
        /// The hash of the password they chose.
        hash: &'a str,
    },
}

/// What accepting did.
pub enum Accepted {
    /// The link was used or expired meanwhile; nothing changed.
    Expired,
    /// An account with the address was made meanwhile; nothing changed.
    AddressTaken,
    /// The account is a member of the invitation's clinic (`joined`: newly).
    Member {
        /// The account.
        user_id: String,
        /// Whether the account was made now (then it needs a session).
        created: bool,
        /// Whether it joined now (`false`: it was a member already).
        joined: bool,
    },
}

/// Accepts `invitation` (whose link is `token`): uses the link once, makes the account
/// if asked, joins it to the clinic with its audit row, and logs it all.
pub async fn accept(
    app: &App,
    invitation: &Invitation,
    token: &str,
    who: Acceptor<'_>,
    origin: &Origin,
) -> Result<Accepted, Error> {
    // Use the link before creating anything: two tabs cannot both create.
    if app
        .control
        .consume_token(Purpose::Invite, token)
        .await?
        .is_none()
    {
        return Ok(Accepted::Expired);
    }
    let email = invitation.email.as_str();
    let (user_id, name, created) = match who {
        Acceptor::Member(m) => (m.id.to_owned(), m.name.to_owned(), false),
        Acceptor::NewAccount { name, hash } => {
            let Some(user) = app
                .control
                .create_user(&invitation.email, name, hash)
                .await?
            else {
                return Ok(Accepted::AddressTaken);
            };
            let detail = Some("by invitation".into());
            auth_event(
                app,
                "signup",
                "ok",
                Some(&user.id),
                Some(email),
                origin,
                detail,
            )
            .await;
            (user.id, name.to_owned(), true)
        }
    };
    let clinic = invitation.clinic.id;
    let actor = format!("user:{user_id}");
    let joined = app
        .control
        .join_clinic(clinic, &user_id, invitation.role, &actor)
        .await?;
    // The address is proven by the link.
    app.control.mark_email_verified(&user_id).await?;
    if joined {
        let tenant = app.tenants.get(clinic).await?;
        let actor = Actor::User {
            id: user_id.clone(),
            name,
            role: invitation.role,
        };
        let mut entry = Entry::new(app.clock.now(), actor, Action::Create).staff_added(
            &user_id,
            invitation.role,
            "joined by invitation",
        );
        if let Some(ip) = &origin.ip {
            entry = entry.ip(ip);
        }
        record(&tenant, entry).await?;
    }
    let outcome = if joined { "ok" } else { "already_member" };
    let detail = Some(format!("clinic {clinic}"));
    auth_event(
        app,
        "invite_accept",
        outcome,
        Some(&user_id),
        Some(email),
        origin,
        detail,
    )
    .await;
    Ok(Accepted::Member {
        user_id,
        created,
        joined,
    })
}
