//! Support access: the operator looks at one clinic for a few minutes, with its owners'
//! approval (or, on the emergency path, telling them at once), through a session that
//! belongs to no user account and reaches no other clinic.
//!
//! A grant goes `requested` → `approved` (or `refused`) → `active` once its one sign-in
//! link is used → `ended` (owner or operator) or `expired` (its time is up). The window
//! opens at approval and closes `minutes` later whether or not the link was used. The
//! clinic's audit rows for each step are written by the callers (they hold the clinic).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use ward_core::{ClinicId, format_time, parse_time};
use ward_tenancy::db::first_row;
use ward_tenancy::sql::Row;

use crate::sessions::{random_token, token_hash};
use crate::{ControlError, ControlPlane, Purpose};

/// The longest a support session may last.
pub const MAX_MINUTES: u32 = 30;

/// How long a sign-in link works (never past the grant's end).
pub const LINK_TTL: TimeDelta = TimeDelta::minutes(10);

/// A request no owner answers within this long lapses.
pub const REQUEST_TTL: TimeDelta = TimeDelta::hours(24);

/// Longest reason kept, in characters.
const MAX_REASON_CHARS: usize = 500;

/// Where a grant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Waiting for an owner.
    Requested,
    /// Approved (or opened, read only, on the emergency path); the link is not used yet.
    Approved,
    /// Its session has started.
    Active,
    /// Ended before its time by an owner or the operator.
    Ended,
    /// An owner said no.
    Refused,
    /// Its time ran out (or the request was never answered).
    Expired,
}

impl GrantState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Refused => "refused",
            Self::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Requested,
            Self::Approved,
            Self::Active,
            Self::Ended,
            Self::Refused,
            Self::Expired,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

impl std::fmt::Display for GrantState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One support grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// Its number.
    pub id: i64,
    /// The one clinic it opens.
    pub clinic_id: ClinicId,
    /// Who at the operator's end.
    pub operator: String,
    /// Why, in the operator's words.
    pub reason: String,
    /// How long the window is.
    pub minutes: u32,
    /// The operator asked to make changes.
    pub write_requested: bool,
    /// Changes are allowed (only ever by an owner's approval).
    pub write_allowed: bool,
    /// Opened without approval.
    pub emergency: bool,
    /// Where it is in its life (as stored; see [`Grant::open_at`]).
    pub state: GrantState,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// Who approved or refused it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// When the window opened.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it closes.
    pub ends_at: Option<DateTime<Utc>>,
    /// When it ended (early, or by time).
    pub ended_at: Option<DateTime<Utc>>,
    /// Who ended it.
    pub ended_by: Option<String>,
    /// Why.
    pub ended_reason: Option<String>,
}

impl Grant {
    /// Whether the window is open at `now` (approved or active, time left).
    pub fn open_at(&self, now: DateTime<Utc>) -> bool {
        matches!(self.state, GrantState::Approved | GrantState::Active)
            && self.ends_at.is_some_and(|end| end > now)
    }

    /// Whether it is still waiting for an owner at `now`.
    pub fn pending_at(&self, now: DateTime<Utc>) -> bool {
        self.state == GrantState::Requested && now - self.requested_at < REQUEST_TTL
    }
}

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct NewGrant<'a> {
    /// The clinic.
    pub clinic_id: ClinicId,
    /// Who is asking.
    pub operator: &'a str,
    /// Why.
    pub reason: &'a str,
    /// For how long (1 to [`MAX_MINUTES`]).
    pub minutes: u32,
    /// To make changes, not only look.
    pub write: bool,
    /// Without waiting for approval.
    pub emergency: bool,
}

/// A live support session and its grant.
#[derive(Debug, Clone)]
pub struct SupportSession {
    /// Hex SHA-256 of the cookie token.
    pub id: String,
    /// The token forms must carry.
    pub csrf_token: String,
    /// The grant (active, time left).
    pub grant: Grant,
}

