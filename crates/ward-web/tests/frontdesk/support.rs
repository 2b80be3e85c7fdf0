//! The shared harness plus what the front-desk tests add to it.

#[path = "../common/harness.rs"]
mod harness;

pub use harness::*;

use axum::http::StatusCode;
use ward_core::Clock as _;

/// A clinic made by signing up.
#[derive(Clone)]
pub struct Clinic {
    pub id: ward_core::ClinicId,
    pub slug: String,
    /// `/c/{slug}`, without the trailing slash.
    pub base: String,
}

impl TestApp {
    /// Signs up a clinic (this browser is its owner, signed in) and returns it.
    pub async fn clinic(&mut self, name: &str, owner_email: &str) -> Clinic {
        let path = self.signup_verified(name, owner_email).await;
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
        Clinic {
            id: record.id,
            base: format!("/c/{slug}"),
            slug,
        }
    }

    /// A verified user with `role` in `clinic`, signed in in a new browser.
    pub async fn staff(
        &self,
        clinic: &Clinic,
        role: ward_core::Role,
        email: &str,
        name: &str,
    ) -> Self {
        let hash = self.app.hasher.hash(PASSWORD).await.unwrap();
        let email_parsed = ward_core::Email::parse(email).unwrap();
        let user = match self.app.control.user_by_email(&email_parsed).await.unwrap() {
            Some(u) => u,
            None => self
                .app
                .control
                .create_user(&email_parsed, name, &hash)
                .await
                .unwrap()
                .unwrap(),
        };
        self.app
            .control
            .mark_email_verified(&user.id)
            .await
            .unwrap();
        self.app
            .control
            .add_membership(&user.id, clinic.id, role)
            .await
            .unwrap();
        let mut browser = self.fresh_browser();
        let r = browser.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        browser
    }

    /// The user id of the account with `email`.
    pub async fn user_id(&self, email: &str) -> String {
        self.app
            .control
            .user_by_email(&ward_core::Email::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// Runs `sql` returning one integer in the clinic's database.
    pub async fn scalar(&self, clinic: &Clinic, sql: &str) -> i64 {
        // Views (pages, lists) and sign-ins are queued: write them first.
        self.app.audit.flush().await;
        let sql = sql.to_owned();
        let tenant = self.app.tenants.get(clinic.id).await.unwrap();
        tenant
            .with(|conn| {
                let mut rows = conn.query(&sql, ()).unwrap();
                rows.next().unwrap().unwrap().get::<i64>(0).unwrap()
            })
            .await
    }

    /// Runs `sql` returning one text in the clinic's database.
    pub async fn text(&self, clinic: &Clinic, sql: &str) -> String {
        let sql = sql.to_owned();
        let tenant = self.app.tenants.get(clinic.id).await.unwrap();
        tenant
            .with(|conn| {
                let mut rows = conn.query(&sql, ()).unwrap();
                rows.next()
                    .unwrap()
                    .unwrap()
                    .get::<Option<String>>(0)
                    .unwrap()
                    .unwrap_or_default()
            })
            .await
    }

    /// Registers a patient directly; returns the row id.
    pub async fn add_patient(&self, clinic: &Clinic, name: &str, phone: &str) -> i64 {
        let tenant = self.app.tenants.get(clinic.id).await.unwrap();
        let at = self.clock.now();
        let p = ward_clinic::appointments::QuickPatient {
            full_name: name.to_owned(),
            sex: "female".into(),
            phone: phone.to_owned(),
        };
        tenant
            .with(|conn| {
                ward_clinic::audit::in_transaction(&conn, |tx| {
                    let entry = ward_clinic::audit::Entry::new(
                        at,
                        ward_clinic::audit::Actor::System {
                            name: "test".into(),
                        },
                        ward_clinic::audit::Action::Create,
                    );
                    ward_clinic::appointments::quick_register_patient(&tx, &p, at, entry)
                })
                .unwrap()
            })
            .await
    }

    /// Sets the clinic's timezone.
    pub async fn set_timezone(&self, clinic: &Clinic, tz: &str) {
        let tenant = self.app.tenants.get(clinic.id).await.unwrap();
        let at = self.clock.now();
        let tz = ward_clinic::settings::parse_timezone(tz).unwrap();
        tenant
            .with(|conn| {
                let mut s = ward_clinic::settings::load(&conn).unwrap();
                s.timezone = tz;
                s.address = "12 Canal Road".into();
                s.phone = "+91 80 1234 5678".into();
                s.letterhead = "General practice · Mon–Sat 9–5".into();
                ward_clinic::settings::save(
                    &conn,
                    &s,
                    ward_clinic::audit::Actor::System {
                        name: "test".into(),
                    },
                    None,
                    at,
                )
                .unwrap();
            })
            .await;
    }

    /// This browser's CSRF token.
    pub async fn token(&mut self) -> String {
        self.get("/account").await.csrf()
    }

    /// Posts `form` with this browser's CSRF token.
    pub async fn send_form(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let csrf = self.token().await;
        let mut fields = vec![("_csrf", csrf.as_str())];
        fields.extend_from_slice(form);
        self.post(path, &fields).await
    }
}
