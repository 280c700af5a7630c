-- Executions by label, for ListExecutions' `labels` filter: one row per label
-- of each execution submitted with any (most are not, and cost nothing here).
-- Written in the statement that inserts the execution and deleted with it by
-- retention; labels never change after Submit. A list by label walks this key
-- newest first.
CREATE TABLE reprise.execution_labels (
  key            text NOT NULL,
  value          text NOT NULL,
  execution_seq  bigint NOT NULL,
  PRIMARY KEY (key, value, execution_seq)
);

INSERT INTO reprise.execution_labels (key, value, execution_seq)
  SELECT l.key, l.value, e.seq FROM reprise.executions e, json_each_text(e.labels::json) l WHERE e.labels <> '{}';
