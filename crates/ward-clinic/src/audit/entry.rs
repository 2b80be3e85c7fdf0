//! What one audit row says: who, when, from where, did what to which record, and why.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use ward_core::Role;

use super::AuditError;

/// Who acted, with what the log keeps about them at that moment (their name, their
/// role). [`Actor::who`] gives the plain [`ward_core::Actor`] the rest of Ward uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in member of the clinic, as they were at that moment.
    User {
        /// The user's id in the control plane.
        id: String,
        /// Display name at that moment.
        name: String,
        /// Role in the clinic at that moment.
        role: Role,
    },
    /// The platform's operator, through the `ward` command line.
    Operator {
        /// Who at the operator's end (the login name running the command).
        name: String,
    },
    /// The operator inside the clinic through a support session (`docs/support.md`):
    /// stored as an operator row named "Support (…)", with the grant as its id and the
    /// grant's reason on every row.
    Support {
        /// Who at the operator's end.
        operator: String,
        /// The reason the owners saw.
        reason: String,
        /// The grant's number.
        grant: i64,
        /// Opened without approval.
        emergency: bool,
    },
    /// Ward itself (scheduled jobs, retention).
    System {
        /// Which part of Ward.
        name: String,
    },
}

impl Actor {
    /// Who this is in Ward's shared vocabulary (the control plane's records name actors
    /// the same way).
    pub fn who(&self) -> ward_core::Actor {
        match self {
            Self::User { id, .. } => ward_core::Actor::User(id.clone()),
            Self::Operator { .. } => ward_core::Actor::Operator,
            Self::Support { grant, .. } => ward_core::Actor::Support(*grant),
            Self::System { .. } => ward_core::Actor::System,
        }
    }

    /// The stored `actor_kind`.
    pub fn kind(&self) -> &'static str {
        // The log's kinds are fixed: support is the operator, named as such.
        self.who().kind()
    }

    /// The stored `actor_id`: the user's id, `support:<grant>`, or none.
    pub(crate) fn id(&self) -> Option<String> {
        match self.who() {
            ward_core::Actor::User(id) => Some(id),
            support @ ward_core::Actor::Support(_) => Some(support.to_string()),
            _ => None,
        }
    }

    /// The stored `actor_name`.
    pub(crate) fn name(&self) -> String {
        match self {
            Self::User { name, .. } | Self::Operator { name } | Self::System { name } => {
                name.clone()
            }
            Self::Support { operator, .. } => format!("Support ({operator})"),
        }
    }

    fn role(&self) -> Option<&'static str> {
        match self {
            Self::User { role, .. } => Some(role.as_str()),
            Self::Support {
                emergency: false, ..
            } => Some("support"),
            Self::Support {
                emergency: true, ..
            } => Some("emergency support"),
            Self::Operator { .. } | Self::System { .. } => None,
        }
    }
}

/// The `actor_id` of every row a support grant's session writes (the audit page filters
/// by it).
pub fn support_actor_id(grant: i64) -> String {
    ward_core::Actor::Support(grant).to_string()
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A record was opened (written in batches by [`super::ReadAuditor`]).
    View,
    /// A record was created.
    Create,
    /// A record was changed (with a [`Diff`]).
    Update,
    /// A record was deleted.
    Delete,
    /// A printable document (prescription, receipt) was produced.
    Print,
    /// Data left Ward as an export.
    Export,
    /// A member signed in to the clinic.
    Login,
    /// A member signed out.
    Logout,
    /// The clinic's data was restored from a backup.
    Restore,
    /// The operator accessed the clinic's data (always with a reason).
    OperatorAccess,
    /// A support grant was requested, approved, refused, started, ended or expired (the
    /// detail says which).
    Support,
}

impl Action {
    /// Every action, in display order.
    pub const ALL: [Action; 11] = [
        Self::View,
        Self::Create,
        Self::Update,
        Self::Delete,
        Self::Print,
        Self::Export,
        Self::Login,
        Self::Logout,
        Self::Restore,
        Self::OperatorAccess,
        Self::Support,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Print => "print",
            Self::Export => "export",
            Self::Login => "login",
            Self::Logout => "logout",
            Self::Restore => "restore",
            Self::OperatorAccess => "operator_access",
            Self::Support => "support",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The changed fields of an update, each as `[old, new]`. Unchanged fields are never
/// stored: the log must not become a second copy of the records.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Diff(BTreeMap<String, (Value, Value)>);

impl Diff {
    /// No changes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `field` going from `old` to `new`, if it changed.
    pub fn field(mut self, field: &str, old: impl Into<Value>, new: impl Into<Value>) -> Self {
        self.add(field, old, new);
        self
    }

    /// Records `field` going from `old` to `new`, if it changed.
    pub fn add(&mut self, field: &str, old: impl Into<Value>, new: impl Into<Value>) {
        let (old, new) = (old.into(), new.into());
        if old != new {
            self.0.insert(field.to_owned(), (old, new));
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The changed fields, by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value, &Value)> {
        self.0.iter().map(|(k, (o, n))| (k.as_str(), o, n))
    }

    /// The stored form: a JSON object, keys sorted, `{"field": [old, new]}`.
    pub fn to_json(&self) -> String {
        // Serializing strings and JSON values into a String cannot fail.
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads the stored form back (for the viewer).
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json).map(Self)
    }
}

/// One audit row before it is written. Build with [`Entry::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// When it happened (from the request's clock, not when the row was written: views
    /// are written a little later).
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// The client address, as the server determined it.
    pub ip: Option<String>,
    /// What.
    pub action: Action,
    /// Which kind of record (`patient`, `visit`, …).
    pub entity_type: Option<String>,
    /// Which record.
    pub entity_id: Option<String>,
    /// Why (required when the actor is the operator).
    pub reason: Option<String>,
    /// The changed fields of an update.
    pub diff: Option<Diff>,
    /// Anything else worth keeping: which document was printed, which backup restored.
    pub detail: Option<String>,
}

impl Entry {
    /// `actor` did `action` at `at`.
    pub fn new(at: DateTime<Utc>, actor: Actor, action: Action) -> Self {
        Self {
            at,
            actor,
            ip: None,
            action,
            entity_type: None,
            entity_id: None,
            reason: None,
            diff: None,
            detail: None,
        }
    }

