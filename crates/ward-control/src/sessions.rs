//! Sign-in sessions: an opaque random token in a cookie, only its SHA-256 stored here.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use ward_core::{format_time, parse_time};
use ward_tenancy::db::first_row;

use crate::{ControlError, ControlPlane, User};

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: TimeDelta,
    /// A session ends this long after sign-in, used or not.
    pub absolute: TimeDelta,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle: TimeDelta::hours(12),
            absolute: TimeDelta::days(30),
        }
    }
}

/// Last-seen times are written at most this often per session (a write per page view
/// would turn every read into an fsync).
const TOUCH_EVERY: TimeDelta = TimeDelta::minutes(1);

/// Noted last-seen times are written together, at most this often from the request
/// path (the app's workers also write them every second).
const WRITE_TOUCHES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Last-seen times noted by requests and not yet written: one write transaction (and
/// one fsync) for all of them instead of one per session. What is lost if the process
/// dies before they are written is a minute or two of "last seen" on the sessions page;
/// an idle timeout counted in hours does not notice.
pub(crate) struct Touches {
    /// Token hash → the newest noted use.
    pending: parking_lot::Mutex<HashMap<Vec<u8>, DateTime<Utc>>>,
    /// When they were last taken for writing (by the request path or a worker).
    written_at: parking_lot::Mutex<std::time::Instant>,
}

impl Touches {
    pub(crate) fn new() -> Self {
        Self {
            pending: parking_lot::Mutex::new(HashMap::new()),
            written_at: parking_lot::Mutex::new(std::time::Instant::now()),
        }
    }

    fn note(&self, hash: Vec<u8>, at: DateTime<Utc>) {
        let mut pending = self.pending.lock();
        let slot = pending.entry(hash).or_insert(at);
        *slot = (*slot).max(at);
    }

    /// The newest use noted for `hash` and not yet written.
    fn noted(&self, hash: &[u8]) -> Option<DateTime<Utc>> {
        self.pending.lock().get(hash).copied()
    }

    /// Whether the request path should write now: something is noted and the last
    /// write from it is old enough. Claims the write when it says yes.
    fn claim_due(&self) -> bool {
        if self.pending.lock().is_empty() {
            return false;
        }
        let mut at = self.written_at.lock();
        if at.elapsed() < WRITE_TOUCHES_EVERY {
            return false;
        }
        *at = std::time::Instant::now();
        true
    }

    /// Everything noted, for writing now; the request path then waits its turn again.
    fn take(&self) -> Vec<(Vec<u8>, DateTime<Utc>)> {
        *self.written_at.lock() = std::time::Instant::now();
        std::mem::take(&mut *self.pending.lock())
            .into_iter()
            .collect()
    }

    /// Puts back what could not be written, unless a newer use was noted meanwhile.
    fn restore(&self, batch: Vec<(Vec<u8>, DateTime<Utc>)>) {
        for (hash, at) in batch {
            self.note(hash, at);
        }
    }
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Hex SHA-256 of the token: names the session (e.g. in revoke forms), reveals nothing.
    pub id: String,
    /// The signed-in user.
    pub user: User,
    /// The token forms must carry.
    pub csrf_token: String,
    /// When the user last proved who they are (password).
    pub authenticated_at: DateTime<Utc>,
    /// When this session last proved the second factor, if it has.
    pub second_factor_at: Option<DateTime<Utc>>,
    /// Whether the user has a confirmed second factor.
    pub has_second_factor: bool,
    /// When the user's account was made.
    pub account_created_at: DateTime<Utc>,
    /// When the session began.
    pub created_at: DateTime<Utc>,
    /// The last request recorded (at most [`TOUCH_EVERY`] behind).
    pub last_seen_at: DateTime<Utc>,
}

impl Session {
    fn live(&self, now: DateTime<Utc>, policy: SessionPolicy) -> bool {
        !self.user.disabled
            && now - self.created_at <= policy.absolute
            && now - self.last_seen_at <= policy.idle
    }
}

/// A session as listed on the account page.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    /// Hex SHA-256 of the token.
    pub id: String,
    /// Sign-in time.
    pub created_at: DateTime<Utc>,
    /// Last request.
    pub last_seen_at: DateTime<Utc>,
    /// Client address at sign-in.
    pub ip: Option<String>,
    /// Browser at sign-in.
    pub user_agent: Option<String>,
}

