-- Maintenance windows: a silence may recur on a cron schedule (UTC) for a duration,
-- within its starts_at .. ends_at validity.
ALTER TABLE silences ADD COLUMN schedule text;
ALTER TABLE silences ADD COLUMN duration_secs bigint;
ALTER TABLE silences ADD CONSTRAINT silences_recurrence_complete
    CHECK ((schedule IS NULL) = (duration_secs IS NULL) AND (duration_secs IS NULL OR duration_secs > 0));
