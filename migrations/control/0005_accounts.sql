-- Lookups the account flows make on every attempt: failed logins per account and per
-- address in the last hour, a user's sessions and tokens.
CREATE INDEX auth_events_by_user ON auth_events (user_id, kind, at);
CREATE INDEX auth_events_by_email ON auth_events (email, kind, at);
CREATE INDEX one_time_tokens_by_user ON one_time_tokens (user_id, purpose);
