-- A clinic's own database. Settings are the clinic's letterhead and preferences;
-- the domain tables arrive with the features that use them.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
