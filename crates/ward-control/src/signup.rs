//! Signup that makes nothing until the address is confirmed.
//!
//! The form's answers wait in the confirmation link's token (hashed, single use, 24 hours;
//! the password only as its hash). Confirming creates the owner's account, the clinic's
//! registry row and its database and the membership together, or none of them. An
//! unconfirmed signup leaves one token row, which the sweeper deletes once it expires.
//!
//! A form stamp (the time the form was shown, MACed with a key derived from the master
//! key) lets the signup form refuse answers sent faster than a person types, without
//! storing anything per visitor.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac as _};

use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;
use ward_core::{Actor, ClinicId, Email, Role};
use ward_tenancy::TenantStore;
use ward_tenancy::sql::Connection;

use crate::store::is_unique_violation;
use crate::{ClinicRecord, ControlError, ControlPlane, Purpose, SessionPolicy};

/// How long a confirmation link of a signup works.
pub const SIGNUP_TTL: TimeDelta = TimeDelta::hours(24);

/// What a signup form asked for, kept until the address is confirmed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingSignup {
    clinic_name: String,
    name: String,
    password_hash: String,
}

/// The first owner of a clinic being created.
#[derive(Debug, Clone)]
pub(crate) struct NewOwner {
    pub id: String,
    email: String,
    name: String,
    password_hash: String,
}

impl NewOwner {
    /// Inserts the account (confirmed) and its owner membership of `clinic`.
    pub(crate) async fn insert(
        &self,
        conn: &Connection,
        clinic: ClinicId,
        now: &str,
    ) -> Result<(), ControlError> {
        let inserted = conn
            .execute(
                "INSERT INTO users (id, email, name, password_hash, created_at, password_changed_at, email_verified_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)",
                ward_tenancy::sql::params![self.id.clone(), self.email.clone(), self.name.clone(), self.password_hash.clone(), now.to_owned()],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(ControlError::AddressTaken),
            Err(e) => return Err(e.into()),
        }
        conn.execute(
            "INSERT INTO memberships (user_id, clinic_id, role, created_at) VALUES (?1, ?2, ?3, ?4)",
            [
                self.id.clone(),
                clinic.to_string(),
                Role::Owner.as_str().to_owned(),
                now.to_owned(),
            ],
        )
        .await?;
        Ok(())
    }
}

/// What confirming a signup did.
#[derive(Debug)]
pub enum SignupOutcome {
    /// The account and the clinic exist now.
    Created {
        /// The new owner's id.
        user_id: String,
        /// The new clinic.
        clinic: ClinicRecord,
    },
    /// Someone made an account with this address in the meantime.
    AddressTaken,
    /// The token is unknown, used, expired, or not a signup's.
    NoSuchSignup,
}

/// What the sweeper deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// One-time tokens past their expiry or used (unconfirmed signups among them).
    pub tokens: u64,
    /// Sessions revoked, idle too long or past their lifetime.
    pub sessions: u64,
    /// Accounts never confirmed, older than a signup link, in no clinic.
    pub users: u64,
}

/// Used tokens are kept this long (a second click on a used link says "already used"
/// rather than "unknown"), then deleted.
const KEEP_USED: TimeDelta = TimeDelta::days(1);

impl ControlPlane {
    /// Keeps a signup's answers until `email` is confirmed; returns the link's token.
    pub async fn start_signup(
        &self,
        email: &Email,
        name: &str,
        clinic_name: &str,
        password_hash: &str,
    ) -> Result<String, ControlError> {
        let payload = serde_json::to_string(&PendingSignup {
            clinic_name: clinic_name.to_owned(),
            name: name.to_owned(),
            password_hash: password_hash.to_owned(),
        })
        .map_err(|e| ControlError::Invalid(format!("cannot keep the signup: {e}")))?;
        self.issue_token(
            Purpose::VerifyEmail,
            None,
            None,
            Some(email.as_str()),
            Some(&payload),
            SIGNUP_TTL,
        )
        .await
    }

