-- A patient's rights over their data (docs/patients.md). A legal hold keeps a record
-- from erasure while the clinic must keep it (a claim, an inquiry); an erased record
-- keeps its number, its visits' dates and fees and its payments' amounts for the books,
-- and says when it was erased.
ALTER TABLE patients ADD COLUMN legal_hold_since TEXT;  -- UTC, RFC 3339; NULL: no hold
ALTER TABLE patients ADD COLUMN erased_at TEXT;         -- UTC, RFC 3339; NULL: not erased
