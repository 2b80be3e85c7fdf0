-- The clinic audit log (filled in by the audit work).
SELECT 1;
