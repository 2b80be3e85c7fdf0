//! The one shape of a form's errors, produced by the domain's checks and shown by the
//! pages as they are: a sentence per field, next to the field, in the order they were
//! found. A field is either named (`phone`) or a row of a repeated group (diagnosis row
//! 2, the dose of prescription row 0), so nothing has to spell a row's field name out
//! and read it back.

use std::borrow::Cow;

use crate::ClinicError;

/// The field of errors that concern the whole form (a clash with what is stored).
pub const WHOLE_FORM: &str = "form";

/// Which input of a form an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A field by its name (`full_name`, `fee`, [`WHOLE_FORM`]).
    Named(String),
    /// Row `row` of the repeated group `group` (`diagnosis`), or its column `column`
    /// (`item`, `drug`).
    Row {
        /// The group: `diagnosis`, `item`.
        group: &'static str,
        /// The row, from 0.
        row: usize,
        /// The column, for a group of several inputs per row.
        column: Option<&'static str>,
    },
}

impl Field {
    /// Diagnosis row `row`.
    pub fn diagnosis(row: usize) -> Self {
        Self::Row {
            group: "diagnosis",
            row,
            column: None,
        }
    }

    /// Column `column` of prescription row `row`.
    pub fn item(row: usize, column: &'static str) -> Self {
        Self::Row {
            group: "item",
            row,
            column: Some(column),
        }
    }

    /// The name of the form's input this is about (`phone`, `diagnosis_2`,
    /// `item_0_drug`), as the visit form names its rows.
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Self::Named(name) => Cow::Borrowed(name.as_str()),
            Self::Row {
                group,
                row,
                column: None,
            } => Cow::Owned(format!("{group}_{row}")),
            Self::Row {
                group,
                row,
                column: Some(column),
            } => Cow::Owned(format!("{group}_{row}_{column}")),
        }
    }
}

impl From<&str> for Field {
    fn from(name: &str) -> Self {
        Self::Named(name.to_owned())
    }
}

impl From<&String> for Field {
    fn from(name: &String) -> Self {
        Self::Named(name.clone())
    }
}

impl From<String> for Field {
    fn from(name: String) -> Self {
        Self::Named(name)
    }
}

impl PartialEq<&str> for Field {
    fn eq(&self, other: &&str) -> bool {
        matches!(self, Self::Named(name) if name == other)
    }
}

/// A form's errors by field; the first error of a field is the one kept.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(Vec<(Field, String)>);

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One error.
    pub fn one(field: impl Into<Field>, message: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.add(field, message);
        e
    }

    /// Adds one, unless `field` already has an error.
    pub fn add(&mut self, field: impl Into<Field>, message: impl Into<String>) {
        let field = field.into();
        if !self.0.iter().any(|(f, _)| *f == field) {
            self.0.push((field, message.into()));
        }
    }

    /// Adds the error a domain function returned if it is about the input (a field's
    /// value, or a clash with what is stored, on [`WHOLE_FORM`]); any other error is
    /// given back.
    pub fn absorb(&mut self, e: ClinicError) -> Result<(), ClinicError> {
        match e {
            ClinicError::Invalid { field, message } => {
                self.add(field, message);
                Ok(())
            }
            ClinicError::Conflict(message) => {
                self.add(WHOLE_FORM, message);
                Ok(())
            }
            other => Err(other),
        }
    }

    /// The message for the field named `field`, if any.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.find(|f| *f == field)
    }

    /// Whether the field named `field` has an error (for `aria-invalid`).
    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// The message for column `field` of prescription row `row`.
    pub fn item(&self, row: &usize, field: &str) -> Option<&str> {
        self.find(|f| matches!(f, Field::Row { group: "item", row: r, column: Some(c) } if r == row && *c == field))
    }

    /// The message for diagnosis row `row`.
    pub fn diagnosis(&self, row: &usize) -> Option<&str> {
        self.find(
            |f| matches!(f, Field::Row { group: "diagnosis", row: r, column: None } if r == row),
        )
    }

    /// Whether the form clashed with what is stored (an error on [`WHOLE_FORM`]) rather
    /// than being wrong in itself.
    pub fn is_conflict(&self) -> bool {
        self.has(WHOLE_FORM)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The errors, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, (Field, String)> {
        self.0.iter()
    }

    fn find(&self, wanted: impl Fn(&Field) -> bool) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| wanted(f))
            .map(|(_, m)| m.as_str())
    }
}

impl std::ops::Index<usize> for FieldErrors {
    type Output = (Field, String);

    fn index(&self, i: usize) -> &Self::Output {
        &self.0[i]
    }
}

impl<'a> IntoIterator for &'a FieldErrors {
    type Item = &'a (Field, String);
    type IntoIter = std::slice::Iter<'a, (Field, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<F: Into<Field>> From<Vec<(F, String)>> for FieldErrors {
    fn from(v: Vec<(F, String)>) -> Self {
        let mut e = Self::new();
        for (f, m) in v {
            e.add(f, m);
        }
        e
    }
}
