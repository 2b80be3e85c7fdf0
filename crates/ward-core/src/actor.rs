//! Who did something, as Ward's records name them: the control plane's clinic history,
//! restores, backups and invitations store an actor's text form (`user:<id>`,
//! `operator`, …), and a clinic's audit log stores its kind (`user`, `operator`,
//! `system`) beside the rest of the row.

use std::fmt;

/// Who acted. [`fmt::Display`] gives the stored text form, [`Actor::parse`] reads it
/// back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A signed-in user, by their id in the control plane: `user:<id>`.
    User(String),
    /// The platform's operator, through the `ward` command line: `operator`.
    Operator,
    /// The operator, with the login name running the command: `operator (<login>)`.
    OperatorLogin(String),
    /// The operator inside a clinic through a support session, by the grant's number:
    /// `support:<grant>`.
    Support(i64),
    /// `ward serve`'s own schedule (the backup passes): `schedule`.
    Schedule,
    /// Ward itself (scheduled jobs, retention): `system`.
    System,
}

impl Actor {
    /// A user, by id.
    pub fn user(id: impl Into<String>) -> Self {
        Self::User(id.into())
    }

    /// The operator, named by the login running the command when there is one
    /// (`$USER`), plain `operator` otherwise.
    pub fn operator_login(login: Option<&str>) -> Self {
        match login {
            Some(login) if !login.is_empty() => Self::OperatorLogin(login.to_owned()),
            _ => Self::Operator,
        }
    }

    /// The kind a clinic's audit log stores: `user`, `operator` (a support session is
    /// the operator, named as such) or `system`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Operator | Self::OperatorLogin(_) | Self::Support(_) => "operator",
            Self::Schedule | Self::System => "system",
        }
    }

    /// Reads the stored text form back; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => return Some(Self::Operator),
            "schedule" => return Some(Self::Schedule),
            "system" => return Some(Self::System),
            _ => {}
        }
        if let Some(id) = s.strip_prefix("user:") {
            return (!id.is_empty()).then(|| Self::User(id.to_owned()));
        }
        if let Some(grant) = s.strip_prefix("support:") {
            return grant.parse().ok().map(Self::Support);
        }
        s.strip_prefix("operator (")
            .and_then(|rest| rest.strip_suffix(')'))
            .filter(|login| !login.is_empty())
            .map(|login| Self::OperatorLogin(login.to_owned()))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Operator => f.write_str("operator"),
            Self::OperatorLogin(login) => write!(f, "operator ({login})"),
            Self::Support(grant) => write!(f, "support:{grant}"),
            Self::Schedule => f.write_str("schedule"),
            Self::System => f.write_str("system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_forms_are_fixed() {
        assert_eq!(Actor::user("u-1").to_string(), "user:u-1");
        assert_eq!(Actor::Operator.to_string(), "operator");
        assert_eq!(
            Actor::OperatorLogin("ada".into()).to_string(),
            "operator (ada)"
        );
        assert_eq!(Actor::Support(7).to_string(), "support:7");
        assert_eq!(Actor::Schedule.to_string(), "schedule");
        assert_eq!(Actor::System.to_string(), "system");
    }

    #[test]
    fn actors_round_trip() {
        for a in [
            Actor::user("0b6f-42"),
            Actor::Operator,
            Actor::OperatorLogin("ada".into()),
            Actor::Support(12),
            Actor::Schedule,
            Actor::System,
        ] {
            assert_eq!(Actor::parse(&a.to_string()), Some(a));
        }
        for bad in [
            "",
            "user:",
            "support:x",
            "operator ()",
            "operator (ada",
            "nobody",
        ] {
            assert_eq!(Actor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_login_names_the_operator() {
        assert_eq!(
            Actor::operator_login(Some("ada")),
            Actor::OperatorLogin("ada".into())
        );
        assert_eq!(Actor::operator_login(Some("")), Actor::Operator);
        assert_eq!(Actor::operator_login(None), Actor::Operator);
    }
}
