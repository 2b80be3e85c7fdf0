//! Clinics staffed with one member of each role, each signed in in their own browser.

use axum::http::StatusCode;
use ward_core::{ClinicId, Role};

use super::{Response, TestApp};

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
    /// The clinic's member in `role` (the first, if several), as the control plane lists
    /// them.
    pub async fn member(&self, t: &TestApp, role: Role) -> ward_control::Member {
        t.app
            .control
            .clinic_members(self.id)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.role == role)
            .unwrap()
    }

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

/// Staffed clinics and patients on a browser.
pub trait Staffed {
    /// Signs up clinic `name` (owner `owner@{tag}.test`) and adds a doctor, a
    /// receptionist and a billing clerk, each signed in in their own browser.
    async fn clinic(&self, name: &str, tag: &str) -> Clinic;
    /// Registers a patient through the form; returns the patient page's path.
    async fn register(&mut self, base: &str, fields: &[(&str, &str)]) -> String;
    /// Saves a new visit of the patient at `patient` through the form, with `fields`.
    async fn save_visit(&mut self, patient: &str, fields: &[(&str, &str)]) -> Response;
    /// [`Self::save_visit`], which must be accepted; returns the new visit's path.
    async fn record_visit(&mut self, patient: &str, fields: &[(&str, &str)]) -> String;
    /// Submits the correction form of the patient or visit at `record` with `fields`.
    async fn correct(&mut self, record: &str, fields: &[(&str, &str)]) -> Response;
}

impl Staffed for TestApp {
    async fn clinic(&self, name: &str, tag: &str) -> Clinic {
        let mut owner = self.fresh_browser();
        let path = owner
            .signup_verified(name, &format!("owner@{tag}.test"))
            .await;
        let (slug, record) = self.clinic_at(&path).await;
        let id = record.id;
        let mut staff = Vec::new();
        for (role, person) in [
            (Role::Doctor, "Dr. Bina Shah"),
            (Role::Receptionist, "Ravi Kumar"),
            (Role::Billing, "Meera Iyer"),
        ] {
            let email = format!("{}@{tag}.test", role.as_str());
            self.add_member(id, role, &email, person).await;
            staff.push(self.browser_as(&email).await);
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

    async fn register(&mut self, base: &str, fields: &[(&str, &str)]) -> String {
        let new = format!("{base}/patients/new");
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if !fields.iter().any(|(k, _)| *k == "sex") {
            all.push(("sex", "female"));
        }
        all.push(("confirm_duplicate", "yes"));
        let r = self.submit_page(&new, &all).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        r.location().to_owned()
    }

    async fn save_visit(&mut self, patient: &str, fields: &[(&str, &str)]) -> Response {
        let mut form = vec![("action", "save")];
        form.extend_from_slice(fields);
        let action = format!("{patient}/visits");
        self.submit(&format!("{action}/new"), &action, &form).await
    }

    async fn record_visit(&mut self, patient: &str, fields: &[(&str, &str)]) -> String {
        let r = self.save_visit(patient, fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        r.location().to_owned()
    }

    async fn correct(&mut self, record: &str, fields: &[(&str, &str)]) -> Response {
        self.submit_page(&format!("{record}/edit"), fields).await
    }
}

impl Clinic {
    /// Registers a patient by name and phone through the receptionist's browser; returns
    /// the patient page's path.
    pub async fn patient(&mut self, full_name: &str, phone: &str) -> String {
        self.receptionist
            .register(&self.base, &[("full_name", full_name), ("phone", phone)])
            .await
    }
}
