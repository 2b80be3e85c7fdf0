-- Outgoing mail: the durable outbox (filled in by the mail work).
SELECT 1;
