//! The one shape of a form's errors: messages by field name, shown next to the field
//! (`errors.get("phone")`, `errors.has("phone")` for `aria-invalid`), in the order they
//! were found. Every form of every page uses it.

use axum::http::StatusCode;
use ward_clinic::ClinicError;

use crate::AppError;

/// The field of errors that concern the whole form (a clash with what is stored).
pub const WHOLE_FORM: &str = "form";

/// A form's errors by field.
#[derive(Debug, Default, Clone)]
pub struct FormErrors(Vec<(String, String)>);

impl FormErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One error.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.add(field, message);
        e
    }

    /// The message for `field`, if any.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    /// Whether `field` has an error (for `aria-invalid`).
    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// The message for column `field` of row `row` of a table of rows
    /// (`item_{row}_{field}`, see `ward_clinic::visits`).
    pub fn item(&self, row: &usize, field: &str) -> Option<&str> {
        self.get(&format!("item_{row}_{field}"))
    }

    /// The message for diagnosis row `row`.
    pub fn diagnosis(&self, row: &usize) -> Option<&str> {
        self.get(&format!("diagnosis_{row}"))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds one; the first error of a field is the one shown.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        if !self.has(&field) {
            self.0.push((field, message.into()));
        }
    }

    /// Adds the error a domain function returned, if it is about the input; other
    /// errors are given back.
    pub fn absorb(&mut self, e: ClinicError) -> Result<(), AppError> {
        match e {
            ClinicError::Invalid { field, message } => {
                self.add(field, message);
                Ok(())
            }
            ClinicError::Conflict(message) => {
                self.add(WHOLE_FORM, message);
                Ok(())
            }
            other => Err(other.into()),
        }
    }

    /// The status a refused form is shown with: 409 when it clashed with what is
    /// stored (a double booking), 422 when the input itself was wrong.
    pub fn status(&self) -> StatusCode {
        if self.has(WHOLE_FORM) {
            StatusCode::CONFLICT
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

impl<F: Into<String>> From<Vec<(F, String)>> for FormErrors {
    fn from(v: Vec<(F, String)>) -> Self {
        let mut e = Self::new();
        for (f, m) in v {
            e.add(f, m);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_of_a_field_is_kept_and_rows_are_addressed_by_index() {
        let mut e = FormErrors::from(vec![("item_2_dose", "Enter a dose.".to_owned())]);
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
