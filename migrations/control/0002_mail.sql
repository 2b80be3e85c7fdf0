-- Outgoing mail: the durable outbox. A mail is stored here before anyone is told it was
-- sent, and stays until it is delivered or given up on, so a mail server being down loses
-- nothing. Rows are never deleted silently; a given-up row keeps its last error.
-- Times are RFC 3339 UTC text with milliseconds, like everywhere else.

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    to_addr          TEXT NOT NULL,
    to_name          TEXT NOT NULL,             -- display name, control characters already removed
    subject          TEXT NOT NULL,             -- a fixed string per kind of mail, never personal data
    body_text        TEXT NOT NULL,             -- emptied once delivered: it holds a live one-time link
    body_html        TEXT NOT NULL,             -- emptied once delivered, likewise
    created_at       TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,                      -- NULL once sent or given up
    last_error       TEXT,
    sent_at          TEXT,
    failed_at        TEXT,                      -- set when delivery was given up
    CHECK (sent_at IS NULL OR failed_at IS NULL),
    CHECK ((next_attempt_at IS NULL) = (sent_at IS NOT NULL OR failed_at IS NOT NULL))
) STRICT;

-- What the delivery worker asks for: pending rows in due order.
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
