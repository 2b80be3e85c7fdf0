//! The clinic registry: creation, lookup, lifecycle, and the [`Registry`] the tenant
//! store reads keys from.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use ward_core::{Actor, ClinicId, ClinicStatus, Slug, format_time, parse_time};
use ward_tenancy::sql::{Connection, Row};
use ward_tenancy::store_registry::{RegistryError, TenantRecord};
use ward_tenancy::{Registry, TenantStore, db};

use crate::members::insert_clinic_event;
use crate::store::{ControlError, ControlPlane, all_rows, is_unique_violation};

/// How many numbered variants of a derived slug are tried before giving up.
const SLUG_ATTEMPTS: u32 = 1_000;

/// One clinic as the control plane knows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClinicRecord {
    /// Permanent id.
    pub id: ClinicId,
    /// URL name.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// Lifecycle state.
    pub status: ClinicStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was closed, if it is.
    pub closed_at: Option<DateTime<Utc>>,
    /// Tenant schema version last seen.
    pub schema_version: u32,
    /// Why it last failed to open, if it is failing.
    pub open_error: Option<String>,
    /// Since when it has been failing.
    pub open_error_at: Option<DateTime<Utc>>,
}

const CLINIC_COLUMNS: &str =
    "id, slug, name, status, created_at, closed_at, schema_version, open_error, open_error_at";

impl ClinicRecord {
    fn from_row(row: &Row) -> Result<Self, ControlError> {
        let bad = |what: &str| {
            ControlError::Invalid(format!("the control plane holds an invalid clinic {what}"))
        };
        Ok(Self {
            id: ClinicId::parse(&row.get::<String>(0)?).map_err(|_| bad("id"))?,
            slug: Slug::parse(&row.get::<String>(1)?).map_err(|_| bad("slug"))?,
            name: row.get(2)?,
            status: ClinicStatus::parse(&row.get::<String>(3)?).map_err(|_| bad("status"))?,
            created_at: parse_time(&row.get::<String>(4)?).ok_or_else(|| bad("creation time"))?,
            closed_at: row.get::<Option<String>>(5)?.and_then(|t| parse_time(&t)),
            schema_version: row.get(6)?,
            open_error: row.get(7)?,
            open_error_at: row.get::<Option<String>>(8)?.and_then(|t| parse_time(&t)),
        })
    }
}

/// How an operator names a clinic: its id or its slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClinicRef {
    /// By id.
    Id(ClinicId),
    /// By slug.
    Slug(Slug),
}

impl FromStr for ClinicRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = ClinicId::parse(s) {
            return Ok(Self::Id(id));
        }
        Slug::parse(s)
            .map(Self::Slug)
            .map_err(|_| format!("{s:?} is neither a clinic id (a UUID) nor a clinic short name (lowercase letters, digits, hyphens)"))
    }
}

impl std::fmt::Display for ClinicRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Slug(s) => s.fmt(f),
        }
    }
}

/// The row `sql` reads for clinic `id` (its one parameter), or `NoSuchClinic`.
pub(crate) fn clinic_row(conn: &Connection, sql: &str, id: ClinicId) -> Result<Row, ControlError> {
    db::first_row(conn, sql, [id.to_string()])?
        .ok_or_else(|| ControlError::NoSuchClinic(id.to_string()))
}

/// `name` trimmed, if it can name a clinic: 1 to 200 characters, on one line.
pub(crate) fn clinic_name(name: &str) -> Result<&str, ControlError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ControlError::Invalid(
            "a clinic name is 1 to 200 characters, on one line".into(),
        ));
    }
    Ok(name)
}

async fn collect(
    conn: &Connection,
    sql: &str,
    params: impl ward_tenancy::sql::IntoParams,
) -> Result<Vec<ClinicRecord>, ControlError> {
    all_rows(conn, sql, params, ClinicRecord::from_row).await
}

impl ControlPlane {
    /// Registers a clinic and creates its encrypted database.
    ///
    /// The slug is `slug` if given (an error if taken), otherwise derived from `name`
    /// and numbered until unique. The registry row (with the wrapped key) is written
    /// first, so a file never exists without its key; if the file cannot be created the
    /// row is removed again.
    pub async fn create_clinic(
        &self,
        name: &str,
        slug: Option<Slug>,
        store: &TenantStore,
        actor: &Actor,
    ) -> Result<ClinicRecord, ControlError> {
        self.create_clinic_owned(name, slug, store, actor, None)
            .await
    }

