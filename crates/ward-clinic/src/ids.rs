//! The ids of a clinic's records, one type per kind of record, so that a visit's id can
//! never be passed where a patient's is expected.
//!
//! Each is the row's SQLite id. Read from text ([`std::str::FromStr`]) an id is a
//! positive decimal integer and nothing else: no sign but `+`, no spaces, no exponent,
//! not zero, not past `i64::MAX`. Read from a column it is whatever the row holds.

use std::fmt;
use std::str::FromStr;

use ward_tenancy::sql::{Error, FromValue, Value};

/// Text that is not a record's id: not a positive decimal integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a record id is a positive whole number")]
pub struct ParseIdError;

/// The rule every id read from text follows: a positive `i64`.
fn parse_positive(text: &str) -> Result<i64, ParseIdError> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ParseIdError),
    }
}

macro_rules! record_ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The row id `id` as this kind of record's id.
            pub const fn new(id: i64) -> Self {
                Self(id)
            }

            /// The row id.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_positive(text).map(Self)
            }
        }

        impl From<$name> for Value {
            fn from(id: $name) -> Self {
                Self::Integer(id.0)
            }
        }

        impl From<&$name> for Value {
            fn from(id: &$name) -> Self {
                Self::Integer(id.0)
            }
        }

        impl FromValue for $name {
            fn from_value(v: &Value, idx: i32) -> Result<Self, Error> {
                i64::from_value(v, idx).map(Self)
            }
        }
    )*};
}

record_ids! {
    /// A patient's id.
    PatientId;
    /// A visit's id.
    VisitId;
    /// An appointment's id.
    AppointmentId;
    /// A payment's id.
    PaymentId;
    /// A refund's or void's id (a payment's correction).
    CorrectionId;
    /// An attachment's id.
    AttachmentId;
    /// A merge's id (one patient merged into another).
    MergeId;
    /// A doctor's favourite prescription's id.
    FavouriteId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_an_id_only_when_it_is_a_positive_decimal() {
        assert_eq!("12".parse::<PatientId>(), Ok(PatientId::new(12)));
        assert_eq!("12".parse::<VisitId>().map(VisitId::get), Ok(12));
        assert_eq!(
            i64::MAX.to_string().parse::<PaymentId>(),
            Ok(PaymentId::new(i64::MAX))
        );
        for bad in [
            "0",
            "-1",
            "1e3",
            " 12",
            "12 ",
            "",
            "1.0",
            "abc",
            "0x10",
            "9223372036854775808",
            "99999999999999999999",
        ] {
            assert_eq!(bad.parse::<PatientId>(), Err(ParseIdError), "{bad:?}");
        }
    }

    #[test]
    fn an_id_shows_and_serializes_as_its_number() {
        let id = AttachmentId::new(7);
        assert_eq!(id.to_string(), "7");
        assert_eq!(serde_json::to_string(&id).ok().as_deref(), Some("7"));
        assert_eq!(serde_json::from_str::<AttachmentId>("7").ok(), Some(id));
        assert_eq!(Value::from(id), Value::Integer(7));
        assert_eq!(
            AttachmentId::from_value(&Value::Integer(7), 0).ok(),
            Some(id)
        );
    }
}
