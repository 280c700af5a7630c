-- Retry control beyond Coflux: snoozes, re-runs, max_elapsed and retry budgets.

-- The current run of an execution (since its submit or its last re-run): the
-- failures, abandonments and timeouts it has had (the k of the delay rules,
-- less one; snoozes do not count), and the earliest start of its first attempt
-- (max_elapsed counts from there). NULL run_scheduled_at reads as created_at.
ALTER TABLE reprise.executions ADD COLUMN run_failures integer NOT NULL DEFAULT 0;
ALTER TABLE reprise.executions ADD COLUMN run_scheduled_at bigint;

-- Executions still open carry their run over: every failure so far counts,
-- and the run began with the first attempt's scheduled start.
UPDATE reprise.executions e SET
  run_failures = (SELECT count(*) FROM reprise.attempts a WHERE a.execution_seq = e.seq AND a.state IN (3, 4, 5)),
  run_scheduled_at = coalesce((SELECT a.scheduled_at FROM reprise.attempts a WHERE a.execution_seq = e.seq AND a.number = 1), e.next_attempt_at)
WHERE e.state IN (1, 2);

-- What followed each attempt, and which rule decided it: a number of the proto
-- enum RetryRule, when the retry or snooze was due, and for a retry that the
-- budget deferred, when the delay rules had it due. NULL for attempts recorded
-- before this migration.
ALTER TABLE reprise.attempts ADD COLUMN retry_rule smallint;
ALTER TABLE reprise.attempts ADD COLUMN retry_at bigint;
ALTER TABLE reprise.attempts ADD COLUMN retry_computed_at bigint;

-- A task's declared retry budget; NULL: none.
ALTER TABLE reprise.tasks ADD COLUMN budget_per_second double precision;
ALTER TABLE reprise.tasks ADD COLUMN budget_burst integer;

-- One token bucket per task with a budget, shared by every node: `tokens` as
-- of `at`, on the retries' schedule. NULL tokens: full. The row is created
-- when a task is declared with a budget, and a change that takes a token locks
-- it until it commits.
CREATE TABLE reprise.retry_buckets (
  task    text PRIMARY KEY,
  tokens  double precision,
  at      bigint
);
