//! The clinic domain over one tenant connection. Every function takes the clinic's
//! [`ward_tenancy::Db`] explicitly and is plain synchronous SQLite: it returns when the
//! database has answered. Callers run it off the async workers (`Tenant::with` does);
//! nothing here knows about HTTP. Only the batched read-audit writer
//! and the anchoring sweep are tasks.
//!
//! - [`audit`]: the append-only, hash-chained audit log every domain action writes to.
//! - [`settings`]: letterhead, timezone and currency.
//! - [`patients`]: the register, duplicate detection and search.
//! - [`visits`]: consultations, diagnoses, prescriptions and favourites.
//! - [`appointments`]: the appointment book; [`payments`]: payments, receipts, collections.
//! - [`history`]: the kept versions of amended visits and patients, and their differences.
//! - [`fields`]: a form's errors by field, as the checks find them and the pages show them.
//! - [`export`] / [`import`]: the whole clinic as one JSON document and back.

pub mod appointments;
pub mod archive;
pub mod attachments;
pub mod audit;
pub mod audit_viewer;
mod error;
pub mod export;
pub mod export_csv;
pub mod fields;
pub mod history;
pub mod ids;
pub mod import;
pub mod merge;
pub mod patients;
pub mod payments;
pub mod rights;
pub mod settings;
pub mod visits;

pub use audit::integrity_check;
pub use error::ClinicError;
pub use fields::{Field, FieldErrors};
pub use ids::{
    AppointmentId, AttachmentId, CorrectionId, FavouriteId, MergeId, ParseIdError, PatientId,
    PaymentId, VisitId,
};
