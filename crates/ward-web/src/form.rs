//! A form's errors as a page shows them: the domain's [`FieldErrors`] (messages by
//! field, found by the checks in `ward-clinic` or added here), read by the templates as
//! they are (`errors.get("phone")`, `errors.has("phone")` for `aria-invalid`,
//! `errors.item(row, "drug")`, `errors.diagnosis(row)`), and the status the refused
//! form is answered with. Every form of every page uses it.

use axum::http::StatusCode;
use ward_clinic::ClinicError;
pub use ward_clinic::fields::WHOLE_FORM;
use ward_clinic::{Field, FieldErrors};

use crate::AppError;

/// A form's errors by field: the domain's [`FieldErrors`], with the HTTP status a page
/// answers them with.
#[derive(Debug, Default, Clone)]
pub struct FormErrors(FieldErrors);

impl FormErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One error.
    pub fn one(field: impl Into<Field>, message: impl Into<String>) -> Self {
        Self(FieldErrors::one(field, message))
    }

    /// Adds one; the first error of a field is the one shown.
    pub fn add(&mut self, field: impl Into<Field>, message: impl Into<String>) {
        self.0.add(field, message);
    }

    /// Adds the error a domain function returned, if it is about the input; other
    /// errors are given back.
    pub fn absorb(&mut self, e: ClinicError) -> Result<(), AppError> {
        Ok(self.0.absorb(e)?)
    }

    /// The status a refused form is shown with: 409 when it clashed with what is
    /// stored (a double booking), 422 when the input itself was wrong.
    pub fn status(&self) -> StatusCode {
        if self.0.is_conflict() {
            StatusCode::CONFLICT
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

impl std::ops::Deref for FormErrors {
    type Target = FieldErrors;

    fn deref(&self) -> &FieldErrors {
        &self.0
    }
}

impl From<FieldErrors> for FormErrors {
    fn from(e: FieldErrors) -> Self {
        Self(e)
    }
}

impl<F: Into<Field>> From<Vec<(F, String)>> for FormErrors {
    fn from(v: Vec<(F, String)>) -> Self {
        Self(v.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_of_a_field_is_kept_and_rows_are_addressed_by_index() {
        let mut e = FormErrors::one(Field::item(2, "dose"), "Enter a dose.");
        e.add("phone", "Too long.");
        e.add("phone", "Second message.");
        assert_eq!(e.get("phone"), Some("Too long."));
        assert_eq!(e.item(&2, "dose"), Some("Enter a dose."));
        assert_eq!(e.item(&1, "dose"), None);
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        e.absorb(ClinicError::Conflict("Booked.".into()))
            .unwrap_or_default();
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert!(!e.is_empty() && FormErrors::new().is_empty());
    }
}
