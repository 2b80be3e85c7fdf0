-- Audit anchors and the auth log hash chain (filled in by the audit work).
SELECT 1;
