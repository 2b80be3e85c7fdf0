//! The shared harness plus what the owner-page tests add to it.

#[path = "../common/harness.rs"]
#[allow(
    dead_code,
    reason = "the shared harness has helpers these tests do not use"
)]
mod harness;

pub use harness::*;

use axum::http::StatusCode;

/// A clinic's owner, signed in, with what the tests need to find the clinic again.
pub struct Clinic {
    pub slug: String,
    pub id: ward_core::ClinicId,
    pub owner_id: String,
}

impl Clinic {
    pub fn path(&self, rest: &str) -> String {
        format!("/c/{}/{rest}", self.slug)
    }
}

impl TestApp {
    /// Signs up a clinic whose owner is `email` and stays signed in as them.
    pub async fn clinic(&mut self, name: &str, email: &str) -> Clinic {
        let path = self.signup_verified(name, email).await;
        let slug = path
            .trim_start_matches("/c/")
            .trim_end_matches('/')
            .to_owned();
        let record = self
            .app
            .control
            .clinic_by_slug(&ward_core::Slug::parse(&slug).unwrap())
            .await
            .unwrap();
        let owner = self
            .app
            .control
            .user_by_email(&ward_core::Email::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap();
        Clinic {
            slug,
            id: record.id,
            owner_id: owner.id,
        }
    }

    /// Creates a verified account for `email` (password [`PASSWORD`]) with `role` in
    /// `clinic`, straight through the control plane; returns its id.
    pub async fn staff(
        &self,
        clinic: &Clinic,
        email: &str,
        name: &str,
        role: ward_core::Role,
    ) -> String {
        let control = &self.app.control;
        let email = ward_core::Email::parse(email).unwrap();
        let user = match control.user_by_email(&email).await.unwrap() {
            Some(u) => u,
            None => {
                let hash = self.app.hasher.hash(PASSWORD).await.unwrap();
                let u = control
                    .create_user(&email, name, &hash)
                    .await
                    .unwrap()
                    .unwrap();
                control.mark_email_verified(&u.id).await.unwrap();
                u
            }
        };
        control
            .add_membership(&user.id, clinic.id, role)
            .await
            .unwrap();
        user.id
    }

    /// A new browser signed in as `email`.
    pub async fn browser_as(&self, email: &str) -> Self {
        let mut b = self.fresh_browser();
        let r = b.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        b
    }

    /// The clinic's whole audit log, oldest first.
    /// The clinic's audit rows, oldest first, without the members' sign-ins and
    /// sign-outs (see [`Self::all_audit_rows`]).
    pub async fn audit_rows(&self, clinic: &Clinic) -> Vec<ward_clinic::audit::AuditRow> {
        let mut rows = self.all_audit_rows(clinic).await;
        rows.retain(|r| r.action != "login" && r.action != "logout");
        rows
    }

    /// Every audit row of the clinic, oldest first.
    pub async fn all_audit_rows(&self, clinic: &Clinic) -> Vec<ward_clinic::audit::AuditRow> {
        // Views and sign-ins are queued; write them first.
        self.app.audit.flush().await;
        let tenant = self.app.tenants.get(clinic.id).await.unwrap();
        let mut rows = tenant
            .with(|conn| {
                ward_clinic::audit::search(
                    &conn,
                    &ward_clinic::audit::Filter::default(),
                    None,
                    ward_clinic::audit::MAX_PAGE,
                )
            })
            .await
            .unwrap();
        rows.reverse();
        rows
    }

    /// The role `user_id` has in the clinic, if any.
    pub async fn role_of(&self, clinic: &Clinic, user_id: &str) -> Option<ward_core::Role> {
        self.app
            .control
            .clinic_member(clinic.id, user_id)
            .await
            .unwrap()
            .map(|m| m.role)
    }
}
