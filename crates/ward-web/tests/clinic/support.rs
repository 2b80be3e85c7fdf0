//! The shared harness plus clinics staffed with one member of each role.

#[path = "../common/harness.rs"]
#[allow(
    dead_code,
    reason = "the shared harness has helpers these tests do not use"
)]
mod harness;

pub use harness::*;

use axum::http::StatusCode;
use ward_clinic::audit::{AuditRow, Filter};
use ward_core::{ClinicId, Email, Role, Slug};

/// A clinic with one signed-in browser per role.
pub struct Clinic {
    pub id: ClinicId,
    /// `/c/{slug}`, no trailing slash.
    pub base: String,
    pub owner: TestApp,
    pub doctor: TestApp,
    pub receptionist: TestApp,
    pub billing: TestApp,
}

impl Clinic {
    pub fn browser(&mut self, role: Role) -> &mut TestApp {
        match role {
            Role::Owner => &mut self.owner,
            Role::Doctor => &mut self.doctor,
            Role::Receptionist => &mut self.receptionist,
            Role::Billing => &mut self.billing,
        }
    }
}

pub const ROLES: [Role; 4] = [Role::Owner, Role::Doctor, Role::Receptionist, Role::Billing];

impl TestApp {
    /// Signs up clinic `name` (owner `owner@{tag}.test`) and adds a doctor, a
    /// receptionist and a billing clerk, each signed in in their own browser.
    pub async fn clinic(&self, name: &str, tag: &str) -> Clinic {
        let mut owner = self.fresh_browser();
        let path = owner
            .signup_verified(name, &format!("owner@{tag}.test"))
            .await;
        let slug = path
            .trim_start_matches("/c/")
            .trim_end_matches('/')
            .to_owned();
        let id = self
            .app
            .control
            .clinic_by_slug(&Slug::parse(&slug).unwrap())
            .await
            .unwrap()
            .id;
        let mut staff = Vec::new();
        for (role, person) in [
            (Role::Doctor, "Dr. Bina Shah"),
            (Role::Receptionist, "Ravi Kumar"),
            (Role::Billing, "Meera Iyer"),
        ] {
            let email = format!("{}@{tag}.test", role.as_str());
            staff.push(self.member(id, role, person, &email).await);
        }
        let billing = staff.pop().unwrap();
        let receptionist = staff.pop().unwrap();
        let doctor = staff.pop().unwrap();
        Clinic {
            id,
            base: format!("/c/{slug}"),
            owner,
            doctor,
            receptionist,
            billing,
        }
    }

    /// A verified user with `role` in `clinic`, signed in in a fresh browser.
    pub async fn member(&self, clinic: ClinicId, role: Role, name: &str, email: &str) -> TestApp {
        let control = &self.app.control;
        let hash = self.app.hasher.hash(PASSWORD).await.unwrap();
        let user = control
            .create_user(&Email::parse(email).unwrap(), name, &hash)
            .await
            .unwrap()
            .unwrap();
        control.mark_email_verified(&user.id).await.unwrap();
        control
            .add_membership(&user.id, clinic, role)
            .await
            .unwrap();
        let mut browser = self.fresh_browser();
        let r = browser.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        browser
    }

    /// The clinic's audit rows matching `filter`, newest first, after writing queued views.
    pub async fn audit(&self, clinic: ClinicId, filter: Filter) -> Vec<AuditRow> {
        self.app.audit.flush().await;
        let tenant = self.app.tenants.get(clinic).await.unwrap();
        tenant
            .with(|conn| ward_clinic::audit::search(&conn, &filter, None, 500))
            .await
            .unwrap()
    }

    /// One integer from the clinic's database (after writing queued views and prints).
    pub async fn count(&self, clinic: ClinicId, sql: &str) -> i64 {
        self.app.audit.flush().await;
        let tenant = self.app.tenants.get(clinic).await.unwrap();
        let sql = sql.to_owned();
        tenant
            .with(|conn| {
                let mut rows = conn.query(&sql, ()).unwrap();
                rows.next().unwrap().unwrap().get::<i64>(0).unwrap()
            })
            .await
    }

    /// Registers a patient through the form; returns the patient page's path.
    pub async fn register(&mut self, base: &str, fields: &[(&str, &str)]) -> String {
        let new = format!("{base}/patients/new");
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if !fields.iter().any(|(k, _)| *k == "sex") {
            all.push(("sex", "female"));
        }
        all.push(("confirm_duplicate", "yes"));
        let r = self.submit(&new, &new, &all).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        r.location().to_owned()
    }
}
