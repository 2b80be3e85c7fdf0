-- Amendments: a saved visit or patient record is never overwritten without its history.
-- Every version of a visit's clinical content and of a patient's demographics is kept
-- whole, as JSON, with who saved it, when, and (for every version after the first) the
-- reason given. The `visits` and `patients` rows hold the current version, for lists
-- and search; `version` says which one that is.
CREATE TABLE visit_versions (
    visit_id    INTEGER NOT NULL REFERENCES visits (id),
    version     INTEGER NOT NULL CHECK (version >= 1),
    content     TEXT NOT NULL,          -- JSON: complaints, notes, diagnoses, items, advice, follow-up, fee
    author_id   TEXT NOT NULL,
    author_name TEXT NOT NULL,
    saved_at    TEXT NOT NULL,          -- UTC, RFC 3339
    reason      TEXT,                   -- why it was amended; NULL for the first version
    PRIMARY KEY (visit_id, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE patient_versions (
    patient_id  INTEGER NOT NULL REFERENCES patients (id),
    version     INTEGER NOT NULL CHECK (version >= 1),
    content     TEXT NOT NULL,          -- JSON: the demographic fields
    author_id   TEXT NOT NULL,
    author_name TEXT NOT NULL,
    saved_at    TEXT NOT NULL,
    reason      TEXT,
    PRIMARY KEY (patient_id, version)
) STRICT, WITHOUT ROWID;

-- A version, once written, is not changed.
CREATE TRIGGER visit_versions_kept BEFORE UPDATE ON visit_versions
BEGIN
    SELECT RAISE(ABORT, 'a saved version of a visit is kept as written');
END;
CREATE TRIGGER patient_versions_kept BEFORE UPDATE ON patient_versions
BEGIN
    SELECT RAISE(ABORT, 'a saved version of a patient is kept as written');
END;

ALTER TABLE visits ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE patients ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

-- Records saved before versions were kept: their current content becomes version 1,
-- saved by the doctor who recorded the visit (for a patient: "registration"), at the
-- time of the last change.
INSERT INTO visit_versions (visit_id, version, content, author_id, author_name, saved_at, reason)
SELECT v.id, 1,
       json_object(
           'presenting_complaints', v.presenting_complaints,
           'examination_notes', v.examination_notes,
           -- json(): a subquery's result is text to json_object; this makes it a list.
           'diagnoses', json((SELECT json_group_array(d.text)
                                FROM (SELECT text FROM diagnoses WHERE visit_id = v.id ORDER BY position) AS d)),
           'items', json((SELECT json_group_array(json(i.j))
                            FROM (SELECT json_object('drug', drug, 'dose', dose, 'frequency', frequency,
                                                     'duration', duration, 'instructions', instructions) AS j
                                    FROM prescription_items WHERE visit_id = v.id ORDER BY position) AS i)),
           'advice', v.advice,
           'follow_up_on', v.follow_up_on,
           'fee_minor', v.fee_minor),
       v.doctor_id, v.doctor_name, v.updated_at, NULL
  FROM visits AS v;

INSERT INTO patient_versions (patient_id, version, content, author_id, author_name, saved_at, reason)
SELECT p.id, 1,
       json_object(
           'full_name', p.full_name,
           'date_of_birth', p.date_of_birth,
           'age_years', p.age_years,
           'sex', p.sex,
           'phone', p.phone,
           'address', p.address,
           'email', p.email,
           'notes', p.notes),
       '', 'Registration', p.updated_at, NULL
  FROM patients AS p;