    /// To record `id` of kind `entity_type`.
    pub fn entity(mut self, entity_type: &str, id: impl ToString) -> Self {
        self.entity_type = Some(entity_type.to_owned());
        self.entity_id = Some(id.to_string());
        self
    }

    /// From this client address.
    pub fn ip(mut self, ip: impl ToString) -> Self {
        self.ip = Some(ip.to_string());
        self
    }

    /// For this reason.
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    /// Changing these fields.
    pub fn diff(mut self, diff: Diff) -> Self {
        self.diff = Some(diff);
        self
    }

    /// With this detail.
    pub fn detail(mut self, detail: &str) -> Self {
        self.detail = Some(detail.to_owned());
        self
    }

    /// As the record of someone coming onto the staff: the `staff` record `who` (a user
    /// id, or the address invited), its role from nothing to `role`, and `how` ("invitation
    /// sent", "joined by invitation", "added by the operator"). The staff page, accepting
    /// an invitation and `ward members add` all write it this way.
    pub fn staff_added(self, who: &str, role: Role, how: &str) -> Self {
        self.entity("staff", who)
            .diff(Diff::new().field("role", Value::Null, role.as_str()))
            .detail(how)
    }

    /// Refuses entries the log must never hold.
    pub(crate) fn validate(&self) -> Result<(), AuditError> {
        let blank = |s: &str| s.trim().is_empty();
        if blank(&self.actor.name()) {
            return Err(AuditError::Invalid("an audit entry names its actor"));
        }
        if self.actor.id().is_some_and(|id| blank(&id)) {
            return Err(AuditError::Invalid(
                "a user's audit entry carries the user id",
            ));
        }
        if matches!(self.actor, Actor::Operator { .. }) && self.reason.as_deref().is_none_or(blank)
            || matches!(&self.actor, Actor::Support { reason, .. } if blank(reason))
        {
            return Err(AuditError::Invalid(
                "every access by the operator states a reason",
            ));
        }
        if self.entity_id.is_some() && self.entity_type.as_deref().is_none_or(blank) {
            return Err(AuditError::Invalid("a record id needs its record type"));
        }
        Ok(())
    }

    /// The reason column: a support session's every row carries the grant's reason,
    /// followed by the row's own when it has one (an edit's reason, say).
    fn stored_reason(&self) -> Option<String> {
        match (&self.actor, &self.reason) {
            (Actor::Support { reason, .. }, Some(own)) if own.trim() != reason.trim() => {
                Some(format!("{} — {}", reason.trim(), own.trim()))
            }
            (Actor::Support { reason, .. }, _) => Some(reason.trim().to_owned()),
            (_, own) => own.clone(),
        }
    }

    /// The stored column values, in the order of [`super::CHAINED_COLUMNS`] after `seq`.
    pub(crate) fn columns(&self) -> StoredColumns {
        StoredColumns {
            at: ward_core::format_time(self.at),
            actor_kind: self.actor.kind(),
            actor_id: self.actor.id(),
            actor_name: self.actor.name(),
            actor_role: self.actor.role(),
            ip: self.ip.clone(),
            action: self.action.as_str(),
            entity_type: self.entity_type.clone(),
            entity_id: self.entity_id.clone(),
            reason: self.stored_reason(),
            diff: self.diff.as_ref().map(Diff::to_json),
            detail: self.detail.clone(),
        }
    }
}

/// An entry as text columns, ready to hash and insert.
pub(crate) struct StoredColumns {
    pub at: String,
    pub actor_kind: &'static str,
    pub actor_id: Option<String>,
    pub actor_name: String,
    pub actor_role: Option<&'static str>,
    pub ip: Option<String>,
    pub action: &'static str,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub reason: Option<String>,
    pub diff: Option<String>,
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_keeps_only_what_changed() {
        let d = Diff::new()
            .field("phone", "555-0100", "555-0199")
            .field("full_name", "Ada", "Ada")
            .field("address", Value::Null, "1 Main St");
        assert_eq!(
            d.to_json(),
            r#"{"address":[null,"1 Main St"],"phone":["555-0100","555-0199"]}"#
        );
        assert_eq!(Diff::parse(&d.to_json()).unwrap(), d);
        assert!(Diff::new().field("x", 1, 1).is_empty());
    }

    #[test]
    fn actions_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("nope"), None);
    }
}
