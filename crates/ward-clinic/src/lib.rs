//! The clinic domain over one tenant connection. Every function takes the clinic's
//! `libsql::Connection` explicitly; nothing here knows about HTTP.
//!
//! - [`audit`]: the append-only, hash-chained audit log every domain action writes to.

pub mod audit;

pub use audit::integrity_check;
