//! Front desk: the appointment book, payments and receipts, collections, the dashboard;
//! who may use them, and that no clinic sees another's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod appointments;
mod isolation;
mod payments;
mod refunds;
mod roles;
mod support;

use support::{Clinic, TestApp};
use ward_core::Role;

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
) -> support::Response {
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
) -> support::Response {
    let path = format!("{}/payments", clinic.base);
    let patient = patient.to_string();
    let mut form = vec![
        ("patient_id", patient.as_str()),
        ("method", method),
        ("reference", "REF-1"),
    ];
    for (d, a) in items {
        form.push(("item_description", d));
        form.push(("item_amount", a));
    }
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
