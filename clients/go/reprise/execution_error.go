package reprise

import (
	"fmt"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
)

// Kind says how an execution ended without succeeding.
type Kind int

const (
	// Failed: the last attempt failed non-retryably or with no retries left.
	Failed Kind = iota + 1
	// Abandoned: the last attempt's lease expired with no retries left.
	Abandoned
	// TimedOut: the last attempt ran past its task's timeout with no retries left.
	TimedOut
	// Cancelled: CancelExecution ended it.
	Cancelled
)

func (k Kind) String() string {
	switch k {
	case Failed:
		return "FAILED"
	case Abandoned:
		return "ABANDONED"
	case TimedOut:
		return "TIMED_OUT"
	case Cancelled:
		return "CANCELLED"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ExecutionError is what Client.Result returns for an execution that ended
// without succeeding. Use errors.As to read it:
//
//	var execErr *reprise.ExecutionError
//	if errors.As(err, &execErr) && execErr.Kind == reprise.Failed { ... }
type ExecutionError struct {
	ExecutionID string
	Task        string
	Kind        Kind
	// Type and Message are the final failure's (empty for Cancelled).
	Type         string
	Message      string
	NonRetryable bool
	// Attempts is how many attempts ran.
	Attempts int
}

func (e *ExecutionError) Error() string {
	if e.Kind == Cancelled {
		return fmt.Sprintf("reprise: execution %s of %s was cancelled", e.ExecutionID, e.Task)
	}
	return fmt.Sprintf("reprise: execution %s of %s ended %s after %d attempt(s): %s: %s",
		e.ExecutionID, e.Task, e.Kind, e.Attempts, e.Type, e.Message)
}

var kindOfState = map[reprisev1.ExecutionState]Kind{
	reprisev1.ExecutionState_EXECUTION_STATE_FAILED:    Failed,
	reprisev1.ExecutionState_EXECUTION_STATE_ABANDONED: Abandoned,
	reprisev1.ExecutionState_EXECUTION_STATE_TIMED_OUT: TimedOut,
	reprisev1.ExecutionState_EXECUTION_STATE_CANCELLED: Cancelled,
}

func executionError(ex *reprisev1.Execution) *ExecutionError {
	e := &ExecutionError{
		ExecutionID: ex.GetId(),
		Task:        ex.GetTask(),
		Kind:        kindOfState[ex.GetState()],
		Attempts:    len(ex.GetAttempts()),
	}
	if f := ex.GetFailure(); f != nil {
		e.Type, e.Message, e.NonRetryable = f.GetType(), f.GetMessage(), f.GetNonRetryable()
	}
	return e
}

func isTerminal(state reprisev1.ExecutionState) bool {
	return state == reprisev1.ExecutionState_EXECUTION_STATE_SUCCEEDED || kindOfState[state] != 0
}