    /// Creates the clinic (registry row and database) and, with `owner`, its first
    /// owner's account and membership in the same control-plane transaction: all of it
    /// or none (a database that cannot be made removes the rows again).
    pub(crate) async fn create_clinic_owned(
        &self,
        name: &str,
        slug: Option<Slug>,
        store: &TenantStore,
        actor: &Actor,
        owner: Option<crate::signup::NewOwner>,
    ) -> Result<ClinicRecord, ControlError> {
        let name = clinic_name(name)?;
        let id = ClinicId::new();
        let (_, wrapped) = store.new_data_key(id);
        let wrapped_for_store = wrapped.clone();
        let now = format_time(self.clock.now());
        let (explicit, base) = match slug {
            Some(s) => (true, s),
            None => (false, Slug::from_name(name)),
        };
        let name_owned = name.to_owned();
        let actor = actor.clone();
        let owner_id = owner.as_ref().map(|o| o.id.clone());
        let slug = self
            .transaction(|conn| async move {
                for n in 1..=SLUG_ATTEMPTS {
                    let candidate = if n == 1 { base.clone() } else { base.with_suffix(n) };
                    let inserted = conn
                        .execute(
                            "INSERT INTO clinics (id, slug, name, status, created_at, wrapped_key) VALUES (?1, ?2, ?3, 'active', ?4, ?5)",
                            ward_tenancy::sql::params![id.to_string(), candidate.as_str(), name_owned.as_str(), now.as_str(), wrapped.clone()],
                        )
                        .await;
                    match inserted {
                        Ok(_) => {
                            insert_clinic_event(&conn, id, &now, "created", &actor, None)
                                .await?;
                            if let Some(o) = &owner {
                                o.insert(&conn, id, &now).await?;
                            }
                            return Ok(candidate);
                        }
                        Err(e) if is_unique_violation(&e) && e.to_string().contains("slug") => {
                            if explicit {
                                return Err(ControlError::SlugTaken(candidate.to_string()));
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(ControlError::SlugTaken(base.to_string()))
            })
            .await?;
        match store.create(id, &wrapped_for_store).await {
            Ok(_) => {}
            Err(e) => {
                let cleanup = self
                    .transaction(|conn| async move {
                        if let Some(user) = owner_id {
                            conn.execute(
                                "DELETE FROM memberships WHERE user_id = ?1",
                                [user.clone()],
                            )
                            .await?;
                            conn.execute("DELETE FROM users WHERE id = ?1", [user])
                                .await?;
                        }
                        conn.execute(
                            "DELETE FROM clinic_events WHERE clinic_id = ?1",
                            [id.to_string()],
                        )
                        .await?;
                        conn.execute("DELETE FROM clinics WHERE id = ?1", [id.to_string()])
                            .await?;
                        Ok(())
                    })
                    .await;
                if let Err(c) = cleanup {
                    tracing::error!(clinic = %id, error = %c, "could not remove the registry row of a clinic whose creation failed");
                }
                return Err(e.into());
            }
        }
        tracing::info!(clinic = %id, slug = %slug, "clinic created");
        // Re-read: the store recorded the schema version.
        self.clinic_by_id(id).await
    }

    /// The clinic with this id.
    /// Remembered for a moment like memberships (every clinic page shows the name).
    pub async fn clinic_by_id(&self, id: ClinicId) -> Result<ClinicRecord, ControlError> {
        if let Some(hit) = self.cache.clinics.get(&id) {
            return Ok(hit);
        }
        let sql = format!("SELECT {CLINIC_COLUMNS} FROM clinics WHERE id = ?1");
        let record = self
            .with(|conn| async move { collect(&conn, &sql, [id.to_string()]).await })
            .await?
            .pop()
            .ok_or_else(|| ControlError::NoSuchClinic(id.to_string()))?;
        self.cache.clinics.insert(id, record.clone());
        Ok(record)
    }

    /// The clinic with this slug.
    pub async fn clinic_by_slug(&self, slug: &Slug) -> Result<ClinicRecord, ControlError> {
        let sql = format!("SELECT {CLINIC_COLUMNS} FROM clinics WHERE slug = ?1");
        let s = slug.to_string();
        self.with(|conn| async move { collect(&conn, &sql, [s]).await })
            .await?
            .pop()
            .ok_or_else(|| ControlError::NoSuchClinic(slug.to_string()))
    }

    /// The clinic an operator named.
    pub async fn find_clinic(&self, r: &ClinicRef) -> Result<ClinicRecord, ControlError> {
        match r {
            ClinicRef::Id(id) => self.clinic_by_id(*id).await,
            ClinicRef::Slug(s) => self.clinic_by_slug(s).await,
        }
    }

    /// Every clinic, oldest first.
    pub async fn list_clinics(&self) -> Result<Vec<ClinicRecord>, ControlError> {
        let sql = format!("SELECT {CLINIC_COLUMNS} FROM clinics ORDER BY created_at, id");
        self.with(|conn| async move { collect(&conn, &sql, ()).await })
            .await
    }

    /// Every clinic not purged, most recently used first: by the newest activity of any
    /// session of any of its members, then clinics no one has used, newest first. (The
    /// order a machine rebuilt from the replica restores them in the background.)
    pub async fn clinics_by_recent_use(&self) -> Result<Vec<ClinicRecord>, ControlError> {
        self.write_session_touches().await;
        let columns = ward_tenancy::sql::qualified("c", CLINIC_COLUMNS);
        let sql = format!(
            "SELECT {columns} FROM clinics c
             LEFT JOIN memberships m ON m.clinic_id = c.id
             LEFT JOIN sessions s ON s.user_id = m.user_id
             WHERE c.status != 'purged'
             GROUP BY c.id
             ORDER BY max(s.last_seen_at) IS NULL, max(s.last_seen_at) DESC, c.created_at DESC, c.id"
        );
        self.with(|conn| async move { collect(&conn, &sql, ()).await })
            .await
    }

    /// Clinics currently marked as failing to open.
    pub async fn failing_clinics(&self) -> Result<Vec<ClinicRecord>, ControlError> {
        let sql = format!(
            "SELECT {CLINIC_COLUMNS} FROM clinics WHERE open_error IS NOT NULL ORDER BY slug"
        );
        self.with(|conn| async move { collect(&conn, &sql, ()).await })
            .await
    }

    /// Number of clinics in each status.
    pub async fn clinic_counts(&self) -> Result<Vec<(ClinicStatus, u64)>, ControlError> {
        self.query_rows_where(
            "SELECT status, count(*) FROM clinics GROUP BY status ORDER BY status",
            (),
            |row| {
                let Ok(status) = ClinicStatus::parse(&row.get::<String>(0)?) else {
                    return Ok(None);
                };
                Ok(Some((status, row.get::<u64>(1)?)))
            },
        )
        .await
    }
}

#[async_trait::async_trait]
impl Registry for ControlPlane {
    async fn tenant(&self, id: ClinicId) -> Result<Option<TenantRecord>, RegistryError> {
        let row = self
            .with(|conn| async move {
                let row = db::first_row(
                    &conn,
                    "SELECT wrapped_key, schema_version, open_error IS NOT NULL, coalesce(substr(open_error, 1, length(?2)) = ?2, 0) FROM clinics WHERE id = ?1",
                    ward_tenancy::sql::params![id.to_string(), ward_tenancy::DAMAGED],
                )?;
                let Some(row) = row else { return Ok::<_, ControlError>(None) };
                let Some(wrapped_key) = row.get::<Option<Vec<u8>>>(0)? else {
                    // Purged: the key is gone, and so, for every purpose, is the clinic.
                    return Ok(None);
                };
                Ok(Some(TenantRecord { wrapped_key, schema_version: row.get(1)?, failed: row.get::<i64>(2)? != 0, damaged: row.get::<i64>(3)? != 0 }))
            })
            .await?;
        Ok(row)
    }

    async fn opened(&self, id: ClinicId, schema_version: u32) -> Result<(), RegistryError> {
        let _clinic = ForgetClinic(self, id);
        self.with(|conn| async move {
            conn.execute(
                "UPDATE clinics SET schema_version = ?2, open_error = NULL, open_error_at = NULL WHERE id = ?1",
                ward_tenancy::sql::params![id.to_string(), schema_version],
            )
            .await
        })
        .await?;
        Ok(())
    }

    async fn failed(&self, id: ClinicId, reason: &str) -> Result<(), RegistryError> {
        let _clinic = ForgetClinic(self, id);
        let now = format_time(self.clock.now());
        let reason = reason.to_owned();
        self.with(|conn| async move {
            conn.execute(
                "UPDATE clinics SET open_error = ?2, open_error_at = ?3 WHERE id = ?1",
                ward_tenancy::sql::params![id.to_string(), reason, now],
            )
            .await
        })
        .await?;
        Ok(())
    }
}

/// Drops a clinic's cached record once its row has changed.
struct ForgetClinic<'a>(&'a ControlPlane, ClinicId);

impl Drop for ForgetClinic<'_> {
    fn drop(&mut self) {
        self.0.cache.clinics.invalidate(&self.1);
    }
}
