-- Restriction of processing (docs/patients.md): on a patient's request (while they
-- contest the record's accuracy, or object to its use) the clinic keeps the record but
-- records nothing new about the patient until the restriction is lifted. The reason is
-- what the clinic wrote when it restricted the record; it is part of the patient's record
-- and never copied into the audit log.
ALTER TABLE patients ADD COLUMN restricted_since TEXT;    -- UTC, RFC 3339; NULL: not restricted
ALTER TABLE patients ADD COLUMN restriction_reason TEXT;  -- NULL when not restricted
