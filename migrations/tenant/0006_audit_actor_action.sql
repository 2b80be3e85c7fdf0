-- The audit viewer filters by staff member and action together; without this index a
-- person with many rows and none of that action made the log scan all of theirs.
CREATE INDEX audit_log_by_actor_action ON audit_log (actor_id, action, at);
