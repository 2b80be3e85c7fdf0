//! The error of a workflow.

use ward_control::ControlError;
use ward_tenancy::TenantError;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a workflow did not finish. The web layer turns each into its page.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such record, or one the person may not know exists.
    #[error("not found")]
    NotFound,
    /// The control plane failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A clinic's database could not be used.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// A clinic's data refused the change, or could not be read or written.
    #[error(transparent)]
    Clinic(#[from] ward_clinic::ClinicError),
    /// Anything else (mail, files); the cause is for the log.
    #[error("{0}")]
    Other(BoxError),
}

impl Error {
    /// Wraps any other error.
    pub fn other(e: impl Into<BoxError>) -> Self {
        Self::Other(e.into())
    }
}
