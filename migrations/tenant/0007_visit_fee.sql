-- A visit's fee, so a patient's balance is what they were charged less what they paid.
-- Integer minor units of the clinic's currency, like payments. NULL when no fee was
-- entered: visits recorded before fees existed (and by older code during a rolling
-- deploy) stay valid and charge nothing.
ALTER TABLE visits ADD COLUMN fee_minor INTEGER CHECK (fee_minor IS NULL OR fee_minor >= 0);
