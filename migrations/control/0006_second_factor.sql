-- A second factor per user: an authenticator app's shared secret (RFC 6238), confirmed
-- by a first code before it counts, and ten one-time recovery codes.
CREATE TABLE totp_factors (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret        BLOB NOT NULL,                 -- 160 random bits; the database is encrypted
    created_at    TEXT NOT NULL,
    confirmed_at  TEXT,                          -- NULL while enrolment is unfinished
    last_step     INTEGER NOT NULL DEFAULT 0     -- the newest 30-second step accepted: no code works twice
) STRICT;

CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BLOB NOT NULL,                   -- SHA-256 of the normalised code (80 random bits)
    created_at  TEXT NOT NULL,
    used_at     TEXT,
    PRIMARY KEY (user_id, code_hash)
) STRICT, WITHOUT ROWID;

-- When the session last proved the second factor (sign-in or a later confirmation).
ALTER TABLE sessions ADD COLUMN second_factor_at TEXT;

-- Facts about this installation, written once (e.g. when owners were first required to
-- have a second factor, from which existing owners' grace is counted).
CREATE TABLE platform_facts (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) STRICT;

-- Refused codes are counted per address as well as per account.
CREATE INDEX auth_events_by_ip ON auth_events (ip, kind, at);
