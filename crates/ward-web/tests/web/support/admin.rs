//! What the owner-page tests (staff and invitations, settings, the audit log viewer)
//! add to the harness.

use super::TestApp;
pub use super::owner::{Clinic, SignUp, acme};
use ward_clinic::audit::{AuditRow, Filter};
use ward_core::Role;

/// [`acme`] with a doctor, Dr. Doc (`doc@example.com`); returns the doctor's user id too.
pub async fn acme_with_doctor() -> (TestApp, Clinic, String) {
    let (owner, clinic) = acme().await;
    let doctor = owner
        .staff(&clinic, "doc@example.com", "Dr. Doc", Role::Doctor)
        .await;
    (owner, clinic, doctor)
}

/// Fails unless `row` records the role of member `user` changing from `from` to `to`.
#[track_caller]
pub fn assert_role_change(row: &AuditRow, user: &str, from: &str, to: &str) {
    assert_eq!(row.action, "update");
    assert_eq!(row.entity_type.as_deref(), Some("staff"));
    assert_eq!(row.entity_id.as_deref(), Some(user));
    let diff = format!(r#"{{"role":["{from}","{to}"]}}"#);
    assert_eq!(row.diff.as_deref(), Some(diff.as_str()));
}

/// The owner pages' helpers on a browser.
pub trait OwnerPages {
    /// Creates a verified account for `email` (password [`super::PASSWORD`]) with `role`
    /// in `clinic`, straight through the control plane; returns its id.
    async fn staff(&self, clinic: &Clinic, email: &str, name: &str, role: Role) -> String;
    /// The clinic's audit rows, oldest first, without the members' sign-ins and
    /// sign-outs (see [`Self::all_audit_rows`]).
    async fn audit_rows(&self, clinic: &Clinic) -> Vec<AuditRow>;
    /// Every audit row of the clinic, oldest first.
    async fn all_audit_rows(&self, clinic: &Clinic) -> Vec<AuditRow>;
    /// The role `user_id` has in the clinic, if any.
    async fn role_of(&self, clinic: &Clinic, user_id: &str) -> Option<Role>;
}

impl OwnerPages for TestApp {
    async fn staff(&self, clinic: &Clinic, email: &str, name: &str, role: Role) -> String {
        self.add_member(clinic.id, role, email, name).await
    }

    async fn audit_rows(&self, clinic: &Clinic) -> Vec<AuditRow> {
        let mut rows = self.all_audit_rows(clinic).await;
        rows.retain(|r| r.action != "login" && r.action != "logout");
        rows
    }

    async fn all_audit_rows(&self, clinic: &Clinic) -> Vec<AuditRow> {
        let mut rows = self.audit(clinic.id, Filter::default()).await;
        rows.reverse();
        rows
    }

    async fn role_of(&self, clinic: &Clinic, user_id: &str) -> Option<Role> {
        self.app
            .control
            .clinic_member(clinic.id, user_id)
            .await
            .unwrap()
            .map(|m| m.role)
    }
}
