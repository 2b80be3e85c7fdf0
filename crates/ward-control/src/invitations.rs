//! Invitations to a clinic's staff: a one-time link for one address and one role, sent
//! by an owner from the staff page or by the operator (`ward members add`), and read
//! back when the link is opened. The token's payload is written and read only here.

use chrono::TimeDelta;
use serde::Deserialize;
use ward_core::{Actor, ClinicId, ClinicStatus, Email, Role};

use crate::tokens::Purpose;
use crate::{ClinicRecord, ControlError, ControlPlane};

/// Invitations are valid for three days.
pub const INVITE_TTL: TimeDelta = TimeDelta::hours(72);

/// What an invitation's token carries besides the clinic and the address.
#[derive(Deserialize)]
struct InvitePayload {
    role: String,
    #[serde(default)]
    inviter: String,
}

/// Who sends an invitation.
#[derive(Debug, Clone, Copy)]
pub struct Inviter<'a> {
    /// The name the invitation shows ("… has invited you").
    pub name: &'a str,
    /// The inviting member's user id; `None` for the operator.
    pub user_id: Option<&'a str>,
    /// Who the clinic's history names (`user:<id>`, `operator`).
    pub actor: &'a Actor,
}

/// What inviting did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invited {
    /// Sent: the link's secret, for the mail (only its hash is stored).
    Sent(String),
    /// The address belongs to a member of the clinic already; nothing was issued.
    AlreadyMember,
}

/// An open invitation, as its link shows it.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// The clinic, active.
    pub clinic: ClinicRecord,
    /// The invited address.
    pub email: Email,
    /// The role offered.
    pub role: Role,
    /// Who invited, as the invitation names them.
    pub inviter: String,
}

/// The link in an invitation mail; `base_url` is the address users reach Ward at.
pub fn invitation_link(base_url: &str, token: &str) -> String {
    format!("{}/invite?token={token}", base_url.trim_end_matches('/'))
}

impl ControlPlane {
    /// Invites `email` to the clinic's staff as `role`: a one-time link valid for
    /// [`INVITE_TTL`], and a `staff_invited` event in the clinic's history. Nothing is
    /// issued when the address already belongs to a member. The caller mails the link
    /// ([`invitation_link`]) and writes the clinic's audit row.
    pub async fn invite_to_clinic(
        &self,
        clinic_id: ClinicId,
        email: &Email,
        role: Role,
        inviter: Inviter<'_>,
    ) -> Result<Invited, ControlError> {
        if self
            .clinic_members(clinic_id)
            .await?
            .iter()
            .any(|m| m.email.eq_ignore_ascii_case(email.as_str()))
        {
            return Ok(Invited::AlreadyMember);
        }
        let payload = serde_json::json!({
            "role": role.as_str(),
            "inviter": inviter.name,
            "inviter_id": inviter.user_id,
        })
        .to_string();
        let token = self
            .issue_token(
                Purpose::Invite,
                None,
                Some(clinic_id),
                Some(email.as_str()),
                Some(&payload),
                INVITE_TTL,
            )
            .await?;
        self.record_clinic_event(
            clinic_id,
            "staff_invited",
            inviter.actor,
            serde_json::json!({"email": email.as_str(), "role": role.as_str()}),
        )
        .await?;
        Ok(Invited::Sent(token))
    }

    /// The open invitation behind `token`, if it is valid and its clinic active.
    /// Changes nothing (mail scanners open links); accepting consumes the token.
    pub async fn peek_invitation(&self, token: &str) -> Result<Option<Invitation>, ControlError> {
        let Some(info) = self.peek_token(Purpose::Invite, token).await? else {
            return Ok(None);
        };
        let (Some(clinic_id), Some(email), Some(payload)) =
            (info.clinic_id, info.email, info.payload)
        else {
            return Ok(None);
        };
        let (Ok(email), Ok(payload)) = (
            Email::parse(&email),
            serde_json::from_str::<InvitePayload>(&payload),
        ) else {
            return Ok(None);
        };
        let Ok(role) = Role::parse(&payload.role) else {
            return Ok(None);
        };
        let clinic = match self.clinic_by_id(clinic_id).await {
            Ok(c) if c.status == ClinicStatus::Active => c,
            Ok(_) | Err(ControlError::NoSuchClinic(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Invitation {
            clinic,
            email,
            role,
            inviter: payload.inviter,
        }))
    }
}
