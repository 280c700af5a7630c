-- The PostgreSQL store's schema, in a schema of its own. Times are
-- milliseconds since the epoch (bigint), as in the SQLite store: every node
-- decides with the same arithmetic, on the database's clock (see clock.ts).
CREATE SCHEMA IF NOT EXISTS reprise;

CREATE TABLE reprise.tasks (
  name          text PRIMARY KEY,
  retry_policy  bytea,             -- NULL: no retries
  timeout_ms    bigint,            -- NULL: no timeout
  worker_id     text NOT NULL,
  declared_at   bigint NOT NULL
);

CREATE TABLE reprise.executions (
  seq                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id                     text NOT NULL UNIQUE,
  task                   text NOT NULL,
  state                  smallint NOT NULL,
  version                integer NOT NULL DEFAULT 1,  -- bumped by every change, so watchers skip repeats
  arguments              bytea NOT NULL,
  arguments_type         text NOT NULL,
  retry_policy           bytea,             -- the Submit's own policy; NULL: the task's declaration applies
  result                 bytea,
  result_type            text,
  failure_type           text,
  failure_message        text,
  failure_stack          text,
  failure_non_retryable  boolean,
  failure_retry_after_ms bigint,
  next_attempt_at        bigint,            -- set only while PENDING
  created_at             bigint NOT NULL,
  finished_at            bigint,
  idempotency_key        text UNIQUE,
  labels                 text NOT NULL,     -- JSON object of strings
  attempt_count          integer NOT NULL DEFAULT 0
);

-- Claiming due work walks this one, per task, in due order.
CREATE INDEX executions_due ON reprise.executions (task, next_attempt_at) WHERE state = 1;
CREATE INDEX executions_next ON reprise.executions (next_attempt_at) WHERE state = 1;
CREATE INDEX executions_task ON reprise.executions (task, seq);
-- Lists by state: every state but SUCCEEDED, which would make them as large as the history.
CREATE INDEX executions_state ON reprise.executions (state, seq) WHERE state <> 3;
CREATE INDEX executions_task_state ON reprise.executions (task, state, seq) WHERE state <> 3;

CREATE TABLE reprise.attempts (
  id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  execution_seq          bigint NOT NULL REFERENCES reprise.executions (seq),
  number                 integer NOT NULL,
  state                  smallint NOT NULL,
  worker_id              text NOT NULL,
  scheduled_at           bigint NOT NULL,
  started_at             bigint NOT NULL,
  finished_at            bigint,
  lease_secret           bytea NOT NULL,
  lease_ms               bigint NOT NULL,
  lease_expires_at       bigint NOT NULL,
  timeout_at             bigint,
  failure_type           text,
  failure_message        text,
  failure_stack          text,
  failure_non_retryable  boolean,
  failure_retry_after_ms bigint,
  retry_policy           bytea,             -- the policy that decided what followed
  UNIQUE (execution_seq, number)
);

CREATE INDEX attempts_lease ON reprise.attempts (lease_expires_at) WHERE state = 1;
CREATE INDEX attempts_timeout ON reprise.attempts (timeout_at) WHERE state = 1 AND timeout_at IS NOT NULL;

-- Execution counts by task and state for metrics. Each change appends its
-- deltas to execution_count_changes (no row that every writer updates), and
-- one node at a time folds them into execution_counts.
CREATE TABLE reprise.execution_counts (
  task   text NOT NULL,
  state  smallint NOT NULL,
  count  bigint NOT NULL,
  PRIMARY KEY (task, state)
);

CREATE TABLE reprise.execution_count_changes (
  id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  task   text NOT NULL,
  state  smallint NOT NULL,
  delta  integer NOT NULL
);

CREATE TABLE reprise.worker_tasks (
  worker_id     text NOT NULL,
  task          text NOT NULL,
  last_seen_at  bigint NOT NULL,
  PRIMARY KEY (worker_id, task)
);

CREATE INDEX worker_tasks_task ON reprise.worker_tasks (task, last_seen_at);
CREATE INDEX worker_tasks_seen ON reprise.worker_tasks (last_seen_at);
