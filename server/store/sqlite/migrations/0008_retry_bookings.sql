-- The retry budget's bucket remembers the retries it has booked ahead, so that
-- a retry due sooner is not counted after one booked later. `at` becomes REAL:
-- the bucket now stands at the exact moment a token accrued, not a rounded ms.
-- `booked`: JSON {"step": ms, "runs": [[start, count], …]}, the retries booked
-- after `at`; NULL when there are none. A bucket kept before this migration
-- keeps its level and position, with nothing booked after it.
CREATE TABLE retry_buckets_booked (
  task    TEXT PRIMARY KEY,
  tokens  REAL,
  at      REAL,
  booked  TEXT
) STRICT, WITHOUT ROWID;

INSERT INTO retry_buckets_booked (task, tokens, at) SELECT task, tokens, at FROM retry_buckets;
DROP TABLE retry_buckets;
ALTER TABLE retry_buckets_booked RENAME TO retry_buckets;
