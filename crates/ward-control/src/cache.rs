//! Short-lived caches for what every page asks: which session a cookie is, which role
//! its user has in the clinic of the URL, and (on an owner's pages) which support
//! requests and windows the clinic has.
//!
//! Every clinic page would otherwise make two or three control-plane queries before it
//! touches the clinic. Entries live two seconds at most; anything in this process that
//! revokes a session, changes a membership, a clinic's status or a support grant clears
//! the cache at once, so the delay applies only to changes made by another process (an
//! operator's command).

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use ward_core::{ClinicId, ClinicStatus, Role};

use crate::Session;

/// How long a cached answer may be used.
const TTL: Duration = Duration::from_secs(2);

/// A membership as cached: the clinic, its status and the user's role, or none.
pub(crate) type MembershipHit = Option<(ClinicId, ClinicStatus, Role)>;

/// The caches of one control plane.
pub(crate) struct Caches {
    /// SHA-256 of a session token → the session as last read from the database.
    pub sessions: Cache<Vec<u8>, Session>,
    /// (user id, clinic slug) → the membership, or `None` when there is none.
    pub memberships: Cache<(String, String), MembershipHit>,
    /// Clinic id → its registry record (name, status, schema).
    pub clinics: Cache<ClinicId, crate::ClinicRecord>,
    /// Clinic id → the support grants its owners' pages mention (pending requests and
    /// open windows), as last read; filtered by the clock again on every use.
    pub support_notices: Cache<ClinicId, Arc<Vec<crate::support::Grant>>>,
}

impl Caches {
    pub fn new() -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build(),
            memberships: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build(),
            clinics: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build(),
            support_notices: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// Forgets every session (after any revocation: they are rare, and a wrong cached
    /// "still signed in" is the one thing this cache must never say).
    pub fn forget_sessions(&self) {
        self.sessions.invalidate_all();
    }

    /// Forgets every membership (after any membership or clinic status change).
    pub fn forget_memberships(&self) {
        self.memberships.invalidate_all();
        self.clinics.invalidate_all();
    }

    /// Forgets every support notice (after any change to a support grant).
    pub fn forget_support(&self) {
        self.support_notices.invalidate_all();
    }

    /// As [`Self::sessions_changing`], for support grants.
    pub fn support_changing(&self) -> Forget<'_> {
        self.forget_support();
        Forget {
            caches: self,
            sessions: false,
            memberships: false,
            support: true,
        }
    }

    /// Forgets sessions now and again when the guard drops, i.e. once the change is in
    /// the database: a request reading between the two cannot keep a stale answer.
    pub fn sessions_changing(&self) -> Forget<'_> {
        self.forget_sessions();
        Forget {
            caches: self,
            sessions: true,
            memberships: false,
            support: false,
        }
    }

    /// As [`Self::sessions_changing`], for memberships.
    pub fn memberships_changing(&self) -> Forget<'_> {
        self.forget_memberships();
        Forget {
            caches: self,
            sessions: false,
            memberships: true,
            support: false,
        }
    }
}

/// Clears caches when dropped; see [`Caches::sessions_changing`].
pub(crate) struct Forget<'a> {
    caches: &'a Caches,
    sessions: bool,
    memberships: bool,
    support: bool,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if self.sessions {
            self.caches.forget_sessions();
        }
        if self.memberships {
            self.caches.forget_memberships();
        }
        if self.support {
            self.caches.forget_support();
        }
    }
}
