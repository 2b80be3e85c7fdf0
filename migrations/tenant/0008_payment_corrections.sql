-- Refunds and voids of payments. A payment row is never changed or deleted: correcting
-- it adds a row here, linked to it, with its own receipt number from the same sequence
-- as payments (a number is used by a payment or by a correction, never by both).
--
-- `amount_minor` is the money going back to the patient (a refund) or cancelled (a void),
-- in integer minor units of `currency`, always positive; reports and balances subtract
-- it. A void cancels the whole payment and is allowed only while nothing of it was
-- refunded; a voided payment cannot be refunded. The refunds of a payment never add up
-- to more than its amount (checked in the write transaction).
--
-- `reason` is required free text and may name the patient's circumstances: it stays in
-- this row only; the audit log refers to the row instead of copying it.
CREATE TABLE payment_corrections (
    id               INTEGER PRIMARY KEY,
    payment_id       INTEGER NOT NULL REFERENCES payments (id),
    kind             TEXT NOT NULL CHECK (kind IN ('refund', 'void')),
    receipt_number   INTEGER NOT NULL UNIQUE,
    amount_minor     INTEGER NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL,
    method           TEXT NOT NULL CHECK (method IN ('cash', 'card', 'mobile', 'bank_transfer', 'other')),
    reason           TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    recorded_by_id   TEXT NOT NULL,
    recorded_by_name TEXT NOT NULL,
    recorded_at      TEXT NOT NULL
) STRICT;
CREATE INDEX payment_corrections_by_payment ON payment_corrections (payment_id);
CREATE INDEX payment_corrections_by_time ON payment_corrections (recorded_at);
-- At most one void per payment.
CREATE UNIQUE INDEX payment_corrections_one_void ON payment_corrections (payment_id) WHERE kind = 'void';

-- One receipt sequence across payments and corrections.
CREATE TRIGGER payment_corrections_receipt_number_free
BEFORE INSERT ON payment_corrections
WHEN EXISTS (SELECT 1 FROM payments WHERE receipt_number = NEW.receipt_number)
BEGIN
    SELECT RAISE(ABORT, 'receipt number already used by a payment');
END;
CREATE TRIGGER payments_receipt_number_free
BEFORE INSERT ON payments
WHEN EXISTS (SELECT 1 FROM payment_corrections WHERE receipt_number = NEW.receipt_number)
BEGIN
    SELECT RAISE(ABORT, 'receipt number already used by a refund or void');
END;
