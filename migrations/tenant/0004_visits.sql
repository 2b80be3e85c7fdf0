-- Patient search: every word of a patient's name, lower-cased, so a search can match any
-- word by prefix through an index (a LIKE '%word%' scan would not meet 50 ms at 50,000).
CREATE TABLE patient_name_tokens (
    token      TEXT NOT NULL,
    patient_id INTEGER NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    PRIMARY KEY (token, patient_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX patient_name_tokens_by_patient ON patient_name_tokens (patient_id);
-- Phone digits reversed, so a number typed with or without its country code (a suffix
-- of the stored digits) is still an index range scan.
ALTER TABLE patients ADD COLUMN phone_digits_rev TEXT NOT NULL DEFAULT '';
CREATE INDEX patients_by_phone_rev ON patients (phone_digits_rev);

-- Visits: one consultation. The doctor is the signed-in user who recorded it; their
-- name is kept as it was then, so the record still reads right after staff changes.
CREATE TABLE visits (
    id                  INTEGER PRIMARY KEY,
    patient_id          INTEGER NOT NULL REFERENCES patients (id),
    doctor_id           TEXT NOT NULL,
    doctor_name         TEXT NOT NULL,
    visited_at          TEXT NOT NULL,          -- UTC, RFC 3339
    presenting_complaints TEXT NOT NULL DEFAULT '',
    examination_notes   TEXT NOT NULL DEFAULT '',
    advice              TEXT NOT NULL DEFAULT '',
    follow_up_on        TEXT,                   -- YYYY-MM-DD, clinic-local date
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
) STRICT;
CREATE INDEX visits_by_patient ON visits (patient_id, visited_at);

CREATE TABLE diagnoses (
    id        INTEGER PRIMARY KEY,
    visit_id  INTEGER NOT NULL REFERENCES visits (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    text      TEXT NOT NULL
) STRICT;
CREATE INDEX diagnoses_by_visit ON diagnoses (visit_id, position);

CREATE TABLE prescription_items (
    id           INTEGER PRIMARY KEY,
    visit_id     INTEGER NOT NULL REFERENCES visits (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    drug         TEXT NOT NULL,
    dose         TEXT NOT NULL DEFAULT '',
    frequency    TEXT NOT NULL DEFAULT '',
    duration     TEXT NOT NULL DEFAULT '',
    instructions TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX prescription_items_by_visit ON prescription_items (visit_id, position);

-- Prescription favourites: a doctor's named sets of items, applied to a new visit in
-- one click.
CREATE TABLE favourites (
    id         INTEGER PRIMARY KEY,
    doctor_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (doctor_id, name)
) STRICT;

CREATE TABLE favourite_items (
    id           INTEGER PRIMARY KEY,
    favourite_id INTEGER NOT NULL REFERENCES favourites (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    drug         TEXT NOT NULL,
    dose         TEXT NOT NULL DEFAULT '',
    frequency    TEXT NOT NULL DEFAULT '',
    duration     TEXT NOT NULL DEFAULT '',
    instructions TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX favourite_items_by_favourite ON favourite_items (favourite_id, position);
