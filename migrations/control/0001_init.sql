-- The control plane: who the clinics are, who the people are, and how they get in.
-- Times are RFC 3339 UTC text with milliseconds (fixed width, so they sort as text).

CREATE TABLE clinics (
    id              TEXT PRIMARY KEY,            -- UUID; the only thing that names the file
    slug            TEXT NOT NULL UNIQUE,        -- URL name
    name            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'suspended', 'closed', 'purged')),
    created_at      TEXT NOT NULL,
    closed_at       TEXT,
    closed_by       TEXT,
    purged_at       TEXT,
    schema_version  INTEGER NOT NULL DEFAULT 0,  -- tenant schema version last seen
    wrapped_key     BLOB,                        -- data key sealed by the master key; NULL once purged
    open_error      TEXT,                        -- why the clinic last failed to open, if it did
    open_error_at   TEXT
) STRICT;

CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    email               TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name                TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    email_verified_at   TEXT,
    disabled_at         TEXT,
    password_changed_at TEXT,
    created_at          TEXT NOT NULL
) STRICT;

CREATE TABLE memberships (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    clinic_id   TEXT NOT NULL REFERENCES clinics (id),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'doctor', 'receptionist', 'billing')),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, clinic_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX memberships_by_clinic ON memberships (clinic_id);

CREATE TABLE sessions (
    token_hash        BLOB PRIMARY KEY,          -- SHA-256 of the cookie value; the value itself is never stored
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    authenticated_at  TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,
    ip                TEXT,
    user_agent        TEXT,
    revoked_at        TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE one_time_tokens (
    token_hash  BLOB PRIMARY KEY,                -- SHA-256 of the link's token
    purpose     TEXT NOT NULL,                   -- verify_email, reset_password, invite, export
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    clinic_id   TEXT REFERENCES clinics (id),
    email       TEXT,
    payload     TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
) STRICT;

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    clinic_id   TEXT REFERENCES clinics (id),
    payload     TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_after   TEXT NOT NULL,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT
) STRICT;
CREATE INDEX jobs_ready ON jobs (status, run_after);

CREATE TABLE auth_events (
    seq         INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT,
    email       TEXT,
    ip          TEXT,
    user_agent  TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT
) STRICT;

-- Every change of a clinic's lifecycle, by whom and when.
CREATE TABLE clinic_events (
    seq         INTEGER PRIMARY KEY,
    clinic_id   TEXT NOT NULL REFERENCES clinics (id),
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT
) STRICT;
CREATE INDEX clinic_events_by_clinic ON clinic_events (clinic_id, seq);
