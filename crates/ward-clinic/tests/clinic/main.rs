//! Integration tests of the clinic domain: real encrypted clinic files, created through a
//! real platform (control plane + tenant store) in a temporary data directory.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking"
)]

mod anchors;
mod archive;
mod audit_log;
mod export;
mod lifecycle;
mod payment_corrections;
mod reads;
mod search;
mod shred;
mod support;
mod tamper;
mod visit_fee;
