//! Clinic workflows over HTTP: patients, visits, prescriptions; roles, isolation, audit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod attachments;
mod audit_trail;
mod damage;
mod merges;
mod observability;
mod patients;
mod reads;
mod rights;
mod support;
mod visit_edits;
mod visits;
