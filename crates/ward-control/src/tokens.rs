//! One-time links: random, stored hashed, expiring, single use.

use chrono::TimeDelta;
use ward_core::{ClinicId, format_time};
use ward_tenancy::db::first_row;

use crate::sessions::{random_token, token_hash};
use crate::{ControlError, ControlPlane};

/// What a one-time link is for; a token only works for its own purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Confirm an email address.
    VerifyEmail,
    /// Set a new password.
    ResetPassword,
    /// Join a clinic's staff.
    Invite,
    /// Download an export.
    Export,
    /// Finish a sign-in whose password was right by typing the second factor.
    SignInCode,
    /// Start a support session on an approved grant (`support`).
    SupportSignIn,
}

impl Purpose {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::Invite => "invite",
            Self::Export => "export",
            Self::SignInCode => "sign_in_code",
            Self::SupportSignIn => "support_sign_in",
        }
    }
}

/// A valid token's contents.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The user it was issued to, if any.
    pub user_id: Option<String>,
    /// The clinic it concerns, if any.
    pub clinic_id: Option<ClinicId>,
    /// The address it was sent to.
    pub email: Option<String>,
    /// Purpose-specific data (JSON).
    pub payload: Option<String>,
}

impl ControlPlane {
    /// Issues a token valid for `ttl`; returns the secret for the link.
    pub async fn issue_token(
        &self,
        purpose: Purpose,
        user_id: Option<&str>,
        clinic_id: Option<ClinicId>,
        email: Option<&str>,
        payload: Option<&str>,
        ttl: TimeDelta,
    ) -> Result<String, ControlError> {
        let token = random_token();
        let now = self.clock.now();
        let params = ward_tenancy::sql::params![
            token_hash(&token),
            purpose.as_str(),
            user_id.map(str::to_owned),
            clinic_id.map(|c| c.to_string()),
            email.map(str::to_owned),
            payload.map(str::to_owned),
            format_time(now),
            format_time(now + ttl)
        ];
        self.execute(
            "INSERT INTO one_time_tokens (token_hash, purpose, user_id, clinic_id, email, payload, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params,
        )
        .await?;
        Ok(token)
    }

    /// The token's contents if it is valid, without using it (for the page a link opens).
    pub async fn peek_token(
        &self,
        purpose: Purpose,
        token: &str,
    ) -> Result<Option<TokenInfo>, ControlError> {
        self.token_query(purpose, token, false).await
    }

    /// Uses the token: valid once, atomically (two concurrent uses cannot both succeed).
    pub async fn consume_token(
        &self,
        purpose: Purpose,
        token: &str,
    ) -> Result<Option<TokenInfo>, ControlError> {
        self.token_query(purpose, token, true).await
    }

    async fn token_query(
        &self,
        purpose: Purpose,
        token: &str,
        consume: bool,
    ) -> Result<Option<TokenInfo>, ControlError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let now = format_time(self.clock.now());
        let hash = token_hash(token);
        let sql = if consume {
            "UPDATE one_time_tokens SET used_at = ?3 WHERE token_hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3
             RETURNING user_id, clinic_id, email, payload"
        } else {
            "SELECT user_id, clinic_id, email, payload FROM one_time_tokens
             WHERE token_hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3"
        };
        self.with(|conn| async move {
            let Some(row) = first_row(
                &conn,
                sql,
                ward_tenancy::sql::params![hash, purpose.as_str(), now],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(TokenInfo {
                user_id: row.get(0)?,
                clinic_id: row
                    .get::<Option<String>>(1)?
                    .and_then(|c| ClinicId::parse(&c).ok()),
                email: row.get(2)?,
                payload: row.get(3)?,
            }))
        })
        .await
    }
}
