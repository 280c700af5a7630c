-- The retry budget's bucket remembers the retries it has booked ahead, so that
-- a retry due sooner is not counted after one booked later. `at` becomes a
-- double: the bucket now stands at the exact moment a token accrued.
-- `booked`: JSON {"step": ms, "runs": [[start, count], …]}, the retries booked
-- after `at`; NULL when there are none. A bucket kept before this migration
-- keeps its level and position, with nothing booked after it.
ALTER TABLE reprise.retry_buckets
  ALTER COLUMN at TYPE double precision,
  ADD COLUMN booked text;
