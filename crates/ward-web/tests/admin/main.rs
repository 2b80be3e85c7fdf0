//! The owner's pages: staff and invitations, settings, the audit log viewer, and the
//! audit rows and auth events those actions leave.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod access;
mod audit_viewer;
mod events;
mod invites;
mod settings;
mod staff;
mod support;
mod support_access;
