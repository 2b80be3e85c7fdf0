//! A clinic's staff: invitations, role changes, removals and accepting an invitation,
//! and the operator's additions from the command line ([`add_by_operator`]).
//!
//! A staff change touches two databases: the membership lives in the control plane, the
//! record of it in the clinic's audit log. The control-plane change runs inside the
//! clinic's audit transaction and the audit row is written right after it: a refused
//! change (last owner, not a member) rolls the audit transaction back, and a change
//! that could not be recorded is reported in the server log.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ward_clinic::ClinicError;
use ward_clinic::audit::{self, Action, Actor, Diff, Entry};
use ward_control::{
    ClinicRecord, ControlError, ControlPlane, INVITE_TTL, Invitation, Invited, Inviter, Purpose,
    StaffChange, invitation_link,
};
use ward_core::{ClinicId, Clock, Email, Role};
use ward_mail::{MailError, Mailer, Message};
use ward_tenancy::{Tenant, TenantStore};

use crate::accounts::{Attempt, Origin};
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
    fn actor(&self) -> ward_core::Actor {
        ward_core::Actor::user(self.id)
    }
}

/// An error inside a clinic transaction that also changes the staff, or the staff
/// change refused.
type TxError = crate::error::TxError<StaffChange>;

/// How the clinic's audit row says someone came onto the staff by an invitation.
const INVITATION_SENT: &str = "invitation sent";

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
    let Some(message) =
        issue_invitation(&app.control, &record_, email, role, inviter, app.base_url()).await?
    else {
        return Ok(false);
    };
    record(tenant, invitation_sent(entry, email, role)).await?;
    app.mailer
        .send(email, "", message)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "could not queue an invitation"))
        .map_err(Error::other)?;
    Ok(true)
}

/// The control-plane step of an invitation: issues the one-time link and gives the
/// mail that carries it. `None` when the address is already on the staff (nothing is
/// issued).
async fn issue_invitation(
    control: &ControlPlane,
    clinic: &ClinicRecord,
    email: &Email,
    role: Role,
    inviter: Inviter<'_>,
    base_url: &str,
) -> Result<Option<Message>, ControlError> {
    let name = inviter.name.to_owned();
    let token = match control
        .invite_to_clinic(clinic.id, email, role, inviter)
        .await?
    {
        Invited::Sent(token) => token,
        Invited::AlreadyMember => return Ok(None),
    };
    Ok(Some(Message::StaffInvite {
        clinic_name: clinic.name.clone(),
        inviter: name,
        role: role.as_str().to_owned(),
        link: invitation_link(base_url, &token),
    }))
}

/// `entry` as the audit row of an invitation sent to `email`.
fn invitation_sent(entry: Entry, email: &Email, role: Role) -> Entry {
    entry.staff_added(email.as_str(), role, INVITATION_SENT)
}

/// Who the clinic's history and audit log name for the operator's changes.
const OPERATOR: &str = "operator";

/// Who an invitation from the command line says it is from.
const OPERATOR_INVITER: &str = "The operator of Ward";

/// What the operator asks for with `ward members add`: `email` onto the staff of
/// `clinic` as `role`, for `reason`.
#[derive(Debug, Clone, Copy)]
pub struct OperatorAdd<'a> {
    /// The clinic (active: the caller checks).
    pub clinic: &'a ClinicRecord,
    /// The address: an account's, who joins at once, or anyone's, who is invited.
    pub email: &'a Email,
    /// The role they get.
    pub role: Role,
    /// Why, for the clinic's audit log.
    pub reason: &'a str,
    /// The address users reach Ward at, for an invitation's link (needed only when the
    /// address has no account).
    pub base_url: Option<&'a str>,
}

/// What the operator's addition did.
#[derive(Debug)]
pub enum OperatorAdded {
    /// The account is a member now.
    Joined {
        /// The account.
        user_id: String,
        /// The account is disabled: it cannot sign in until it is enabled.
        disabled: bool,
    },
    /// The address has no account: it was invited.
    Invited {
        /// When the link stops working.
        expires_at: DateTime<Utc>,
        /// Whether the mail was delivered now (otherwise it waits in the outbox).
        delivered: bool,
        /// Where the mail goes, for a person to read.
        mail: String,
    },
}

/// The operator's addition, and the audit row it could not write, if any: the change is
/// made by then, so such a failure is reported, not undone (as for a clinic's status
/// change).
#[derive(Debug)]
pub struct AddedByOperator {
    /// What was done.
    pub added: OperatorAdded,
    /// Why the clinic's audit log does not record it.
    pub unrecorded: Option<Error>,
}

