-- Files kept next to a patient or a visit (docs/attachments.md): lab reports, imaging,
-- photos, consent forms. The bytes live encrypted in the attachment store under a random
-- name; the row holds that file's own key, so the file can be read only with this
-- (encrypted) database. A deleted attachment keeps its row (who, when, why) but not its
-- object.
CREATE TABLE attachments (
    id               INTEGER PRIMARY KEY,
    patient_id       INTEGER NOT NULL REFERENCES patients (id),
    visit_id         INTEGER REFERENCES visits (id),
    kind             TEXT NOT NULL CHECK (kind IN ('lab_report', 'imaging', 'photo', 'consent', 'other')),
    title            TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    size             INTEGER NOT NULL,       -- plaintext bytes
    sha256           TEXT NOT NULL,          -- hex digest of the plaintext
    object_name      TEXT NOT NULL UNIQUE,   -- random; names nothing about the patient
    file_key         BLOB NOT NULL,          -- 32 bytes, this file's own key
    uploaded_at      TEXT NOT NULL,          -- UTC, RFC 3339
    uploaded_by_id   TEXT NOT NULL,
    uploaded_by_name TEXT NOT NULL,
    deleted_at       TEXT,                   -- UTC, RFC 3339; NULL: not deleted
    deleted_by_name  TEXT,
    delete_reason    TEXT
) STRICT;
CREATE INDEX attachments_by_patient ON attachments (patient_id);
