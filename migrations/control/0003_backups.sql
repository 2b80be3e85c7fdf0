-- The backup catalog: every backup of every clinic and of the control plane itself.
-- Each backup file also has a JSON manifest beside it (same facts, no clinic data), so
-- the catalog can be rebuilt from the backup folder and the control plane restored
-- without it.

CREATE TABLE backups (
    id              TEXT PRIMARY KEY,              -- UUID v7; also in the file name
    clinic_id       TEXT REFERENCES clinics (id),  -- NULL: the control plane
    kind            TEXT NOT NULL DEFAULT 'snapshot'
                    CHECK (kind IN ('snapshot', 'wal_segment')),
    base_id         TEXT REFERENCES backups (id),  -- a WAL segment's snapshot; NULL for snapshots
    target          TEXT NOT NULL DEFAULT 'dir'    -- where the file is: 'dir' = WARD_BACKUP_DIR
                    CHECK (target IN ('dir')),
    file            TEXT NOT NULL,                 -- relative to the target, built from ids and times
    taken_at        TEXT NOT NULL,                 -- the moment the backup represents
    size            INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    schema_version  INTEGER NOT NULL,
    audit_seq       INTEGER,                       -- audit chain head at taken_at, when known
    audit_hash      TEXT,
    trigger         TEXT NOT NULL,                 -- 'schedule', 'daily', 'operator'
    verified_at     TEXT,                          -- last successful check
    verify_error    TEXT,                          -- set once a check failed: never restored from
    deleted_at      TEXT                           -- removed by retention
) STRICT;
CREATE INDEX backups_by_clinic ON backups (clinic_id, taken_at);

-- What the scheduler knows per clinic ('control' for the control plane), so one pass over
-- thousands of clinics is one query and a stat per file.
CREATE TABLE backup_state (
    scope               TEXT PRIMARY KEY,          -- clinic id or 'control'
    fingerprint         TEXT,                      -- file summary when the last backup began
    last_backup_at      TEXT,                      -- taken_at of the newest backup
    last_verified_at    TEXT,                      -- taken_at of the newest verified backup
    last_error          TEXT,                      -- last failed backup or check (operator only)
    last_error_at       TEXT,
    drill_at            TEXT,                      -- last restore drill
    drill_ok            INTEGER,                   -- 1 passed, 0 failed
    drill_error         TEXT
) STRICT;

-- When the daily jobs last ran, so a restart does not repeat or skip them.
CREATE TABLE backup_schedule (
    job     TEXT PRIMARY KEY,                      -- 'full_pass', 'drill'
    ran_at  TEXT NOT NULL
) STRICT;

-- Every restore, of a clinic or of the control plane.
CREATE TABLE restores (
    seq         INTEGER PRIMARY KEY,
    scope       TEXT NOT NULL,                     -- clinic id or 'control'
    backup_id   TEXT NOT NULL,
    backup_at   TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    pre_restore TEXT,                              -- file name the replaced database was kept under
    detail      TEXT
) STRICT;
