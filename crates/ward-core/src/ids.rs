use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value was refused; the message is a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub &'static str);

/// `Display`, and the `String` conversions serde goes through, for a newtype over text
/// that its `parse` checked.
macro_rules! checked_text {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> Self {
                value.0
            }
        }
    };
}

/// `Display` as the stored form, for an enum stored as one word.
macro_rules! stored_word {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

/// The one of `all` whose stored form is `s`.
fn parse_word<T: Copy, const N: usize>(
    all: [T; N],
    as_str: fn(T) -> &'static str,
    s: &str,
) -> Option<T> {
    all.into_iter().find(|&v| as_str(v) == s)
}

/// A clinic's permanent identity: a UUID (v7 for new clinics). The only value that ever
/// becomes part of a file name, always in its canonical hyphenated lowercase form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClinicId(Uuid);

impl ClinicId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Accepts only the canonical 36-character hyphenated form (any case), so that a
    /// clinic has exactly one spelling and URN, braced or simple forms are refused.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = ParseError("a clinic id is a UUID such as 0192f5c4-8a1e-7c3b-9d2e-4f5a6b7c8d9e");
        if s.len() != 36 {
            return Err(bad);
        }
        Uuid::try_parse(s).map(Self).map_err(|_| bad)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The file name of this clinic's database: `<uuid>.db`.
    pub fn file_name(&self) -> String {
        format!("{}.db", self.0.hyphenated())
    }
}

impl Default for ClinicId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ClinicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for ClinicId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ClinicId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ClinicId> for String {
    fn from(id: ClinicId) -> Self {
        id.to_string()
    }
}

/// A clinic's URL name: `[a-z0-9-]{1,63}`, not starting or ending with `-`.
/// Used in URLs only, never in a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    /// Longest slug accepted.
    pub const MAX_LEN: usize = 63;

    /// Parses a slug exactly as written.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError(
                "a clinic's short name uses only lowercase letters, digits and hyphens (at most 63)",
            ))
        }
    }

    /// Derives a slug from a clinic's display name: letters and digits kept (accents
    /// and other scripts dropped), everything else a single hyphen. `"clinic"` when
    /// nothing usable remains. Leaves room for a `-NN` suffix to make it unique.
    pub fn from_name(name: &str) -> Self {
        let mut out = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
            if out.len() >= 48 {
                break;
            }
        }
        let trimmed = out.trim_matches('-');
        if trimmed.is_empty() {
            Self("clinic".to_owned())
        } else {
            Self(trimmed.to_owned())
        }
    }

    /// This slug with `-n` appended (used to make a derived slug unique).
    pub fn with_suffix(&self, n: u32) -> Self {
        let suffix = format!("-{n}");
        let keep = self.0.len().min(Self::MAX_LEN - suffix.len());
        let base = self.0[..keep].trim_end_matches('-');
        Self(format!("{base}{suffix}"))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

checked_text!(Slug);

/// An email address as a login name: trimmed, at most 254 bytes, one `@` with text on
/// both sides, no whitespace or control characters (so it can never inject a mail
/// header). Compared case-insensitively: the stored form is lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Parses and normalises an address.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let bad = ParseError("enter an email address such as name@example.com");
        if s.is_empty() || s.len() > 254 {
            return Err(bad);
        }
        if s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"' | '\\')
        }) {
            return Err(bad);
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(bad);
        };
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad);
        }
        Ok(Self(s.to_lowercase()))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

checked_text!(Email);

/// What a person may do in a clinic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the clinic: staff, settings, audit log, export, closing.
    Owner,
    /// Sees and writes clinical records.
    Doctor,
    /// Front desk: demographics and appointments, no clinical notes.
    Receptionist,
    /// Payments and receipts.
    Billing,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Doctor, Role::Receptionist, Role::Billing];

    /// The stored and URL form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Doctor => "doctor",
            Role::Receptionist => "receptionist",
            Role::Billing => "billing",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_word(Self::ALL, Self::as_str, s).ok_or(ParseError(
            "a role is one of owner, doctor, receptionist, billing",
        ))
    }
}

stored_word!(Role);

/// Where a clinic is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClinicStatus {
    /// In use.
    Active,
    /// Access blocked by the operator (e.g. unpaid); no retention clock.
    Suspended,
    /// Closed by its owner; data kept for the grace period, then purged.
    Closed,
    /// Data and key destroyed; only a tombstone remains.
    Purged,
}

impl ClinicStatus {
    /// Every status.
    pub const ALL: [ClinicStatus; 4] = [Self::Active, Self::Suspended, Self::Closed, Self::Purged];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Closed => "closed",
            Self::Purged => "purged",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_word(Self::ALL, Self::as_str, s).ok_or(ParseError(
            "a clinic status is one of active, suspended, closed, purged",
        ))
    }
}

stored_word!(ClinicStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clinic_ids_accept_only_the_canonical_form() {
        let id = ClinicId::new();
        assert_eq!(ClinicId::parse(&id.to_string()), Ok(id));
        assert_eq!(ClinicId::parse(&id.to_string().to_uppercase()), Ok(id));
        for bad in [
            "",
            "..",
            "../etc/passwd",
            ":memory:",
            "file:x.db?mode=memory",
            "urn:uuid:0192f5c4-8a1e-7c3b-9d2e-4f5a6b7c8d9e",
            "{0192f5c4-8a1e-7c3b-9d2e-4f5a6b7c8d9e}",
            "0192f5c48a1e7c3b9d2e4f5a6b7c8d9e",
            "0192f5c4-8a1e-7c3b-9d2e-4f5a6b7c8d9\0",
        ] {
            assert!(ClinicId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn slugs_are_derived_from_names_and_stay_valid() {
        assert_eq!(Slug::from_name("Acme Clinic").as_str(), "acme-clinic");
        assert_eq!(
            Slug::from_name("  Dr. Rao's   Eye & Skin  ").as_str(),
            "dr-rao-s-eye-skin"
        );
        assert_eq!(Slug::from_name("क्लिनिक").as_str(), "clinic");
        assert_eq!(Slug::from_name("../../etc").as_str(), "etc");
        let long = Slug::from_name(&"a".repeat(500));
        assert!(Slug::parse(long.with_suffix(12345).as_str()).is_ok());
        assert_eq!(Slug::from_name("Acme").with_suffix(2).as_str(), "acme-2");
    }

    #[test]
    fn slugs_refuse_anything_outside_the_alphabet() {
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a b",
            "a/b",
            "..",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Slug::parse("acme-2").is_ok());
    }

    #[test]
    fn emails_are_normalised_and_cannot_carry_header_breaks() {
        assert_eq!(
            Email::parse(" Ana@Example.COM ").unwrap().as_str(),
            "ana@example.com"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@x.com",
            "a@b",
            "a@b@c.com",
            "a\r\nBcc: x@y.com@e.com",
            "a b@c.com",
            "<a@b.com>",
            "a@b.com,c@d.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn roles_and_statuses_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        for s in ClinicStatus::ALL {
            assert_eq!(ClinicStatus::parse(s.as_str()), Ok(s));
        }
        assert!(Role::parse("admin").is_err());
    }
}
