-- Reprise schema, version 1. Migrations are append-only: never edit a shipped file.
-- Times are Unix milliseconds. States are the numbers of the proto enums
-- ExecutionState and AttemptState. Retry policies are serialized reprise.v1.RetryPolicy.

CREATE TABLE tasks (
  name          TEXT PRIMARY KEY,
  retry_policy  BLOB,              -- NULL: no retries
  timeout_ms    INTEGER,           -- NULL: no timeout
  worker_id     TEXT NOT NULL,
  declared_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE executions (
  seq                INTEGER PRIMARY KEY,
  id                 TEXT NOT NULL UNIQUE,
  task               TEXT NOT NULL,
  state              INTEGER NOT NULL,
  version            INTEGER NOT NULL DEFAULT 1,  -- bumped by every change, so watchers skip repeats
  arguments          BLOB NOT NULL,
  arguments_type     TEXT NOT NULL,
  retry_policy       BLOB,              -- the Submit's own policy; NULL: the task's declaration applies
  result             BLOB,
  result_type        TEXT,
  failure_type       TEXT,
  failure_message    TEXT,
  failure_stack      TEXT,
  failure_non_retryable INTEGER,
  failure_retry_after_ms INTEGER,
  next_attempt_at    INTEGER,           -- set only while PENDING
  created_at         INTEGER NOT NULL,
  finished_at        INTEGER,
  idempotency_key    TEXT UNIQUE,
  labels             TEXT NOT NULL,     -- JSON object of strings
  attempt_count      INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Due work, oldest first, per task.
CREATE INDEX executions_due ON executions (task, next_attempt_at) WHERE state = 1;
-- The next retry or delayed start to wake up for.
CREATE INDEX executions_next ON executions (next_attempt_at) WHERE state = 1;
CREATE INDEX executions_task_state ON executions (task, state, seq);
CREATE INDEX executions_state ON executions (state, seq);

CREATE TABLE attempts (
  id                 INTEGER PRIMARY KEY,
  execution_seq      INTEGER NOT NULL REFERENCES executions (seq),
  number             INTEGER NOT NULL,
  state              INTEGER NOT NULL,
  worker_id          TEXT NOT NULL,
  scheduled_at       INTEGER NOT NULL,
  started_at         INTEGER NOT NULL,
  finished_at        INTEGER,
  lease_secret       BLOB NOT NULL,
  lease_ms           INTEGER NOT NULL,
  lease_expires_at   INTEGER NOT NULL,
  timeout_at         INTEGER,
  failure_type       TEXT,
  failure_message    TEXT,
  failure_stack      TEXT,
  failure_non_retryable INTEGER,
  failure_retry_after_ms INTEGER,
  retry_policy       BLOB,              -- the policy that decided what followed
  UNIQUE (execution_seq, number)
) STRICT;

-- Running attempts by deadline: lease expiry and timeout.
CREATE INDEX attempts_lease ON attempts (lease_expires_at) WHERE state = 1;
CREATE INDEX attempts_timeout ON attempts (timeout_at) WHERE state = 1 AND timeout_at IS NOT NULL;
