//! A clinic's staff as the owner manages it: who belongs, in which role, joining through
//! an invitation, role changes and removal, and the clinic's display name.
//!
//! Every change is one control-plane transaction that also appends a `clinic_events`
//! row (who did what to whom), and the last-owner rule is checked inside that same
//! transaction, so two owners demoting each other at once cannot leave a clinic with
//! none.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ward_core::{Actor, ClinicId, Role, format_time, parse_time};
use ward_tenancy::db::first_row;
use ward_tenancy::sql::Connection;

use crate::clinics::clinic_row;
use crate::{ControlError, ControlPlane};

/// One member of a clinic's staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The user's id.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Login address.
    pub email: String,
    /// Role in this clinic.
    pub role: Role,
    /// When they joined.
    pub since: DateTime<Utc>,
}

/// What a role change or removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaffChange {
    /// Done; the member as they were before.
    Done(Member),
    /// Nothing changed: the role asked for is the one they have.
    Unchanged,
    /// The user is not a member of this clinic.
    NotMember,
    /// Refused: the member is the clinic's only owner.
    LastOwner,
}

const MEMBER_SQL: &str = "SELECT u.id, u.name, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id";

fn member_from_row(row: &ward_tenancy::sql::Row) -> Result<Member, ControlError> {
    let role = Role::parse(&row.get::<String>(3)?)
        .map_err(|_| ControlError::Invalid("the control plane holds an invalid role".into()))?;
    let since = parse_time(&row.get::<String>(4)?).ok_or_else(|| {
        ControlError::Invalid("the control plane holds an invalid membership time".into())
    })?;
    Ok(Member {
        user_id: row.get(0)?,
        name: row.get(1)?,
        email: row.get(2)?,
        role,
        since,
    })
}

async fn member_in(
    conn: &Connection,
    clinic: ClinicId,
    user_id: &str,
) -> Result<Option<Member>, ControlError> {
    let sql = format!("{MEMBER_SQL} WHERE m.clinic_id = ?1 AND m.user_id = ?2");
    match first_row(conn, &sql, [clinic.to_string(), user_id.to_owned()])? {
        Some(row) => Ok(Some(member_from_row(&row)?)),
        None => Ok(None),
    }
}

/// Member `user_id` of `clinic` as they are before their role becomes `to` (`None`:
/// they leave), or why that is refused: they are not a member, nothing would change,
/// or the clinic would lose its last owner.
async fn member_to_change(
    conn: &Connection,
    clinic: ClinicId,
    user_id: &str,
    to: Option<Role>,
) -> Result<Result<Member, StaffChange>, ControlError> {
    let Some(before) = member_in(conn, clinic, user_id).await? else {
        return Ok(Err(StaffChange::NotMember));
    };
    if Some(before.role) == to {
        return Ok(Err(StaffChange::Unchanged));
    }
    if before.role == Role::Owner && owners_in(conn, clinic).await? <= 1 {
        return Ok(Err(StaffChange::LastOwner));
    }
    Ok(Ok(before))
}

async fn owners_in(conn: &Connection, clinic: ClinicId) -> Result<u64, ControlError> {
    let row = first_row(
        conn,
        "SELECT count(*) FROM memberships WHERE clinic_id = ?1 AND role = 'owner'",
        [clinic.to_string()],
    )?;
    Ok(row.map(|r| r.get::<u64>(0)).transpose()?.unwrap_or(0))
}

pub(crate) async fn clinic_event(
    conn: &Connection,
    clinic: ClinicId,
    at: &str,
    kind: &str,
    actor: &Actor,
    detail: serde_json::Value,
) -> Result<(), ControlError> {
    insert_clinic_event(conn, clinic, at, kind, actor, Some(&detail.to_string())).await
}

/// Appends one event to clinic `clinic`'s lifecycle and staff history, on `conn`.
pub(crate) async fn insert_clinic_event(
    conn: &Connection,
    clinic: ClinicId,
    at: &str,
    kind: &str,
    actor: &Actor,
    detail: Option<&str>,
) -> Result<(), ControlError> {
    conn.execute(
        "INSERT INTO clinic_events (clinic_id, at, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        ward_tenancy::sql::params![clinic.to_string(), at, kind, actor.to_string(), detail],
    )
    .await?;
    Ok(())
}

impl ControlPlane {
    /// The clinic's staff, by name.
    pub async fn clinic_members(&self, clinic_id: ClinicId) -> Result<Vec<Member>, ControlError> {
        let sql =
            format!("{MEMBER_SQL} WHERE m.clinic_id = ?1 ORDER BY u.name COLLATE NOCASE, u.id");
        self.query_rows(&sql, [clinic_id.to_string()], member_from_row)
            .await
    }

