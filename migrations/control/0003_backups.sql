-- Backup catalog (filled in by the backup work).
SELECT 1;
