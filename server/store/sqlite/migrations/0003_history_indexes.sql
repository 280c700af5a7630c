-- Nothing that RPCs or the timer run may cost more as finished executions pile up.

-- Lists filtered by state walk the executions in that state, newest first,
-- instead of the whole table. SUCCEEDED, by far the most common state, is left
-- out, so that the common path (pending, running, succeeded) writes each index
-- only twice; lists of SUCCEEDED walk a bounded window of the table instead.
CREATE INDEX executions_state ON executions (state, seq) WHERE state <> 3;
CREATE INDEX executions_task_state ON executions (task, state, seq) WHERE state <> 3;

-- Executions by task and state, for metrics: the store adds up the changes of
-- each transaction and applies them before it commits, so a scrape reads a few
-- rows instead of counting the table.
CREATE TABLE execution_counts (
  task   TEXT NOT NULL,
  state  INTEGER NOT NULL,
  count  INTEGER NOT NULL,
  PRIMARY KEY (task, state)
) STRICT, WITHOUT ROWID;

INSERT INTO execution_counts (task, state, count) SELECT task, state, count(*) FROM executions GROUP BY task, state;