/// Why the operator's addition did not happen (nothing was changed, but for
/// [`AddRefused::NotQueued`]).
#[derive(Debug, thiserror::Error)]
pub enum AddRefused {
    /// The address is already on the staff (as this role, when known).
    #[error("already a member")]
    AlreadyMember(Option<Role>),
    /// The address has no account and no address for the invitation's link was given.
    #[error("an invitation's link needs the address users reach Ward at")]
    NoBaseUrl,
    /// Mail could not be set up for the invitation.
    #[error("cannot set up outgoing mail")]
    Mail(#[source] MailError),
    /// The control plane refused the membership.
    #[error("the membership was not added")]
    NotJoined(#[source] ControlError),
    /// The control plane did not issue the invitation.
    #[error("the invitation was not issued")]
    NotInvited(#[source] ControlError),
    /// The invitation was issued, but its mail could not be stored (and the audit row
    /// of it could not be written either, when `unrecorded` says why).
    #[error("the invitation was issued but its mail could not be stored")]
    NotQueued {
        /// Why the mail was not stored.
        #[source]
        error: MailError,
        /// Why the clinic's audit log does not record the invitation.
        unrecorded: Option<Box<Error>>,
    },
    /// The control plane could not be read.
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// The operator puts `add.email` on a clinic's staff (`ward members add`): an account
/// with the address joins at once, anyone else is invited by mail (through the mailer
/// `mailer` makes, only then), and either way the clinic's audit log records it for
/// `add.reason`, as the staff page's invitations and accepting them do.
pub async fn add_by_operator(
    control: &Arc<ControlPlane>,
    tenants: &TenantStore,
    clock: &dyn Clock,
    mailer: impl FnOnce() -> Result<Mailer, MailError>,
    add: OperatorAdd<'_>,
) -> Result<AddedByOperator, AddRefused> {
    let OperatorAdd {
        clinic,
        email,
        role,
        reason,
        base_url,
    } = add;
    // The row is dated when it is written, after the change.
    let entry = || {
        let operator = Actor::Operator {
            name: OPERATOR.to_owned(),
        };
        Entry::new(clock.now(), operator, Action::Create).reason(reason)
    };
    if let Some(user) = control.user_by_email(email).await? {
        if let Some(m) = control.clinic_member(clinic.id, &user.id).await? {
            return Err(AddRefused::AlreadyMember(Some(m.role)));
        }
        let joined = control
            .join_clinic(clinic.id, &user.id, role, &ward_core::Actor::Operator)
            .await
            .map_err(AddRefused::NotJoined)?;
        if !joined {
            return Err(AddRefused::AlreadyMember(None));
        }
        let entry = entry().staff_added(&user.id, role, "added by the operator");
        let unrecorded = record_anchored(control, tenants, clinic.id, entry)
            .await
            .err();
        let added = OperatorAdded::Joined {
            user_id: user.id,
            disabled: user.disabled,
        };
        return Ok(AddedByOperator { added, unrecorded });
    }
    // Everything that can be refused is checked before the invitation is issued.
    let base_url = base_url.ok_or(AddRefused::NoBaseUrl)?;
    let mailer = mailer().map_err(AddRefused::Mail)?;
    let inviter = Inviter {
        name: OPERATOR_INVITER,
        user_id: None,
        actor: &ward_core::Actor::Operator,
    };
    let message = issue_invitation(control, clinic, email, role, inviter, base_url)
        .await
        .map_err(AddRefused::NotInvited)?
        .ok_or(AddRefused::AlreadyMember(None))?;
    let expires_at = clock.now() + INVITE_TTL;
    let entry = invitation_sent(entry(), email, role);
    let unrecorded = record_anchored(control, tenants, clinic.id, entry)
        .await
        .err();
    let id = match mailer.enqueue(email, "", message).await {
        Ok(id) => id,
        Err(error) => {
            let unrecorded = unrecorded.map(Box::new);
            return Err(AddRefused::NotQueued { error, unrecorded });
        }
    };
    let delivered = mailer.deliver(id).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot deliver the invitation now");
        false
    });
    let added = OperatorAdded::Invited {
        expires_at,
        delivered,
        mail: mailer.describe(),
    };
    Ok(AddedByOperator { added, unrecorded })
}

/// Appends `entry` to the clinic's audit log in a transaction of its own, and anchors the
/// new head in the control plane (without `ward serve` running, nobody else would).
async fn record_anchored(
    control: &ControlPlane,
    tenants: &TenantStore,
    clinic: ClinicId,
    entry: Entry,
) -> Result<(), Error> {
    let tenant = tenants.get(clinic).await?;
    let recorded = tenant
        .with(|conn| audit::in_transaction(&conn, |tx| audit::record(&tx, &entry)))
        .await
        .map_err(ClinicError::from)?;
    control.anchor(clinic, recorded.seq, &recorded.hash).await?;
    Ok(())
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
    let (control, actor, target) = (
        app.control.clone(),
        ward_core::Actor::user(by),
        target.to_owned(),
    );
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
    Ok(match TxError::settle(outcome)? {
        Ok(before) => StaffChange::Done(before),
        Err(refused) => refused,
    })
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
            &ward_core::Actor::user(by),
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
            let signup = Attempt::new("signup", origin).user(Some(&user.id));
            signup
                .email(Some(email))
                .log_detail(app, "ok", detail)
                .await;
            (user.id, name.to_owned(), true)
        }
    };
    let clinic = invitation.clinic.id;
    let joined = app
        .control
        .join_clinic(
            clinic,
            &user_id,
            invitation.role,
            &ward_core::Actor::user(&user_id),
        )
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
    let attempt = Attempt::new("invite_accept", origin).user(Some(&user_id));
    attempt
        .email(Some(email))
        .log_detail(app, outcome, detail)
        .await;
    Ok(Accepted::Member {
        user_id,
        created,
        joined,
    })
}