/// A fresh random 256-bit value as 64 hex characters.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn parse_hex_id(id: &str) -> Option<Vec<u8>> {
    let bytes = hex::decode(id).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

impl ControlPlane {
    /// Starts a session for `user_id` after a password alone; returns the cookie token
    /// (never stored).
    pub async fn create_session(
        &self,
        user_id: &str,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<String, ControlError> {
        self.create_session_with(user_id, ip, user_agent, false)
            .await
    }

    /// As [`Self::create_session`]; `second_factor` when the sign-in also proved it.
    pub async fn create_session_with(
        &self,
        user_id: &str,
        ip: Option<String>,
        user_agent: Option<String>,
        second_factor: bool,
    ) -> Result<String, ControlError> {
        let token = random_token();
        let now = format_time(self.clock.now());
        let (hash, csrf, user) = (token_hash(&token), random_token(), user_id.to_owned());
        let ua = user_agent.map(|u| {
            u.chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect::<String>()
        });
        self.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, authenticated_at, last_seen_at, ip, user_agent, second_factor_at)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5, ?6, CASE WHEN ?7 THEN ?4 END)",
            ward_tenancy::sql::params![hash, user, csrf, now, ip, ua, second_factor],
        )
        .await?;
        Ok(token)
    }

    /// The live session for a cookie token, refreshing its last-seen time; `None` when
    /// unknown, revoked, idle too long, past its absolute lifetime, or its user is disabled.
    pub async fn session(
        &self,
        token: &str,
        policy: SessionPolicy,
    ) -> Result<Option<Session>, ControlError> {
        if token.len() != 64 {
            return Ok(None);
        }
        let now = self.clock.now();
        let hash = token_hash(token);
        if let Some(cached) = self.cache.sessions.get(&hash)
            && now - cached.last_seen_at <= TOUCH_EVERY
        {
            return Ok(cached.live(now, policy).then_some(cached));
        }
        let key = hash.clone();
        let touches = &self.touches;
        let found = self.with(|conn| async move {
            let row = first_row(
                &conn,
                "SELECT s.csrf_token, s.created_at, s.last_seen_at, s.authenticated_at,
                        u.id, u.email, u.name, u.password_hash, u.email_verified_at IS NOT NULL, u.disabled_at IS NOT NULL, u.password_changed_at,
                        s.second_factor_at, u.created_at,
                        EXISTS (SELECT 1 FROM totp_factors t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL)
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.revoked_at IS NULL",
                [hash.clone()],
            )?;
            let Some(row) = row else { return Ok::<_, ControlError>(None) };
            let time = |i: i32| -> Result<DateTime<Utc>, ControlError> {
                parse_time(&row.get::<String>(i)?).ok_or_else(|| ControlError::Invalid("bad session time".into()))
            };
            let (created, written, authenticated) = (time(1)?, time(2)?, time(3)?);
            // A use noted since counts as if written.
            let last_seen = touches.noted(&hash).map_or(written, |noted| noted.max(written));
            let user = User::from_row_at(&row, 4)?;
            let mut session = Session {
                id: hex::encode(&hash),
                user,
                csrf_token: row.get(0)?,
                authenticated_at: authenticated,
                second_factor_at: row.get::<Option<String>>(11)?.and_then(|t| parse_time(&t)),
                account_created_at: time(12)?,
                has_second_factor: row.get::<i64>(13)? != 0,
                created_at: created,
                last_seen_at: last_seen,
            };
            // Rows are read before the call returns, so no read transaction is left open
            // to be upgraded by the write below (which would fail at once whenever
            // another connection has committed since).
            drop(row);
            if !session.live(now, policy) {
                return Ok(None);
            }
            if now - last_seen > TOUCH_EVERY {
                touches.note(hash.clone(), now);
                session.last_seen_at = now;
            }
            Ok(Some(session))
        })
        .await?;
        if let Some(s) = &found {
            self.cache.sessions.insert(key, s.clone());
        }
        if self.touches.claim_due() {
            self.write_session_touches().await;
        }
        Ok(found)
    }

    /// Writes every last-seen time noted since the last write, in one transaction;
    /// returns how many sessions it touched. Best effort: under a burst of writes the
    /// control plane may stay locked past the busy timeout, and a missed "last seen"
    /// must not turn a page into an error; what failed is kept for the next write.
    pub async fn write_session_touches(&self) -> usize {
        let batch = self.touches.take();
        if batch.is_empty() {
            return 0;
        }
        let rows: Vec<_> = batch
            .iter()
            .map(|(hash, at)| (hash.clone(), format_time(*at)))
            .collect();
        let written = self
            .transaction(|conn| async move {
                for (hash, at) in rows {
                    conn.execute(
                        "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1 AND last_seen_at < ?2",
                        ward_tenancy::sql::params![hash, at],
                    )
                    .await?;
                }
                Ok(())
            })
            .await;
        match written {
            Ok(()) => batch.len(),
            Err(e) => {
                tracing::warn!(error = %e, sessions = batch.len(), "could not record sessions' last use; will retry");
                self.touches.restore(batch);
                0
            }
        }
    }

    /// Ends one session of `user_id` (by its id); false if there was no such live session.
    pub async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Result<bool, ControlError> {
        let Some(hash) = parse_hex_id(session_id) else {
            return Ok(false);
        };
        // Before and after the update: see `Caches::sessions_changing`.
        self.cache.sessions.invalidate(&hash);
        let _sessions = self.cache.sessions_changing();
        let now = format_time(self.clock.now());
        let user = user_id.to_owned();
        let n = self.execute(
            "UPDATE sessions SET revoked_at = ?3 WHERE token_hash = ?1 AND user_id = ?2 AND revoked_at IS NULL",
            ward_tenancy::sql::params![hash, user, now],
        )
        .await?;
        Ok(n > 0)
    }

    /// Ends every session of `user_id`, except `keep` (a session id) if given. Returns
    /// how many ended.
    pub async fn revoke_all_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<u64, ControlError> {
        let _sessions = self.cache.sessions_changing();
        let now = format_time(self.clock.now());
        let user = user_id.to_owned();
        let keep = keep.and_then(parse_hex_id).unwrap_or_default();
        self.execute(
            "UPDATE sessions SET revoked_at = ?3 WHERE user_id = ?1 AND revoked_at IS NULL AND token_hash != ?2",
            ward_tenancy::sql::params![user, keep, now],
        )
        .await
    }

    /// The user's live sessions, most recent first.
    pub async fn list_sessions(
        &self,
        user_id: &str,
        policy: SessionPolicy,
    ) -> Result<Vec<SessionSummary>, ControlError> {
        self.write_session_touches().await;
        let now = self.clock.now();
        let idle_cut = format_time(now - policy.idle);
        let abs_cut = format_time(now - policy.absolute);
        let user = user_id.to_owned();
        self.query_rows_where(
            "SELECT token_hash, created_at, last_seen_at, ip, user_agent FROM sessions
             WHERE user_id = ?1 AND revoked_at IS NULL AND last_seen_at >= ?2 AND created_at >= ?3
             ORDER BY last_seen_at DESC",
            [user, idle_cut, abs_cut],
            |row| {
                let (Some(created_at), Some(last_seen_at)) = (
                    parse_time(&row.get::<String>(1)?),
                    parse_time(&row.get::<String>(2)?),
                ) else {
                    return Ok(None);
                };
                Ok(Some(SessionSummary {
                    id: hex::encode(row.get::<Vec<u8>>(0)?),
                    created_at,
                    last_seen_at,
                    ip: row.get(3)?,
                    user_agent: row.get(4)?,
                }))
            },
        )
        .await
    }
}
