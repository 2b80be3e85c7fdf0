//! The platform's authentication log: every signup, verification, login attempt,
//! logout, password reset and session revocation.

use serde::Serialize;
use ward_core::format_time;

use crate::{ControlError, ControlPlane};

/// One authentication event, as recorded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuthEvent {
    /// What happened: `signup`, `verify_email`, `login`, `logout`, `reset_request`,
    /// `reset_complete`, `password_change`, `session_revoke`, …
    pub kind: String,
    /// The user, when known.
    pub user_id: Option<String>,
    /// The email address as typed.
    pub email: Option<String>,
    /// The client address as the rate limiter's key extractor determined it.
    pub ip: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// `ok`, `failed`, `limited`, …
    pub outcome: String,
    /// Extra detail (never a secret).
    pub detail: Option<String>,
}

impl ControlPlane {
    /// Appends one event to the auth log.
    pub async fn record_auth_event(&self, event: AuthEvent) -> Result<(), ControlError> {
        let at = format_time(self.clock.now());
        self.with(|conn| async move {
            conn.execute(
                "INSERT INTO auth_events (at, kind, user_id, email, ip, user_agent, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                libsql::params![at, event.kind, event.user_id, event.email, event.ip, event.user_agent, event.outcome, event.detail],
            )
            .await
        })
        .await?;
        Ok(())
    }
}

impl ControlPlane {
    /// The newest `limit` auth events, newest first (for the operator and tests).
    pub async fn recent_auth_events(&self, limit: u32) -> Result<Vec<AuthEvent>, ControlError> {
        self.with(|conn| async move {
            let mut rows = conn
                .query(
                    "SELECT kind, user_id, email, ip, user_agent, outcome, detail FROM auth_events ORDER BY seq DESC LIMIT ?1",
                    [limit],
                )
                .await?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().await? {
                out.push(AuthEvent {
                    kind: row.get(0)?,
                    user_id: row.get(1)?,
                    email: row.get(2)?,
                    ip: row.get(3)?,
                    user_agent: row.get(4)?,
                    outcome: row.get(5)?,
                    detail: row.get(6)?,
                });
            }
            Ok(out)
        })
        .await
    }
}
