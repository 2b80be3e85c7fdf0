-- Support access: the operator asks a clinic's owners to let them see the clinic for a
-- few minutes (docs/support.md). A grant is requested, then approved or refused by an
-- owner (or opened at once on the emergency path), used through one sign-in link, and
-- ends by time, by the owner or by the operator.
CREATE TABLE support_grants (
    id               INTEGER PRIMARY KEY,
    clinic_id        TEXT NOT NULL REFERENCES clinics (id),
    operator         TEXT NOT NULL,                -- who at the operator's end asked
    reason           TEXT NOT NULL,
    minutes          INTEGER NOT NULL CHECK (minutes BETWEEN 1 AND 30),
    write_requested  INTEGER NOT NULL DEFAULT 0,   -- the operator asked to make changes
    write_allowed    INTEGER NOT NULL DEFAULT 0,   -- an owner allowed it (never on the emergency path)
    emergency        INTEGER NOT NULL DEFAULT 0,   -- opened without approval
    state            TEXT NOT NULL
                     CHECK (state IN ('requested', 'approved', 'active', 'ended', 'refused', 'expired')),
    requested_at     TEXT NOT NULL,
    decided_by       TEXT,                         -- the owner's name, or the emergency path
    decided_at       TEXT,
    starts_at        TEXT,                         -- the window opens at approval ...
    ends_at          TEXT,                         -- ... and closes `minutes` later
    ended_at         TEXT,
    ended_by         TEXT,
    ended_reason     TEXT
) STRICT;
CREATE INDEX support_grants_by_clinic ON support_grants (clinic_id, state);
CREATE INDEX support_grants_by_state ON support_grants (state, ends_at);

-- The browser session a grant's sign-in link starts: no user account behind it, bound
-- to the grant (and so to one clinic), live only while the grant is active.
CREATE TABLE support_sessions (
    token_hash   BLOB PRIMARY KEY,                 -- SHA-256 of the cookie value
    grant_id     INTEGER NOT NULL REFERENCES support_grants (id),
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT
) STRICT;
CREATE INDEX support_sessions_by_grant ON support_sessions (grant_id);
