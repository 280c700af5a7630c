-- Executions by label, for ListExecutions' `labels` filter: one row per label
-- of each execution submitted with any (most are not, and cost nothing here).
-- Written with the execution's insert and deleted with it by retention; labels
-- never change after Submit. A list by label walks this key newest first.
CREATE TABLE execution_labels (
  key            TEXT NOT NULL,
  value          TEXT NOT NULL,
  execution_seq  INTEGER NOT NULL,
  PRIMARY KEY (key, value, execution_seq)
) STRICT, WITHOUT ROWID;

INSERT INTO execution_labels (key, value, execution_seq)
  SELECT l.key, l.value, e.seq FROM executions e, json_each(e.labels) l WHERE e.labels <> '{}';
