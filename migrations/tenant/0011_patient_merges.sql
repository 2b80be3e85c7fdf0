-- Merging duplicates: a patient registered twice becomes one. The merged record stays
-- (its number still finds the survivor) and says which record it went into; each merge
-- lists what it moved, so it can be undone exactly.
ALTER TABLE patients ADD COLUMN merged_into INTEGER REFERENCES patients (id);
CREATE TABLE patient_merges (
    id             INTEGER PRIMARY KEY,
    survivor_id    INTEGER NOT NULL REFERENCES patients (id),
    merged_id      INTEGER NOT NULL REFERENCES patients (id),
    moved          TEXT NOT NULL,        -- JSON: {"visits": [ids], "appointments": [ids], "payments": [ids]}
    merged_at      TEXT NOT NULL,        -- UTC, RFC 3339
    merged_by_id   TEXT NOT NULL,
    merged_by_name TEXT NOT NULL,
    undone_at      TEXT,                 -- when the merge was undone, if it was
    undone_by_name TEXT,
    CHECK (survivor_id <> merged_id)
) STRICT;
CREATE INDEX patient_merges_by_survivor ON patient_merges (survivor_id);
CREATE INDEX patient_merges_by_merged ON patient_merges (merged_id);
