//! People and their memberships in clinics.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use ward_core::{ClinicId, ClinicStatus, Email, Role, format_time, parse_time};
use ward_tenancy::db::first_row;
use ward_tenancy::sql::Row;

use crate::store::is_unique_violation;
use crate::{ClinicRecord, ControlError, ControlPlane};

/// A person with a login.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Permanent id (UUID v7 text).
    pub id: String,
    /// Login address, lowercase.
    pub email: String,
    /// Display name.
    pub name: String,
    /// The bcrypt hash; never leaves the server.
    #[serde(skip)]
    pub password_hash: String,
    /// Whether the address was confirmed.
    pub email_verified: bool,
    /// Whether an operator disabled the account.
    pub disabled: bool,
    /// When the password last changed.
    pub password_changed_at: Option<DateTime<Utc>>,
}

const USER_COLUMNS: &str = "id, email, name, password_hash, email_verified_at IS NOT NULL, disabled_at IS NOT NULL, password_changed_at";

impl User {
    fn from_row(row: &Row) -> Result<Self, ControlError> {
        Self::from_row_at(row, 0)
    }

    /// Reads a user from the row's columns `first..first + 7`: `id, email, name,
    /// password_hash, email_verified_at IS NOT NULL, disabled_at IS NOT NULL,
    /// password_changed_at`.
    pub(crate) fn from_row_at(row: &Row, first: i32) -> Result<Self, ControlError> {
        Ok(Self {
            id: row.get(first)?,
            email: row.get(first + 1)?,
            name: row.get(first + 2)?,
            password_hash: row.get(first + 3)?,
            email_verified: row.get::<i64>(first + 4)? != 0,
            disabled: row.get::<i64>(first + 5)? != 0,
            password_changed_at: row
                .get::<Option<String>>(first + 6)?
                .and_then(|t| parse_time(&t)),
        })
    }
}

/// A clinic a user belongs to, and their role there.
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    /// The clinic.
    pub clinic: ClinicRecord,
    /// The user's role in it.
    pub role: Role,
}

/// Validates a person's display name: 1 to 100 characters, one line.
pub fn parse_person_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Enter your name.");
    }
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err("A name is at most 100 characters, on one line.");
    }
    Ok(name.to_owned())
}

