//! Audit anchors: the last chain head (sequence number and hash) seen for each clinic's
//! audit log. Kept here, outside the clinic's file, so a log that was cut short or
//! rewritten consistently no longer matches.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ward_core::{Actor, ClinicId, format_time, parse_time};

use crate::members::insert_clinic_event;
use crate::{ControlError, ControlPlane};

/// A clinic's anchored audit head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditAnchor {
    /// Which clinic.
    pub clinic_id: ClinicId,
    /// The anchored sequence number.
    pub seq: i64,
    /// The hash of the row at that sequence number.
    #[serde(serialize_with = "as_hex")]
    pub hash: Vec<u8>,
    /// When it was anchored.
    pub anchored_at: DateTime<Utc>,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

impl ControlPlane {
    /// Anchors clinic `clinic`'s audit head at `seq` with `hash`.
    ///
    /// Anchors only move forward: an older head (a late writer, a second process) never
    /// replaces a newer one. A restore, which legitimately shortens a log, uses
    /// [`ControlPlane::reset_anchor`].
    pub async fn anchor(
        &self,
        clinic: ClinicId,
        seq: i64,
        hash: &[u8],
    ) -> Result<(), ControlError> {
        self.anchor_many(&[(clinic, seq, hash.to_vec())]).await
    }

    /// Anchors several clinics' heads in one transaction (the periodic pass). Forward
    /// only, as [`ControlPlane::anchor`].
    pub async fn anchor_many(
        &self,
        heads: &[(ClinicId, i64, Vec<u8>)],
    ) -> Result<(), ControlError> {
        if heads.is_empty() {
            return Ok(());
        }
        let now = format_time(self.clock.now());
        let heads = heads.to_vec();
        self.transaction(|conn| async move {
            for (clinic, seq, hash) in heads {
                conn.execute(
                    "INSERT INTO audit_anchors (clinic_id, seq, hash, anchored_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (clinic_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, anchored_at = excluded.anchored_at \
                     WHERE excluded.seq > audit_anchors.seq",
                    ward_tenancy::sql::params![clinic.to_string(), seq, hash, now.as_str()],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// Replaces clinic `clinic`'s anchor, even with an older head, and records why in the
    /// clinic's lifecycle events. For `ward restore`, after it has written its `restore`
    /// audit row into the restored log.
    pub async fn reset_anchor(
        &self,
        clinic: ClinicId,
        seq: i64,
        hash: &[u8],
        actor: &Actor,
        reason: &str,
    ) -> Result<(), ControlError> {
        let now = format_time(self.clock.now());
        let hash = hash.to_vec();
        let actor = actor.clone();
        let detail = format!("audit anchor reset to seq {seq}: {reason}");
        self.transaction(|conn| async move {
            conn.execute(
                "INSERT INTO audit_anchors (clinic_id, seq, hash, anchored_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (clinic_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, anchored_at = excluded.anchored_at",
                ward_tenancy::sql::params![clinic.to_string(), seq, hash, now.as_str()],
            )
            .await?;
            insert_clinic_event(&conn, clinic, &now, "anchor_reset", &actor, Some(&detail)).await?;
            Ok(())
        })
        .await
    }

    /// Clinic `clinic`'s anchored audit head, if it has one.
    pub async fn anchor_of(&self, clinic: ClinicId) -> Result<Option<AuditAnchor>, ControlError> {
        self.with(|conn| async move {
            let Some(row) = ward_tenancy::db::first_row(
                &conn,
                "SELECT seq, hash, anchored_at FROM audit_anchors WHERE clinic_id = ?1",
                [clinic.to_string()],
            )?
            else {
                return Ok(None);
            };
            let anchored_at: String = row.get(2)?;
            Ok(Some(AuditAnchor {
                clinic_id: clinic,
                seq: row.get(0)?,
                hash: row.get(1)?,
                anchored_at: parse_time(&anchored_at).ok_or_else(|| {
                    ControlError::Invalid("the control plane holds an invalid anchor time".into())
                })?,
            }))
        })
        .await
    }
}
