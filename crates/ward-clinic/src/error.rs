//! The clinic domain's one error type.

use crate::audit::AuditError;

/// Why a clinic operation did not happen. Nothing was changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ClinicError {
    /// The record does not exist (in this clinic).
    #[error("not found")]
    NotFound,
    /// A field's value is not acceptable; `message` is a sentence for the person, shown
    /// next to `field`.
    #[error("{field}: {message}")]
    Invalid {
        /// The form field.
        field: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The change conflicts with the clinic's data (e.g. a doctor's slot already booked);
    /// the message says so plainly.
    #[error("{0}")]
    Conflict(String),
    /// The audit row could not be written, so the change was not made.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The database refused or failed.
    #[error(transparent)]
    Db(#[from] ward_tenancy::sql::Error),
}

impl ClinicError {
    /// Whether this failure is the clinic's file being damaged.
    pub fn is_damage(&self) -> bool {
        match self {
            Self::Db(e) | Self::Audit(AuditError::Db(e)) => e.is_damage(),
            _ => false,
        }
    }

    /// A field error.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}
