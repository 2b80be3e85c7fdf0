-- The clinic's audit log: every view, change, print and export of its records and
-- every access by the operator, append-only and hash-chained (docs/audit.md).
--
-- Rows are written only by ward_clinic::audit::record, inside the transaction of the
-- change they describe. `seq` is assigned by the writer (head + 1, from 1, no gaps);
-- `hash = SHA-256(prev_hash || canonical encoding of seq .. detail)`.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,                 -- UTC, ward_core::format_time
    actor_kind   TEXT NOT NULL CHECK (actor_kind IN ('user', 'operator', 'system')),
    actor_id     TEXT,                          -- user id; NULL for the operator and the system
    actor_name   TEXT NOT NULL,                 -- display name at that moment
    actor_role   TEXT,                          -- role in the clinic at that moment (users)
    ip           TEXT,                          -- client address as the server saw it
    action       TEXT NOT NULL,                 -- view, create, update, delete, print, export, …
    entity_type  TEXT,                          -- patient, visit, prescription, …
    entity_id    TEXT,
    reason       TEXT,                          -- free text; required for operator access
    diff         TEXT,                          -- JSON {"field": [old, new]} of changed fields only
    detail       TEXT,                          -- free text: which document, which backup, …
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL
) STRICT;

-- The viewer (ward_clinic::audit::search) filters by actor, record, action and date
-- range, newest first by time: each index ends in `at` (and, implicitly, seq), so any one
-- equality filter plus a date range reads only the rows it shows, without sorting.
CREATE INDEX audit_log_by_at ON audit_log (at);
CREATE INDEX audit_log_by_actor ON audit_log (actor_id, at);
CREATE INDEX audit_log_by_entity ON audit_log (entity_type, entity_id, at);
CREATE INDEX audit_log_by_action ON audit_log (action, at);

-- Rows are only appended, at head + 1: this also stops INSERT OR REPLACE, which would
-- otherwise overwrite a row without firing the DELETE trigger.
CREATE TRIGGER audit_log_append_only BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM audit_log)
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: rows are added at the end');
END;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: rows cannot be changed');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: rows cannot be deleted');
END;
