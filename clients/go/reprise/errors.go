package reprise

import (
	"errors"
	"fmt"
	"time"
)

// Causes of a handler's context ending, as context.Cause reports them. The
// worker reports no outcome for ErrCancelled and ErrLeaseLost, because the
// coordinator has already settled the attempt and would refuse it.
var (
	// ErrCancelled: the execution was cancelled (CancelExecution).
	ErrCancelled = errors.New("reprise: execution cancelled")
	// ErrLeaseLost: the coordinator no longer holds this worker's lease (it
	// expired and the attempt was abandoned, it timed out, or it was settled).
	ErrLeaseLost = errors.New("reprise: lease lost")
	// ErrTimeout: the attempt ran past its task's Timeout.
	ErrTimeout = errors.New("reprise: attempt timed out")
	// ErrShutdown: the worker is shutting down and its ShutdownGrace ran out.
	ErrShutdown = errors.New("reprise: worker shutting down")
)

// RetryAfterError asks the coordinator to wait After before the next retry
// instead of the policy's computed delay, for example from an HTTP
// Retry-After header. The retry still counts against the limit, and it only
// happens if the failure is retryable. Build it with RetryAfter.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

// RetryAfter wraps err so that the next retry waits d (sent to the
// coordinator as Failure.retry_after). The handler returns it, possibly
// wrapped further:
//
//	return nil, reprise.RetryAfter(30*time.Second, fmt.Errorf("rate limited: %w", err))
//
// A zero or negative d means the computed delay.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	return &RetryAfterError{After: d, Err: err}
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// PermanentError marks a failure that must not be retried, whatever the
// task's When condition says. Build it with Permanent.
type PermanentError struct{ Err error }

// Permanent wraps err so that the attempt fails as non-retryable and the
// execution ends FAILED without using up its retries.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &PermanentError{Err: err}
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// SnoozeError asks the coordinator to run the execution again after Delay,
// without counting a failure: the attempt ends SNOOZED and uses up no retry.
// Build it with Snooze.
type SnoozeError struct {
	Delay time.Duration
}

// Snooze is the error a handler returns, possibly wrapped, when it did not do
// its work and wants to be run again later, for example because what it
// waits for is not ready yet:
//
//	if !ready {
//		return nil, reprise.Snooze(30 * time.Second)
//	}
//
// The worker reports a snooze (Outcome.snooze), not a failure: the attempt
// ends SNOOZED and the execution is due again d after the report. A snooze
// uses up no retry and is not counted in the k of the backoff rules, so it
// is allowed whatever the task's Retries, even at most once, and the task's
// When is not asked. A zero or negative d means at once; more than 365 days
// is cut to 365 days.
func Snooze(d time.Duration) error { return &SnoozeError{Delay: d} }

func (e *SnoozeError) Error() string { return fmt.Sprintf("reprise: snoozed for %v", e.Delay) }

// PanicError is what a handler's panic becomes. It is retryable like any other
// error (subject to When), and its stack is reported as the failure's trace.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// FailureTyper lets an error choose the failure type the coordinator records
// (Failure.type). Without it, the type is the Go type of the first error in
// the chain that is more than a wrapper (fmt.Errorf's %w, errors.Join,
// RetryAfter, Permanent) or a bare errors.New message, such as
// "main.HTTPError"; a chain of only those is "error".
type FailureTyper interface {
	FailureType() string
}