/// Why no sign-in link was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefused {
    /// No such grant.
    Unknown,
    /// Not approved yet.
    NotApproved,
    /// Its session has started: the link was used.
    AlreadyUsed,
    /// Over: refused, ended or expired.
    Over,
}

const GRANT_COLUMNS: &str = "id, clinic_id, operator, reason, minutes, write_requested, write_allowed, emergency, state, requested_at, decided_by, decided_at, starts_at, ends_at, ended_at, ended_by, ended_reason";

fn grant_from_row(row: &Row) -> Result<Grant, ControlError> {
    let bad = |what: &str| ControlError::Invalid(format!("the control plane holds a bad {what}"));
    let time = |i: usize| -> Result<Option<DateTime<Utc>>, ControlError> {
        match row.get::<Option<String>>(i as i32)? {
            Some(t) => parse_time(&t).map(Some).ok_or_else(|| bad("support time")),
            None => Ok(None),
        }
    };
    Ok(Grant {
        id: row.get(0)?,
        clinic_id: ClinicId::parse(&row.get::<String>(1)?).map_err(|_| bad("clinic id"))?,
        operator: row.get(2)?,
        reason: row.get(3)?,
        minutes: u32::try_from(row.get::<i64>(4)?).map_err(|_| bad("support length"))?,
        write_requested: row.get::<i64>(5)? != 0,
        write_allowed: row.get::<i64>(6)? != 0,
        emergency: row.get::<i64>(7)? != 0,
        state: GrantState::parse(&row.get::<String>(8)?).ok_or_else(|| bad("support state"))?,
        requested_at: time(9)?.ok_or_else(|| bad("support time"))?,
        decided_by: row.get(10)?,
        decided_at: time(11)?,
        starts_at: time(12)?,
        ends_at: time(13)?,
        ended_at: time(14)?,
        ended_by: row.get(15)?,
        ended_reason: row.get(16)?,
    })
}

/// The grant's number from a sign-in link's payload.
fn grant_of_payload(payload: Option<&str>) -> Option<i64> {
    payload?.strip_prefix("grant:")?.parse().ok()
}

impl ControlPlane {
    /// Records the operator's request. Refused (with a sentence saying why) when the
    /// length or reason is not acceptable or the clinic already has one open. On the
    /// emergency path the window opens at once.
    pub async fn request_support(&self, new: NewGrant<'_>) -> Result<Grant, ControlError> {
        if !(1..=MAX_MINUTES).contains(&new.minutes) {
            return Err(ControlError::Invalid(format!(
                "a support session lasts 1 to {MAX_MINUTES} minutes, not {}",
                new.minutes
            )));
        }
        if new.emergency && new.write {
            return Err(ControlError::Invalid(
                "an emergency support session is read only: changes need an owner's approval"
                    .into(),
            ));
        }
        let reason: String = new.reason.trim().chars().take(MAX_REASON_CHARS).collect();
        if reason.is_empty() {
            return Err(ControlError::Invalid(
                "a support session needs a reason the clinic's owners can read".into(),
            ));
        }
        let operator = new.operator.trim().to_owned();
        if operator.is_empty() {
            return Err(ControlError::Invalid(
                "the operator's name is missing".into(),
            ));
        }
        let now = self.clock.now();
        let (state, decided_by, starts, ends) = if new.emergency {
            let end = now + TimeDelta::minutes(i64::from(new.minutes));
            (
                GrantState::Approved,
                Some("emergency (no approval)".to_owned()),
                Some(format_time(now)),
                Some(format_time(end)),
            )
        } else {
            (GrantState::Requested, None, None, None)
        };
        let decided_at = decided_by.as_ref().map(|_| format_time(now));
        let (clinic, at) = (new.clinic_id.to_string(), format_time(now));
        let stale = format_time(now - REQUEST_TTL);
        let (minutes, write, emergency) = (new.minutes, new.write, new.emergency);
        let sql = format!(
            "INSERT INTO support_grants (clinic_id, operator, reason, minutes, write_requested, write_allowed, emergency, state, requested_at, decided_by, decided_at, starts_at, ends_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING {GRANT_COLUMNS}"
        );
        let _support = self.cache.support_changing();
        self.transaction(|conn| async move {
            let open = first_row(
                &conn,
                "SELECT id FROM support_grants WHERE clinic_id = ?1 AND
                   ((state IN ('approved', 'active') AND ends_at > ?2) OR (state = 'requested' AND requested_at > ?3))",
                [clinic.clone(), at.clone(), stale],
            )?;
            if let Some(row) = open {
                let id: i64 = row.get(0)?;
                return Err(ControlError::Invalid(format!(
                    "the clinic already has an open support grant (#{id}); end it first with `ward support end --grant {id}`"
                )));
            }
            let row = first_row(
                &conn,
                &sql,
                ward_tenancy::sql::params![
                    clinic,
                    operator,
                    reason,
                    i64::from(minutes),
                    write,
                    emergency,
                    state.as_str(),
                    at,
                    decided_by,
                    decided_at,
                    starts,
                    ends
                ],
            )?
            .ok_or_else(|| ControlError::Invalid("the grant was not stored".into()))?;
            grant_from_row(&row)
        })
        .await
    }

