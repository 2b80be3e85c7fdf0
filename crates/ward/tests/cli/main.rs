//! The `ward` binary as an operator runs it, against data set up through the libraries.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod verify;
