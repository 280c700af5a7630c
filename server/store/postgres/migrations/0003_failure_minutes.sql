-- Failures by task, minute and failure type, for the console's tasks page:
-- how many attempts failed (or were abandoned or timed out) and how many
-- retries were scheduled in the last hour, and the most frequent types. Each
-- change appends its sums with its COMMIT (no row that every writer updates);
-- readers add them up, and rows older than a day are deleted.
CREATE TABLE reprise.failure_minutes (
  task      text NOT NULL,
  minute    bigint NOT NULL,    -- Unix milliseconds / 60000
  type      text NOT NULL,
  failures  integer NOT NULL,
  retries   integer NOT NULL
);

CREATE INDEX failure_minutes_minute ON reprise.failure_minutes (minute);
