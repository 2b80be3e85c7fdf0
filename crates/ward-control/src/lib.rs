//! The control plane: the clinic registry and its lifecycle, the people, their
//! memberships and sessions, one-time tokens, jobs and the auth log, in
//! `<data>/control.db` (encrypted under a key derived from the master key).
//!
//! No web types here: callers pass plain values and get records back.

mod auth_events;
pub mod backups;
pub mod catalog;
mod clinics;
mod platform;
mod store;

pub use auth_events::AuthEvent;
pub use backups::{BackupConfig, Backups, RestoreTarget, ServeGuard};
pub use catalog::{BackupRecord, Scope};
pub use clinics::{ClinicRecord, ClinicRef};
pub use platform::{MasterKeySource, Platform, master_key};
pub use store::{ControlError, ControlPlane};
