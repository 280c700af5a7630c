-- Every change of an execution's state rewrote two indexes keyed on state.
-- ListExecutions by task now walks (task, seq), which no state change touches;
-- by state alone it walks the table newest first.
DROP INDEX executions_task_state;
DROP INDEX executions_state;
CREATE INDEX executions_task ON executions (task, seq);
