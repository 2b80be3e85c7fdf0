-- Patients: the clinic's register. `number` is the clinic-visible patient number,
-- assigned sequentially. Phone numbers are also kept as digits only for searching.
CREATE TABLE patients (
    id              INTEGER PRIMARY KEY,
    number          INTEGER NOT NULL UNIQUE,
    full_name       TEXT NOT NULL,
    date_of_birth   TEXT,                      -- YYYY-MM-DD, when known
    age_years       INTEGER,                   -- when only the age is known
    age_recorded_on TEXT,                      -- the date that age was given (so it can grow)
    sex             TEXT NOT NULL CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    phone           TEXT NOT NULL DEFAULT '',
    phone_digits    TEXT NOT NULL DEFAULT '',
    address         TEXT NOT NULL DEFAULT '',
    email           TEXT NOT NULL DEFAULT '',
    notes           TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;
CREATE INDEX patients_by_name ON patients (full_name COLLATE NOCASE);
CREATE INDEX patients_by_phone ON patients (phone_digits);