    /// One grant.
    pub async fn support_grant(&self, id: i64) -> Result<Option<Grant>, ControlError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM support_grants WHERE id = ?1");
        self.query_row(&sql, [id], grant_from_row).await
    }

    /// A clinic's grants, newest first (at most `limit`).
    pub async fn support_grants(
        &self,
        clinic: ClinicId,
        limit: u32,
    ) -> Result<Vec<Grant>, ControlError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM support_grants WHERE clinic_id = ?1 ORDER BY id DESC LIMIT ?2"
        );
        self.query_rows(
            &sql,
            ward_tenancy::sql::params![clinic.to_string(), i64::from(limit)],
            grant_from_row,
        )
        .await
    }

    /// Marks every grant whose time is up (or whose request went unanswered) as expired,
    /// in `clinic` or everywhere; returns those it marked, so each gets its audit row
    /// exactly once.
    pub async fn expire_support(
        &self,
        clinic: Option<ClinicId>,
    ) -> Result<Vec<Grant>, ControlError> {
        let now = self.clock.now();
        let (at, stale) = (format_time(now), format_time(now - REQUEST_TTL));
        let clinic = clinic.map(|c| c.to_string());
        let sql = format!(
            "UPDATE support_grants SET state = 'expired', ended_at = coalesce(ends_at, ?1), ended_by = 'time'
             WHERE (?3 IS NULL OR clinic_id = ?3)
               AND ((state IN ('approved', 'active') AND ends_at <= ?1) OR (state = 'requested' AND requested_at <= ?2))
             RETURNING {GRANT_COLUMNS}"
        );
        let _support = self.cache.support_changing();
        self.query_rows(
            &sql,
            ward_tenancy::sql::params![at, stale, clinic],
            grant_from_row,
        )
        .await
    }

    /// An owner's answer to a pending request of `clinic`: approve (changes allowed or
    /// not) or refuse. `None` when there is no such pending request.
    pub async fn decide_support(
        &self,
        clinic: ClinicId,
        id: i64,
        owner: &str,
        approve: bool,
        allow_changes: bool,
    ) -> Result<Option<Grant>, ControlError> {
        let now = self.clock.now();
        let (at, stale) = (format_time(now), format_time(now - REQUEST_TTL));
        let sql = format!(
            "UPDATE support_grants SET
                state = CASE WHEN ?4 THEN 'approved' ELSE 'refused' END,
                decided_by = ?3, decided_at = ?5,
                write_allowed = ?4 AND ?6,
                starts_at = CASE WHEN ?4 THEN ?5 END,
                ends_at = CASE WHEN ?4 THEN ?8 END,
                ended_at = CASE WHEN ?4 THEN NULL ELSE ?5 END,
                ended_by = CASE WHEN ?4 THEN NULL ELSE ?3 END
             WHERE id = ?1 AND clinic_id = ?2 AND state = 'requested' AND requested_at > ?7
             RETURNING {GRANT_COLUMNS}"
        );
        let Some(grant) = self.support_grant(id).await? else {
            return Ok(None);
        };
        let ends = format_time(now + TimeDelta::minutes(i64::from(grant.minutes)));
        let (clinic, owner) = (clinic.to_string(), owner.to_owned());
        let _support = self.cache.support_changing();
        self.query_row(
            &sql,
            ward_tenancy::sql::params![id, clinic, owner, approve, at, allow_changes, stale, ends],
            grant_from_row,
        )
        .await
    }

    /// Ends grant `id` (in `clinic`, when the caller is that clinic's owner) before its
    /// time: a pending request is withdrawn, an open window closes and its session stops
    /// at the next request. `None` when it was not open.
    pub async fn end_support(
        &self,
        id: i64,
        clinic: Option<ClinicId>,
        by: &str,
        why: &str,
    ) -> Result<Option<Grant>, ControlError> {
        let at = format_time(self.clock.now());
        let sql = format!(
            "UPDATE support_grants SET state = 'ended', ended_at = ?3, ended_by = ?4, ended_reason = ?5
             WHERE id = ?1 AND (?2 IS NULL OR clinic_id = ?2)
               AND (state = 'requested' OR (state IN ('approved', 'active') AND ends_at > ?3))
             RETURNING {GRANT_COLUMNS}"
        );
        let clinic = clinic.map(|c| c.to_string());
        let (by, why) = (by.to_owned(), why.trim().to_owned());
        let _support = self.cache.support_changing();
        self.query_row(
            &sql,
            ward_tenancy::sql::params![id, clinic, at, by, why],
            grant_from_row,
        )
        .await
    }

    /// A one-time sign-in link's token for an approved grant whose session has not
    /// started, valid for [`LINK_TTL`] (never past the grant's end).
    pub async fn issue_support_link(
        &self,
        id: i64,
    ) -> Result<Result<(String, DateTime<Utc>), LinkRefused>, ControlError> {
        let now = self.clock.now();
        let Some(grant) = self.support_grant(id).await? else {
            return Ok(Err(LinkRefused::Unknown));
        };
        match grant.state {
            GrantState::Requested => return Ok(Err(LinkRefused::NotApproved)),
            GrantState::Active => return Ok(Err(LinkRefused::AlreadyUsed)),
            GrantState::Ended | GrantState::Refused | GrantState::Expired => {
                return Ok(Err(LinkRefused::Over));
            }
            GrantState::Approved => {}
        }
        let Some(end) = grant.ends_at.filter(|end| *end > now) else {
            return Ok(Err(LinkRefused::Over));
        };
        let ttl = LINK_TTL.min(end - now);
        let token = self
            .issue_token(
                Purpose::SupportSignIn,
                None,
                Some(grant.clinic_id),
                None,
                Some(&format!("grant:{}", grant.id)),
                ttl,
            )
            .await?;
        Ok(Ok((token, now + ttl)))
    }

    /// The grant a sign-in link would open, without using the link: `None` unless the
    /// link is valid and its grant approved, unused and open.
    pub async fn support_link_grant(&self, token: &str) -> Result<Option<Grant>, ControlError> {
        let Some(info) = self.peek_token(Purpose::SupportSignIn, token).await? else {
            return Ok(None);
        };
        let Some(id) = grant_of_payload(info.payload.as_deref()) else {
            return Ok(None);
        };
        let now = self.clock.now();
        Ok(self
            .support_grant(id)
            .await?
            .filter(|g| g.state == GrantState::Approved && g.open_at(now)))
    }

    /// Uses a sign-in link: the grant becomes active and a support session starts.
    /// Returns the cookie token (never stored) and the grant; `None` when the link is
    /// unknown, used, expired, or its grant is no longer approved.
    pub async fn start_support_session(
        &self,
        token: &str,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<Option<(String, Grant)>, ControlError> {
        let Some(info) = self.consume_token(Purpose::SupportSignIn, token).await? else {
            return Ok(None);
        };
        let Some(id) = grant_of_payload(info.payload.as_deref()) else {
            return Ok(None);
        };
        let cookie = random_token();
        let (hash, csrf) = (token_hash(&cookie), random_token());
        let at = format_time(self.clock.now());
        let ua = user_agent.map(|u| {
            u.chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect::<String>()
        });
        let sql = format!(
            "UPDATE support_grants SET state = 'active' WHERE id = ?1 AND state = 'approved' AND ends_at > ?2
             RETURNING {GRANT_COLUMNS}"
        );
        let _support = self.cache.support_changing();
        let grant = self
            .transaction(|conn| async move {
                let Some(row) = first_row(&conn, &sql, ward_tenancy::sql::params![id, at.clone()])?
                else {
                    return Ok(None);
                };
                let grant = grant_from_row(&row)?;
                drop(row);
                conn.execute(
                    "INSERT INTO support_sessions (token_hash, grant_id, csrf_token, created_at, ip, user_agent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    ward_tenancy::sql::params![hash, id, csrf, at, ip, ua],
                )
                .await?;
                Ok(Some(grant))
            })
            .await?;
        Ok(grant.map(|g| (cookie, g)))
    }

    /// The live support session for a cookie token: its grant active and its time not
    /// up. Read afresh on every request (never cached), so ending a grant takes effect
    /// at once.
    pub async fn support_session(
        &self,
        token: &str,
    ) -> Result<Option<SupportSession>, ControlError> {
        if token.len() != 64 {
            return Ok(None);
        }
        let hash = token_hash(token);
        let at = format_time(self.clock.now());
        let columns = ward_tenancy::sql::qualified("g", GRANT_COLUMNS);
        let sql = format!(
            "SELECT {columns}, s.csrf_token FROM support_sessions s JOIN support_grants g ON g.id = s.grant_id
             WHERE s.token_hash = ?1 AND g.state = 'active' AND g.ends_at > ?2"
        );
        self.with(|conn| async move {
            let Some(row) = first_row(&conn, &sql, ward_tenancy::sql::params![hash.clone(), at])?
            else {
                return Ok(None);
            };
            Ok(Some(SupportSession {
                id: hex::encode(&hash),
                csrf_token: row.get(17)?,
                grant: grant_from_row(&row)?,
            }))
        })
        .await
    }

    /// What the owners' pages say: requests waiting for an answer and the open window,
    /// if any.
    pub async fn support_notice(
        &self,
        clinic: ClinicId,
    ) -> Result<(Vec<Grant>, Option<Grant>), ControlError> {
        let now = self.clock.now();
        let grants = match self.cache.support_notices.get(&clinic) {
            Some(hit) => hit,
            None => {
                let read = Arc::new(self.notice_grants(clinic, now).await?);
                self.cache.support_notices.insert(clinic, read.clone());
                read
            }
        };
        // A grant only ever leaves the notice as time passes (a request goes stale, a
        // window closes), so a cached list filtered by the clock again is exact.
        let (pending, open): (Vec<Grant>, Vec<Grant>) = grants
            .iter()
            .filter(|g| g.pending_at(now) || g.open_at(now))
            .cloned()
            .partition(|g| g.state == GrantState::Requested);
        Ok((pending, open.into_iter().next_back()))
    }

    /// The grants of `clinic` an owner's pages mention at `now`, oldest first.
    async fn notice_grants(
        &self,
        clinic: ClinicId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, ControlError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM support_grants
             WHERE clinic_id = ?1 AND ((state = 'requested' AND requested_at > ?2) OR (state IN ('approved', 'active') AND ends_at > ?3))
             ORDER BY id"
        );
        let (stale, at) = (format_time(now - REQUEST_TTL), format_time(now));
        self.query_rows(
            &sql,
            ward_tenancy::sql::params![clinic.to_string(), stale, at],
            grant_from_row,
        )
        .await
    }
}