    /// One member of the clinic, if `user_id` is one.
    pub async fn clinic_member(
        &self,
        clinic_id: ClinicId,
        user_id: &str,
    ) -> Result<Option<Member>, ControlError> {
        let user = user_id.to_owned();
        self.with(|conn| async move { member_in(&conn, clinic_id, &user).await })
            .await
    }

    /// How many owners the clinic has.
    pub async fn count_owners(&self, clinic_id: ClinicId) -> Result<u64, ControlError> {
        self.with(|conn| async move { owners_in(&conn, clinic_id).await })
            .await
    }

    /// Adds `user_id` to the clinic's staff with `role` (accepting an invitation).
    /// Someone already on the staff keeps the role they have: an invitation never
    /// changes a role (it could otherwise demote the last owner). Returns whether they
    /// joined now. `actor` names who caused it (`user:<id>`).
    pub async fn join_clinic(
        &self,
        clinic_id: ClinicId,
        user_id: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<bool, ControlError> {
        let _memberships = self.cache.memberships_changing();
        let now = format_time(self.clock.now());
        let (user, actor) = (user_id.to_owned(), actor.clone());
        self.transaction(|conn| async move {
            let n = conn
                .execute(
                    "INSERT INTO memberships (user_id, clinic_id, role, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id, clinic_id) DO NOTHING",
                    [user.clone(), clinic_id.to_string(), role.as_str().to_owned(), now.clone()],
                )
                .await?;
            if n > 0 {
                clinic_event(
                    &conn,
                    clinic_id,
                    &now,
                    "staff_joined",
                    &actor,
                    serde_json::json!({"user_id": user, "role": role.as_str()}),
                )
                .await?;
            }
            Ok(n > 0)
        })
        .await
    }

    /// Gives a member a new role. Refuses to demote the clinic's last owner.
    pub async fn change_role(
        &self,
        clinic_id: ClinicId,
        user_id: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<StaffChange, ControlError> {
        let _memberships = self.cache.memberships_changing();
        self.change_member(clinic_id, user_id, Some(role), actor)
            .await
    }

    /// Removes a member from the clinic and ends every one of their sessions, in one
    /// transaction: from the next request on they have no access. Refuses to remove the
    /// clinic's last owner.
    pub async fn remove_member(
        &self,
        clinic_id: ClinicId,
        user_id: &str,
        actor: &Actor,
    ) -> Result<StaffChange, ControlError> {
        let _memberships = self.cache.memberships_changing();
        let _sessions = self.cache.sessions_changing();
        self.change_member(clinic_id, user_id, None, actor).await
    }

    /// Gives member `user_id` role `to` (`None`: removes them and ends their sessions)
    /// and records it, in one transaction, unless [`member_to_change`] refuses.
    async fn change_member(
        &self,
        clinic_id: ClinicId,
        user_id: &str,
        to: Option<Role>,
        actor: &Actor,
    ) -> Result<StaffChange, ControlError> {
        let now = format_time(self.clock.now());
        let (user, actor) = (user_id.to_owned(), actor.clone());
        self.transaction(|conn| async move {
            let before = match member_to_change(&conn, clinic_id, &user, to).await? {
                Ok(before) => before,
                Err(refused) => return Ok(refused),
            };
            let (kind, detail) = match to {
                Some(role) => {
                    conn.execute(
                        "UPDATE memberships SET role = ?3 WHERE clinic_id = ?1 AND user_id = ?2",
                        [clinic_id.to_string(), user.clone(), role.as_str().to_owned()],
                    )
                    .await?;
                    (
                        "staff_role_changed",
                        serde_json::json!({"user_id": user, "from": before.role.as_str(), "to": role.as_str()}),
                    )
                }
                None => {
                    conn.execute(
                        "DELETE FROM memberships WHERE clinic_id = ?1 AND user_id = ?2",
                        [clinic_id.to_string(), user.clone()],
                    )
                    .await?;
                    // Sessions are per user, not per clinic: ending them all is what
                    // guarantees that no page already open keeps working (the same as
                    // revoke_all_sessions).
                    conn.execute(
                        "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
                        [user.clone(), now.clone()],
                    )
                    .await?;
                    (
                        "staff_removed",
                        serde_json::json!({"user_id": user, "role": before.role.as_str()}),
                    )
                }
            };
            clinic_event(&conn, clinic_id, &now, kind, &actor, detail).await?;
            Ok(StaffChange::Done(before))
        })
        .await
    }

    /// Renames the clinic (its slug, and so its addresses, stay). Returns the old name.
    pub async fn rename_clinic(
        &self,
        clinic_id: ClinicId,
        name: &str,
        actor: &Actor,
    ) -> Result<String, ControlError> {
        let _clinics = self.cache.memberships_changing();
        let name = crate::clinics::clinic_name(name)?.to_owned();
        let now = format_time(self.clock.now());
        let actor = actor.clone();
        self.transaction(|conn| async move {
            let row = clinic_row(&conn, "SELECT name FROM clinics WHERE id = ?1", clinic_id)?;
            let old: String = row.get(0)?;
            if old != name {
                conn.execute(
                    "UPDATE clinics SET name = ?2 WHERE id = ?1",
                    [clinic_id.to_string(), name.clone()],
                )
                .await?;
                clinic_event(
                    &conn,
                    clinic_id,
                    &now,
                    "renamed",
                    &actor,
                    serde_json::json!({"from": old, "to": name}),
                )
                .await?;
            }
            Ok(old)
        })
        .await
    }

    /// The clinic's lifecycle and staff events, newest first, as (time, kind, actor,
    /// detail).
    pub async fn clinic_events(
        &self,
        clinic_id: ClinicId,
        limit: u32,
    ) -> Result<Vec<(DateTime<Utc>, String, String, Option<String>)>, ControlError> {
        self.query_rows_where(
            "SELECT at, kind, actor, detail FROM clinic_events WHERE clinic_id = ?1 ORDER BY seq DESC LIMIT ?2",
            ward_tenancy::sql::params![clinic_id.to_string(), limit],
            |row| {
                let Some(at) = parse_time(&row.get::<String>(0)?) else {
                    return Ok(None);
                };
                Ok(Some((at, row.get(1)?, row.get(2)?, row.get(3)?)))
            },
        )
        .await
    }
}

impl ControlPlane {
    /// Appends one event to the clinic's lifecycle and staff history (an invitation
    /// sent, …). `detail` is JSON and never holds a secret.
    pub async fn record_clinic_event(
        &self,
        clinic_id: ClinicId,
        kind: &str,
        actor: &Actor,
        detail: serde_json::Value,
    ) -> Result<(), ControlError> {
        let now = format_time(self.clock.now());
        let (kind, actor) = (kind.to_owned(), actor.clone());
        self.with(|conn| async move {
            clinic_event(&conn, clinic_id, &now, &kind, &actor, detail).await
        })
        .await
    }
}

/// An invitation sent and not yet used, withdrawn or expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingInvite {
    /// Names the invitation for withdrawing it (hex of the stored token hash; the
    /// link's secret itself is never stored).
    pub id: String,
    /// The invited address.
    pub email: String,
    /// The role offered.
    pub role: Role,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

impl ControlPlane {
    /// The clinic's open invitations, soonest to expire first.
    pub async fn pending_invites(
        &self,
        clinic_id: ClinicId,
    ) -> Result<Vec<PendingInvite>, ControlError> {
        let now = format_time(self.clock.now());
        self.query_rows_where(
            "SELECT token_hash, email, payload, expires_at FROM one_time_tokens
             WHERE purpose = 'invite' AND clinic_id = ?1 AND used_at IS NULL AND expires_at > ?2
             ORDER BY expires_at",
            [clinic_id.to_string(), now],
            |row| {
                let payload: Option<String> = row.get(2)?;
                let role = payload
                    .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
                    .and_then(|v| v.get("role").and_then(|r| r.as_str()).map(str::to_owned))
                    .and_then(|r| Role::parse(&r).ok());
                let (Some(role), Some(expires_at)) = (role, parse_time(&row.get::<String>(3)?))
                else {
                    return Ok(None);
                };
                Ok(Some(PendingInvite {
                    id: hex::encode(row.get::<Vec<u8>>(0)?),
                    email: row.get::<Option<String>>(1)?.unwrap_or_default(),
                    role,
                    expires_at,
                }))
            },
        )
        .await
    }

    /// Withdraws an open invitation of this clinic: its link stops working. Returns the
    /// invited address, or `None` if there was no such open invitation.
    pub async fn withdraw_invite(
        &self,
        clinic_id: ClinicId,
        id: &str,
    ) -> Result<Option<String>, ControlError> {
        let Some(hash) = hex::decode(id).ok().filter(|b| b.len() == 32) else {
            return Ok(None);
        };
        let now = format_time(self.clock.now());
        self.with(|conn| async move {
            let row = first_row(
                &conn,
                "UPDATE one_time_tokens SET used_at = ?3
                 WHERE token_hash = ?1 AND purpose = 'invite' AND clinic_id = ?2 AND used_at IS NULL AND expires_at > ?3
                 RETURNING email",
                ward_tenancy::sql::params![hash, clinic_id.to_string(), now],
            )?;
            Ok(row.map(|r| r.get::<Option<String>>(0)).transpose()?.flatten())
        })
        .await
    }
}
