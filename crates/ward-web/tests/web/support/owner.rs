//! A clinic made by signing up, its owner signed in in the browser that signed up.

use super::TestApp;

/// A clinic made by signing up.
#[derive(Clone)]
pub struct Clinic {
    pub id: ward_core::ClinicId,
    pub slug: String,
    /// `/c/{slug}`, without the trailing slash.
    pub base: String,
    /// The owner's user id.
    pub owner_id: String,
}

impl Clinic {
    pub fn path(&self, rest: &str) -> String {
        format!("/c/{}/{rest}", self.slug)
    }
}

/// A new app with "Acme Clinic" signed up by `owner@acme.test`, signed in in the
/// returned browser.
pub async fn acme() -> (TestApp, Clinic) {
    let mut owner = TestApp::new().await;
    let clinic = owner.clinic("Acme Clinic", "owner@acme.test").await;
    (owner, clinic)
}

/// Signing up a clinic from a browser.
pub trait SignUp {
    /// Signs up a clinic whose owner is `email`; this browser stays signed in as them.
    async fn clinic(&mut self, name: &str, email: &str) -> Clinic;
}

impl SignUp for TestApp {
    async fn clinic(&mut self, name: &str, email: &str) -> Clinic {
        let path = self.signup_verified(name, email).await;
        let (slug, record) = self.clinic_at(&path).await;
        let owner = self
            .app
            .control
            .user_by_email(&ward_core::Email::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap();
        Clinic {
            id: record.id,
            base: format!("/c/{slug}"),
            slug,
            owner_id: owner.id,
        }
    }
}
