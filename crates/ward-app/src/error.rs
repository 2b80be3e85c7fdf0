//! The error of a workflow.

use std::convert::Infallible;

use ward_clinic::ClinicError;
use ward_clinic::audit::AuditError;
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

/// An error inside a clinic transaction that also changes the control plane. `R` is a
/// refusal: the transaction rolls back and the caller answers it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TxError<R = Infallible> {
    #[error(transparent)]
    Clinic(#[from] ClinicError),
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The change was refused.
    #[error("refused")]
    Refused(R),
}

impl<R> From<ward_tenancy::sql::Error> for TxError<R> {
    fn from(e: ward_tenancy::sql::Error) -> Self {
        Self::Clinic(e.into())
    }
}

impl<R> From<AuditError> for TxError<R> {
    fn from(e: AuditError) -> Self {
        Self::Clinic(e.into())
    }
}

impl<R> TxError<R> {
    /// A transaction's outcome: what it returned, or its refusal, or the workflow's error.
    pub(crate) fn settle<T>(outcome: Result<T, Self>) -> Result<Result<T, R>, Error> {
        match outcome {
            Ok(done) => Ok(Ok(done)),
            Err(Self::Refused(r)) => Ok(Err(r)),
            Err(Self::Clinic(e)) => Err(e.into()),
            Err(Self::Control(e)) => Err(e.into()),
        }
    }
}

impl From<TxError> for Error {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Clinic(e) => e.into(),
            TxError::Control(e) => e.into(),
            TxError::Refused(never) => match never {},
        }
    }
}
