package reprise

import (
	"context"
	"encoding/json"
	"fmt"
)

// Handler runs one attempt of a task. args are the execution's arguments as
// submitted (JSON unless the caller sent another Payload). The returned value
// is the result, encoded as JSON unless it is a Payload or json.RawMessage.
// The returned error fails the attempt; see Retries, RetryAfter and
// Permanent for how it steers what follows.
//
// ctx ends when the execution is cancelled, the lease is lost, the task's
// Timeout passes, or the worker's ShutdownGrace runs out; context.Cause(ctx)
// is then ErrCancelled, ErrLeaseLost, ErrTimeout or ErrShutdown.
// AttemptFromContext tells which attempt is running.
//
// Handlers run on a pool of Concurrency goroutines that the worker reuses
// from one attempt to the next, so a handler that changes its goroutine
// (runtime.LockOSThread, pprof.SetGoroutineLabels) must undo it before
// returning.
type Handler func(ctx context.Context, args json.RawMessage) (any, error)

// Func adapts a typed function to a Handler: the arguments are decoded from
// JSON into A, and the R returned is encoded as JSON. Arguments that do not
// decode fail the attempt permanently, since a retry would see the same bytes.
func Func[A, R any](fn func(ctx context.Context, args A) (R, error)) Handler {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var args A
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, Permanent(&ArgumentsError{Err: err})
			}
		}
		return fn(ctx, args)
	}
}

// ArgumentsError is the failure of an attempt whose arguments did not decode.
type ArgumentsError struct{ Err error }

func (e *ArgumentsError) Error() string       { return fmt.Sprintf("decoding arguments: %v", e.Err) }
func (e *ArgumentsError) Unwrap() error       { return e.Err }
func (e *ArgumentsError) FailureType() string { return "ArgumentsError" }

// Attempt describes the attempt a handler is running.
type Attempt struct {
	ExecutionID string
	Task        string
	// Number counts from 1; a retry has Number > 1.
	Number      int
	Labels      map[string]string
	ContentType string
}

type attemptKey struct{}

// AttemptFromContext returns the attempt that ctx belongs to, inside a
// handler.
func AttemptFromContext(ctx context.Context) (Attempt, bool) {
	a, ok := ctx.Value(attemptKey{}).(Attempt)
	return a, ok
}
