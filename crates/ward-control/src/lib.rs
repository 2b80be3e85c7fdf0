//! The control plane: the clinic registry and its lifecycle, the people, their
//! memberships and sessions, one-time tokens, jobs, the mail outbox and the auth log, in
//! `<data>/control.db` (encrypted under a key derived from the master key).
//!
//! No web types here: callers pass plain values and get records back.

mod audit_anchors;
mod auth_events;
pub mod backups;
mod cache;
pub mod catalog;
mod clinics;
mod invitations;
pub mod jobs;
pub mod lifecycle;
mod members;
mod outbox;
pub mod passwords;
mod platform;
pub mod rotation;
pub mod second_factor;
pub mod sessions;
pub mod signup;
mod store;
pub mod support;
pub mod tokens;
mod users;

pub use audit_anchors::AuditAnchor;
pub use auth_events::AuthEvent;
pub use backups::{BackupConfig, Backups, RestoreTarget, ServeGuard};
pub use catalog::{BackupRecord, Scope};
pub use clinics::{ClinicRecord, ClinicRef};
pub use invitations::{INVITE_TTL, Invitation, Invited, Inviter, invitation_link};
pub use members::{Member, PendingInvite, StaffChange};
pub use outbox::{MailState, NewMail, Outbox, OutboxCounts, OutboxMail};
pub use platform::{MasterKeySource, Platform, master_key};
pub use sessions::{Session, SessionPolicy, SessionSummary};
pub use store::{ControlError, ControlPlane};
pub use tokens::{Purpose, TokenInfo};
pub use users::{Membership, User, parse_person_name};
