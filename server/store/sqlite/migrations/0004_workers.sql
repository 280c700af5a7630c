-- The workers the coordinator has heard from, per task, for ListWorkers and
-- for saying why work waits. Rows are written at most every few seconds per
-- worker and task, and forgotten a week after they were last seen.
CREATE TABLE worker_tasks (
  worker_id     TEXT NOT NULL,
  task          TEXT NOT NULL,
  last_seen_at  INTEGER NOT NULL,
  PRIMARY KEY (worker_id, task)
) STRICT, WITHOUT ROWID;

CREATE INDEX worker_tasks_task ON worker_tasks (task, last_seen_at);
CREATE INDEX worker_tasks_seen ON worker_tasks (last_seen_at);
