-- Appointments: one row per booking. Times are UTC (RFC 3339, millisecond text, so they
-- compare as text). `doctor_id` is the control-plane user id; the name is copied so the
-- book still reads correctly after a doctor leaves the clinic.
CREATE TABLE appointments (
    id          INTEGER PRIMARY KEY,
    patient_id  INTEGER NOT NULL REFERENCES patients (id),
    doctor_id   TEXT NOT NULL,
    doctor_name TEXT NOT NULL,
    starts_at   TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('booked', 'arrived', 'in_consultation', 'done', 'cancelled', 'no_show')),
    reason      TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    CHECK (ends_at > starts_at)
) STRICT;
CREATE INDEX appointments_by_doctor_time ON appointments (doctor_id, starts_at);
CREATE INDEX appointments_by_time ON appointments (starts_at);
CREATE INDEX appointments_by_patient ON appointments (patient_id);

-- Payments: amounts are integer minor units of `currency`, never floats. The amount is
-- the sum of the receipt's items. `receipt_number` is the clinic's own sequence.
-- `visit_id` optionally ties a payment to a visit (no foreign key: visits are optional).
CREATE TABLE payments (
    id               INTEGER PRIMARY KEY,
    receipt_number   INTEGER NOT NULL UNIQUE,
    patient_id       INTEGER NOT NULL REFERENCES patients (id),
    visit_id         INTEGER,
    amount_minor     INTEGER NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL,
    method           TEXT NOT NULL CHECK (method IN ('cash', 'card', 'mobile', 'bank_transfer', 'other')),
    reference        TEXT NOT NULL DEFAULT '',
    recorded_by_id   TEXT NOT NULL,
    recorded_by_name TEXT NOT NULL,
    received_at      TEXT NOT NULL
) STRICT;
CREATE INDEX payments_by_time ON payments (received_at);
CREATE INDEX payments_by_patient ON payments (patient_id);

CREATE TABLE payment_items (
    payment_id   INTEGER NOT NULL REFERENCES payments (id),
    position     INTEGER NOT NULL,
    description  TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    PRIMARY KEY (payment_id, position)
) STRICT, WITHOUT ROWID;

-- The dashboard's "recent patients" reads the register newest-changed first.
CREATE INDEX patients_by_updated ON patients (updated_at);