impl ControlPlane {
    /// Creates an unverified user. `Ok(None)` if the address is already registered.
    pub async fn create_user(
        &self,
        email: &Email,
        name: &str,
        password_hash: &str,
    ) -> Result<Option<User>, ControlError> {
        let id = Uuid::now_v7().to_string();
        let now = format_time(self.clock.now());
        let (email_s, name_s, hash_s, id_s) = (
            email.to_string(),
            name.to_owned(),
            password_hash.to_owned(),
            id.clone(),
        );
        let inserted = self
            .with(|conn| async move {
                conn.execute(
                    "INSERT INTO users (id, email, name, password_hash, created_at, password_changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    ward_tenancy::sql::params![id_s, email_s, name_s, hash_s, now],
                )
                .await
            })
            .await;
        match inserted {
            Ok(_) => {
                Ok(Some(self.user_by_id(&id).await?.ok_or_else(|| {
                    ControlError::Invalid("user vanished".into())
                })?))
            }
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a user that never became usable (signup that could not finish).
    pub async fn delete_unverified_user(&self, id: &str) -> Result<(), ControlError> {
        let id = id.to_owned();
        self.execute(
            "DELETE FROM users WHERE id = ?1 AND email_verified_at IS NULL",
            [id],
        )
        .await?;
        Ok(())
    }

    /// The user with this address (case-insensitive).
    pub async fn user_by_email(&self, email: &Email) -> Result<Option<User>, ControlError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1");
        let email = email.to_string();
        self.query_row(&sql, [email], User::from_row).await
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, ControlError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
        let id = id.to_owned();
        self.query_row(&sql, [id], User::from_row).await
    }

    /// Marks the user's address as confirmed.
    pub async fn mark_email_verified(&self, user_id: &str) -> Result<(), ControlError> {
        let now = format_time(self.clock.now());
        let id = user_id.to_owned();
        self.execute(
            "UPDATE users SET email_verified_at = coalesce(email_verified_at, ?2) WHERE id = ?1",
            [id, now],
        )
        .await?;
        Ok(())
    }

    /// How many password hashes name the pepper `current_id`, and how many another (an
    /// older pepper, or none: made before hashes named theirs).
    pub async fn password_peppers(&self, current_id: &str) -> Result<(u64, u64), ControlError> {
        let hashes: Vec<String> = self
            .with(|conn| async move {
                let mut out = Vec::new();
                conn.for_each_row("SELECT password_hash FROM users", (), |row| {
                    out.push(row.get::<String>(0)?);
                    Ok::<_, ControlError>(())
                })?;
                Ok::<_, ControlError>(out)
            })
            .await?;
        let current = hashes
            .iter()
            .filter(|h| crate::passwords::split_hash(h).0 == Some(current_id))
            .count() as u64;
        Ok((current, hashes.len() as u64 - current))
    }

    /// Replaces a hash made under an older pepper by `new_hash` of the same password
    /// (after a successful sign-in): no session ends and the password's age is kept. Does
    /// nothing if the stored hash is no longer `old_hash` (the password changed meanwhile).
    pub async fn rehash_password(
        &self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, ControlError> {
        let (id, old, new) = (user_id.to_owned(), old_hash.to_owned(), new_hash.to_owned());
        let changed = self
            .execute(
                "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
                [id, old, new],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Replaces the user's password hash and revokes every one of their sessions, in one
    /// transaction (a changed password must end every other sign-in).
    pub async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
    ) -> Result<(), ControlError> {
        let now = format_time(self.clock.now());
        let (id, hash) = (user_id.to_owned(), password_hash.to_owned());
        let _sessions = self.cache.sessions_changing();
        self.transaction(|conn| async move {
            conn.execute(
                "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
                [id.clone(), hash, now.clone()],
            )
            .await?;
            conn.execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
                [id, now],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Disables (or re-enables) the account with this address; disabling ends every one of
    /// its sessions in the same transaction. `Ok(false)` if there is no such account.
    pub async fn set_user_disabled(
        &self,
        email: &Email,
        disabled: bool,
    ) -> Result<bool, ControlError> {
        let now = format_time(self.clock.now());
        let email = email.to_string();
        let _sessions = self.cache.sessions_changing();
        self.transaction(|conn| async move {
            let changed = if disabled {
                conn.execute("UPDATE users SET disabled_at = coalesce(disabled_at, ?2) WHERE email = ?1", [email.clone(), now.clone()]).await?
            } else {
                conn.execute("UPDATE users SET disabled_at = NULL WHERE email = ?1", [email.clone()]).await?
            };
            if disabled {
                conn.execute(
                    "UPDATE sessions SET revoked_at = ?2 WHERE revoked_at IS NULL AND user_id = (SELECT id FROM users WHERE email = ?1)",
                    [email, now],
                )
                .await?;
            }
            Ok(changed > 0)
        })
        .await
    }

    /// Gives `user_id` `role` in `clinic`.
    pub async fn add_membership(
        &self,
        user_id: &str,
        clinic: ClinicId,
        role: Role,
    ) -> Result<(), ControlError> {
        let now = format_time(self.clock.now());
        let id = user_id.to_owned();
        let _memberships = self.cache.memberships_changing();
        self.execute(
            "INSERT INTO memberships (user_id, clinic_id, role, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, clinic_id) DO UPDATE SET role = excluded.role",
            [id, clinic.to_string(), role.as_str().to_owned(), now],
        )
        .await?;
        Ok(())
    }

    /// The clinics a user belongs to (excluding purged ones), by name.
    pub async fn memberships(&self, user_id: &str) -> Result<Vec<Membership>, ControlError> {
        let id = user_id.to_owned();
        let ids: Vec<(String, String)> = self
            .query_rows(
                "SELECT m.clinic_id, m.role FROM memberships m JOIN clinics c ON c.id = m.clinic_id
                         WHERE m.user_id = ?1 AND c.status != 'purged' ORDER BY c.name",
                [id],
                |row| Ok((row.get::<String>(0)?, row.get::<String>(1)?)),
            )
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (clinic, role) in ids {
            let Ok(id) = ClinicId::parse(&clinic) else {
                continue;
            };
            let Ok(role) = Role::parse(&role) else {
                continue;
            };
            out.push(Membership {
                clinic: self.clinic_by_id(id).await?,
                role,
            });
        }
        Ok(out)
    }

    /// The user's role in the clinic with `slug`, with the clinic, if they are a member.
    /// One query: this runs on every clinic page.
    pub async fn membership_by_slug(
        &self,
        user_id: &str,
        slug: &str,
    ) -> Result<Option<(ClinicId, ClinicStatus, Role)>, ControlError> {
        let key = (user_id.to_owned(), slug.to_owned());
        if let Some(hit) = self.cache.memberships.get(&key) {
            return Ok(hit);
        }
        let (id, slug) = key.clone();
        let found = self.with(|conn| async move {
            let row = first_row(
                &conn,
                "SELECT c.id, c.status, m.role FROM clinics c JOIN memberships m ON m.clinic_id = c.id WHERE c.slug = ?1 AND m.user_id = ?2",
                [slug, id],
            )?;
            let Some(row) = row else { return Ok(None) };
            let parsed = (
                ClinicId::parse(&row.get::<String>(0)?),
                ClinicStatus::parse(&row.get::<String>(1)?),
                Role::parse(&row.get::<String>(2)?),
            );
            match parsed {
                (Ok(c), Ok(s), Ok(r)) => Ok(Some((c, s, r))),
                _ => Err(ControlError::Invalid("the control plane holds an invalid membership".into())),
            }
        })
        .await?;
        self.cache.memberships.insert(key, found);
        Ok(found)
    }

    /// Failed sign-ins for this account (by user id) or address since `since`.
    pub async fn failed_logins_since(
        &self,
        user_id: Option<&str>,
        email: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, ControlError> {
        let (user, email, since) = (
            user_id.map(str::to_owned),
            email.to_owned(),
            format_time(since),
        );
        self.with(|conn| async move {
            let row = match user {
                Some(u) => first_row(&conn, "SELECT count(*) FROM auth_events WHERE user_id = ?1 AND kind = 'login' AND outcome = 'failed' AND at >= ?2", [u, since])?,
                None => first_row(&conn, "SELECT count(*) FROM auth_events WHERE email = ?1 AND kind = 'login' AND outcome = 'failed' AND at >= ?2", [email, since])?,
            };
            Ok(row.map(|r| r.get::<u64>(0)).transpose()?.unwrap_or(0))
        })
        .await
    }
}
