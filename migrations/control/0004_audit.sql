-- Audit anchors and the auth log's hash chain (docs/audit.md).

-- The last audit-chain head seen for each clinic. A clinic log shorter than its anchor,
-- or whose hash at the anchored sequence number differs, was truncated or rewritten.
CREATE TABLE audit_anchors (
    clinic_id    TEXT PRIMARY KEY REFERENCES clinics (id),
    seq          INTEGER NOT NULL,
    hash         BLOB NOT NULL,
    anchored_at  TEXT NOT NULL
) STRICT;

-- The auth log is chained the same way as a clinic's audit log:
-- hash = SHA-256(prev_hash || canonical encoding of seq .. detail).
ALTER TABLE auth_events ADD COLUMN prev_hash BLOB;
ALTER TABLE auth_events ADD COLUMN hash BLOB;

CREATE TRIGGER auth_events_no_update BEFORE UPDATE ON auth_events
BEGIN
    SELECT RAISE(ABORT, 'the auth log is append-only: events cannot be changed');
END;

CREATE TRIGGER auth_events_no_delete BEFORE DELETE ON auth_events
BEGIN
    SELECT RAISE(ABORT, 'the auth log is append-only: events cannot be deleted');
END;
