//! A clinic's pages (`/c/{slug}/…`): patients, visits, prescriptions, attachments; the
//! front desk's appointments, payments and refunds; the owner's staff, invitations,
//! settings, audit log, support access, export and closing; roles and audit rows.

mod appointments;
mod attachments;
mod audit;
mod audit_events;
mod audit_trail;
mod closing;
mod damage;
mod export;
mod front_desk_roles;
mod invites;
mod merges;
mod observability;
mod owner_access;
mod patients;
mod payments;
mod reads;
mod refunds;
mod rights;
mod settings;
mod staff;
mod support_access;
mod visit_edits;
mod visits;
