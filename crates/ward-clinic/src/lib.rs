//! The clinic domain over one tenant connection. Every function takes the clinic's
//! `ward_tenancy::sql::Connection` explicitly; nothing here knows about HTTP.
//!
//! - [`audit`]: the append-only, hash-chained audit log every domain action writes to.
//! - [`settings`]: letterhead, timezone and currency.
//! - [`patients`]: the register, duplicate detection and search.
//! - [`visits`]: consultations, diagnoses, prescriptions and favourites.
//! - [`appointments`]: the appointment book; [`payments`]: payments, receipts, collections.
//! - [`export`] / [`import`]: the whole clinic as one JSON document and back.

pub mod appointments;
pub mod audit;
mod error;
pub mod export;
pub mod import;
pub mod patients;
pub mod payments;
pub mod settings;
pub mod visits;

pub use audit::integrity_check;
pub use error::ClinicError;