    /// Confirms a signup: creates the owner, the clinic and its database, all or none.
    pub async fn finish_signup(
        &self,
        token: &str,
        store: &TenantStore,
    ) -> Result<SignupOutcome, ControlError> {
        let Some(info) = self.peek_token(Purpose::VerifyEmail, token).await? else {
            return Ok(SignupOutcome::NoSuchSignup);
        };
        let (Some(payload), Some(email)) = (info.payload, info.email) else {
            return Ok(SignupOutcome::NoSuchSignup);
        };
        let Ok(pending) = serde_json::from_str::<PendingSignup>(&payload) else {
            return Ok(SignupOutcome::NoSuchSignup);
        };
        // Used first: two clicks at once cannot make two clinics.
        if self
            .consume_token(Purpose::VerifyEmail, token)
            .await?
            .is_none()
        {
            return Ok(SignupOutcome::NoSuchSignup);
        }
        let owner = NewOwner {
            id: Uuid::now_v7().to_string(),
            email,
            name: pending.name,
            password_hash: pending.password_hash,
        };
        let user_id = owner.id.clone();
        let _memberships = self.cache.memberships_changing();
        match self
            .create_clinic_owned(
                &pending.clinic_name,
                None,
                store,
                &Actor::user(&user_id),
                Some(owner),
            )
            .await
        {
            Ok(clinic) => Ok(SignupOutcome::Created { user_id, clinic }),
            Err(ControlError::AddressTaken) => Ok(SignupOutcome::AddressTaken),
            Err(e) => Err(e),
        }
    }

    /// Ends every unused link of `purpose` for `user_id` (e.g. other reset links once
    /// the password was reset). Returns how many.
    pub async fn revoke_tokens(
        &self,
        user_id: &str,
        purpose: Purpose,
    ) -> Result<u64, ControlError> {
        let now = ward_core::format_time(self.clock.now());
        let user = user_id.to_owned();
        self.execute(
            "UPDATE one_time_tokens SET used_at = ?3 WHERE user_id = ?1 AND purpose = ?2 AND used_at IS NULL",
            ward_tenancy::sql::params![user, purpose.as_str(), now],
        )
        .await
    }

    /// Deletes what can no longer be used: expired or long-used tokens (unconfirmed
    /// signups included), ended sessions, and accounts never confirmed that belong to
    /// no clinic.
    pub async fn sweep(&self, policy: SessionPolicy) -> Result<Swept, ControlError> {
        let now = self.clock.now();
        let at = ward_core::format_time(now);
        let used_cut = ward_core::format_time(now - KEEP_USED);
        let idle_cut = ward_core::format_time(now - policy.idle);
        let abs_cut = ward_core::format_time(now - policy.absolute);
        let user_cut = ward_core::format_time(now - SIGNUP_TTL);
        // Noted uses first: a session used a moment ago must not be swept as idle.
        self.write_session_touches().await;
        let _sessions = self.cache.sessions_changing();
        self.transaction(|conn| async move {
            let tokens = conn
                .execute(
                    "DELETE FROM one_time_tokens WHERE expires_at <= ?1 OR used_at <= ?2",
                    [at, used_cut],
                )
                .await?;
            let sessions = conn
                .execute(
                    "DELETE FROM sessions WHERE revoked_at IS NOT NULL OR last_seen_at < ?1 OR created_at < ?2",
                    [idle_cut, abs_cut],
                )
                .await?;
            let users = conn
                .execute(
                    "DELETE FROM users WHERE email_verified_at IS NULL AND created_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id)",
                    [user_cut],
                )
                .await?;
            Ok(Swept {
                tokens,
                sessions,
                users,
            })
        })
        .await
    }

    /// A stamp of the time `at` for a form, to be sent back with it.
    pub fn form_stamp(&self, at: DateTime<Utc>) -> String {
        let secs = at.timestamp();
        format!("{secs}.{}", hex::encode(self.stamp_mac(secs)))
    }

    /// How long ago the form carrying `stamp` was shown; `None` if the stamp is not one
    /// of ours.
    pub fn form_stamp_age(&self, stamp: &str) -> Option<TimeDelta> {
        let (secs, mac) = stamp.split_once('.')?;
        let secs: i64 = secs.parse().ok()?;
        let mac = hex::decode(mac).ok()?;
        let mut m = self.stamp_hmac();
        m.update(&secs.to_be_bytes());
        m.verify_slice(&mac).ok()?;
        let shown = DateTime::from_timestamp(secs, 0)?;
        Some(self.clock.now() - shown)
    }

    fn stamp_hmac(&self) -> Hmac<Sha256> {
        self.stamp_key.clone()
    }

    fn stamp_mac(&self, secs: i64) -> Vec<u8> {
        let mut m = self.stamp_hmac();
        m.update(&secs.to_be_bytes());
        m.finalize().into_bytes().to_vec()
    }
}
