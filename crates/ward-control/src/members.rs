//! The people of one clinic, for pages that list them (the appointment book's doctors).

use serde::Serialize;
use ward_core::{ClinicId, Role};

use crate::{ControlError, ControlPlane};

/// A member of a clinic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The user's id.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Login address.
    pub email: String,
    /// Role in the clinic.
    pub role: Role,
}

impl ControlPlane {
    /// Every member of `clinic`, by name.
    pub async fn clinic_members(&self, clinic: ClinicId) -> Result<Vec<Member>, ControlError> {
        let id = clinic.to_string();
        self.with(|conn| async move {
            let mut rows = conn
                .query(
                    "SELECT u.id, u.name, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
                     WHERE m.clinic_id = ?1 ORDER BY u.name, u.id",
                    [id],
                )
                .await?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().await? {
                let role: String = row.get(3)?;
                let Ok(role) = Role::parse(&role) else { continue };
                out.push(Member {
                    user_id: row.get(0)?,
                    name: row.get(1)?,
                    email: row.get(2)?,
                    role,
                });
            }
            Ok::<_, ControlError>(out)
        })
        .await
    }
}
