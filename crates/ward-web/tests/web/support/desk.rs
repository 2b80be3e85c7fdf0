//! What the front-desk tests (the appointment book, payments and receipts, collections,
//! the dashboard) add to the harness: a clinic with one member of each role, and booking
//! and paying through the forms.

use ward_core::Clock as _;
use ward_core::Role;

pub use super::owner::{Clinic, SignUp};
use super::{Response, TestApp};

/// A clinic with one member of each role, each signed in in their own browser.
pub struct Desk {
    pub owner: TestApp,
    pub doctor: TestApp,
    pub receptionist: TestApp,
    pub billing: TestApp,
    pub clinic: Clinic,
    pub owner_id: String,
    pub doctor_id: String,
}

impl Desk {
    pub async fn new() -> Self {
        let mut owner = TestApp::new().await;
        let clinic = owner.clinic("Lotus Clinic", "owner@lotus.test").await;
        let doctor = owner
            .staff(&clinic, Role::Doctor, "doc@lotus.test", "Dr. Vik Menon")
            .await;
        let receptionist = owner
            .staff(&clinic, Role::Receptionist, "desk@lotus.test", "Rita Desk")
            .await;
        let billing = owner
            .staff(&clinic, Role::Billing, "bill@lotus.test", "Bala Billing")
            .await;
        let owner_id = owner.user_id("owner@lotus.test").await;
        let doctor_id = owner.user_id("doc@lotus.test").await;
        Self {
            owner,
            doctor,
            receptionist,
            billing,
            clinic,
            owner_id,
            doctor_id,
        }
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

/// Books through the form as `who`.
pub async fn book(
    who: &mut TestApp,
    clinic: &Clinic,
    patient: i64,
    doctor: &str,
    date: &str,
    time: &str,
    minutes: &str,
) -> Response {
    let path = format!("{}/appointments", clinic.base);
    who.send_form(
        &path,
        &[
            ("patient_id", &patient.to_string()),
            ("doctor", doctor),
            ("date", date),
            ("time", time),
            ("minutes", minutes),
            ("reason", "check-up"),
        ],
    )
    .await
}

/// Records a payment through the form as `who`; items as (description, amount).
pub async fn pay(
    who: &mut TestApp,
    clinic: &Clinic,
    patient: i64,
    method: &str,
    items: &[(&str, &str)],
) -> Response {
    let mut form = vec![("method", method), ("reference", "REF-1")];
    for (d, a) in items {
        form.push(("item_description", d));
        form.push(("item_amount", a));
    }
    post_payment(who, clinic, patient, &form).await
}

/// Posts the payment form as `who`: `fields` for the patient `patient`.
pub async fn post_payment(
    who: &mut TestApp,
    clinic: &Clinic,
    patient: i64,
    fields: &[(&str, &str)],
) -> Response {
    let path = format!("{}/payments", clinic.base);
    let patient = patient.to_string();
    let mut form = vec![("patient_id", patient.as_str())];
    form.extend_from_slice(fields);
    who.send_form(&path, &form).await
}

/// The id at the end of a redirect like `/c/x/appointments/7` or `/c/x/payments/7/receipt`.
pub fn id_in(location: &str) -> i64 {
    location
        .split(['/', '?'])
        .filter_map(|s| s.parse::<i64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no id in {location}"))
}

/// The front desk's helpers on a browser.
pub trait FrontDesk {
    /// A verified user with `role` in `clinic`, signed in in a new browser.
    async fn staff(&self, clinic: &Clinic, role: Role, email: &str, name: &str) -> TestApp;
    /// The user id of the account with `email`.
    async fn user_id(&self, email: &str) -> String;
    /// Runs `sql` returning one integer in the clinic's database.
    async fn scalar(&self, clinic: &Clinic, sql: &str) -> i64;
    /// Runs `sql` returning one text in the clinic's database.
    async fn text(&self, clinic: &Clinic, sql: &str) -> String;
    /// Registers a patient directly; returns the row id.
    async fn add_patient(&self, clinic: &Clinic, name: &str, phone: &str) -> i64;
    /// Sets the clinic's timezone.
    async fn set_timezone(&self, clinic: &Clinic, tz: &str);
    /// This browser's CSRF token.
    async fn token(&mut self) -> String;
    /// Posts `form` with this browser's CSRF token.
    async fn send_form(&mut self, path: &str, form: &[(&str, &str)]) -> Response;
}

impl FrontDesk for TestApp {
    async fn staff(&self, clinic: &Clinic, role: Role, email: &str, name: &str) -> TestApp {
        self.add_member(clinic.id, role, email, name).await;
        self.browser_as(email).await
    }

    async fn user_id(&self, email: &str) -> String {
        self.app
            .control
            .user_by_email(&ward_core::Email::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap()
            .id
    }

    async fn scalar(&self, clinic: &Clinic, sql: &str) -> i64 {
        self.count(clinic.id, sql).await
    }

    async fn text(&self, clinic: &Clinic, sql: &str) -> String {
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

    async fn add_patient(&self, clinic: &Clinic, name: &str, phone: &str) -> i64 {
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
                .get()
            })
            .await
    }

    async fn set_timezone(&self, clinic: &Clinic, tz: &str) {
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

    async fn token(&mut self) -> String {
        self.get("/account").await.csrf()
    }

    async fn send_form(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let csrf = self.token().await;
        self.post_with_csrf(path, &csrf, form).await
    }
}
