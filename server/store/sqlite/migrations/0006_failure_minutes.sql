-- Failures by task, minute and failure type, for the console's tasks page:
-- how many attempts failed (or were abandoned or timed out) and how many
-- retries were scheduled in the last hour, and the most frequent types. The
-- store adds up each batch's failures and writes them as it commits; rows
-- older than a day are deleted.
CREATE TABLE failure_minutes (
  task      TEXT NOT NULL,
  minute    INTEGER NOT NULL,   -- Unix milliseconds / 60000
  type      TEXT NOT NULL,
  failures  INTEGER NOT NULL,
  retries   INTEGER NOT NULL,
  PRIMARY KEY (task, minute, type)
) STRICT, WITHOUT ROWID;

CREATE INDEX failure_minutes_minute ON failure_minutes (minute);
