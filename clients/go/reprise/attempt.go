package reprise

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// running is one leased attempt, from its lease until the coordinator has
// answered its report (it is heartbeated all that time).
type running struct {
	leased *reprisev1.LeasedAttempt
	task   *task
	cancel context.CancelCauseFunc

	mu sync.Mutex
	// settled is the coordinator's word that the attempt is over (cancelled
	// or lost): stop heartbeating it and report nothing.
	settled error
}

// settle records that the coordinator has ended the attempt and cancels the
// handler's context with cause.
func (a *running) settle(cause error) {
	a.mu.Lock()
	if a.settled == nil {
		a.settled = cause
	}
	a.mu.Unlock()
	a.cancel(cause)
}

func (a *running) settledBy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.settled
}

// inflightSet indexes running attempts by lease token.
type inflightSet struct {
	mu      sync.Mutex
	byToken map[string]*running
}

func (s *inflightSet) add(a *running) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byToken[string(a.leased.GetLeaseToken())] = a
}

func (s *inflightSet) remove(token []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byToken, string(token))
}

func (s *inflightSet) get(token []byte) *running {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byToken[string(token)]
}

func (s *inflightSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byToken)
}

// live returns the tokens that still need heartbeats.
func (s *inflightSet) live() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	tokens := make([][]byte, 0, len(s.byToken))
	for _, a := range s.byToken {
		if a.settledBy() == nil {
			tokens = append(tokens, a.leased.GetLeaseToken())
		}
	}
	return tokens
}

// startedAttempt is an attempt handed to the pool, with its handler's context.
type startedAttempt struct {
	attempt *running
	ctx     context.Context
}

// start hands a leased attempt to the pool; it holds one slot, and since
// there are as many pool goroutines as slots, one of them is free for it.
func (r *runner) start(leased *reprisev1.LeasedAttempt) {
	t := r.tasks[leased.GetTask()]
	if t == nil {
		// Only names this worker declared are leased, so this is a
		// coordinator bug; the lease will expire and the attempt be retried.
		r.log.Error("reprise: leased an attempt of an unknown task", "task", leased.GetTask())
		r.slots <- struct{}{}
		return
	}
	ctx, cancel := context.WithCancelCause(r.handlerBase)
	ctx = context.WithValue(ctx, attemptKey{}, Attempt{
		ExecutionID: leased.GetExecutionId(),
		Task:        leased.GetTask(),
		Number:      int(leased.GetAttempt()),
		Labels:      leased.GetLabels(),
		ContentType: leased.GetArguments().GetContentType(),
	})
	if timeoutAt := leased.GetTimeoutAt(); timeoutAt != nil {
		var stopTimer context.CancelFunc
		ctx, stopTimer = context.WithTimeoutCause(ctx, r.timeLeft(leased), ErrTimeout)
		cancel = chainCancel(cancel, stopTimer)
	}
	a := &running{leased: leased, task: t, cancel: cancel}
	r.inflight.add(a)
	r.handlers.Add(1)
	r.attempts <- startedAttempt{attempt: a, ctx: ctx}
}

// runAttempts is one goroutine of the pool. The slot frees when the handler
// has returned and its outcome is queued, not when the coordinator answers
// the report: the worker leases again while reports are in flight.
func (r *runner) runAttempts() {
	for s := range r.attempts {
		r.finish(s.attempt, s.ctx)
		r.slots <- struct{}{}
		r.handlers.Done()
	}
}

// timeLeft is how long the attempt may run before its timeout, measured on
// the coordinator's clock where possible to keep clock skew out: at the
// lease, the coordinator's "now" was lease_expires_at - LeaseDuration, unless
// the coordinator capped the lease at the timeout. Then only the local clock
// is left, and the lease duration bounds the answer.
func (r *runner) timeLeft(leased *reprisev1.LeasedAttempt) time.Duration {
	timeoutAt, leaseExpiresAt := leased.GetTimeoutAt().AsTime(), leased.GetLeaseExpiresAt().AsTime()
	if leaseExpiresAt.Before(timeoutAt) {
		return timeoutAt.Sub(leaseExpiresAt.Add(-r.opts.LeaseDuration))
	}
	return min(time.Until(timeoutAt), r.opts.LeaseDuration)
}

func chainCancel(cancel context.CancelCauseFunc, stop context.CancelFunc) context.CancelCauseFunc {
	return func(cause error) { cancel(cause); stop() }
}

// finish runs the handler and queues its outcome, unless the coordinator has
// already settled the attempt.
func (r *runner) finish(a *running, ctx context.Context) {
	result, err := invoke(ctx, a.task.handler, a.leased.GetArguments().GetData())
	cause := context.Cause(ctx)
	a.cancel(nil)
	if settled := a.settledBy(); settled != nil {
		r.log.Debug("reprise: attempt settled by the coordinator; not reporting it", "execution_id", a.leased.GetExecutionId(), "cause", settled)
		r.inflight.remove(a.leased.GetLeaseToken())
		return
	}
	outcome := &reprisev1.Outcome{LeaseToken: a.leased.GetLeaseToken()}
	var snooze *SnoozeError
	switch {
	case err == nil:
		payload, encodeErr := encodePayload(result)
		if encodeErr != nil {
			outcome.Outcome = &reprisev1.Outcome_Failure{Failure: failureOf(Permanent(encodeErr), nil)}
		} else {
			outcome.Outcome = &reprisev1.Outcome_Result{Result: payload}
		}
	case errors.Is(cause, ErrTimeout):
		// The coordinator times the attempt out by itself (TIMED_OUT,
		// retryable); a failure report racing it would record FAILED instead.
		r.inflight.remove(a.leased.GetLeaseToken())
		return
	case errors.As(err, &snooze):
		// The handler says it did nothing: not a failure, so When is not
		// asked and no retry is used up, even when the worker is shutting down.
		outcome.Outcome = &reprisev1.Outcome_Snooze{Snooze: &reprisev1.Snooze{
			Delay: durationpb.New(min(max(snooze.Delay, 0), maxDuration)),
		}}
	case errors.Is(cause, ErrShutdown):
		// Like an abandonment, an interrupted attempt is always retryable and
		// When does not apply; reporting it now saves waiting for the lease.
		outcome.Outcome = &reprisev1.Outcome_Failure{Failure: &reprisev1.Failure{
			Type:    "WorkerShutdown",
			Message: fmt.Sprintf("the worker shut down before the attempt finished: %v", err),
		}}
	default:
		outcome.Outcome = &reprisev1.Outcome_Failure{Failure: failureOf(err, a.task.config.retries.When)}
	}
	select {
	case r.reports <- queuedOutcome{outcome: outcome, attempt: a}:
	case <-r.reporterDone:
		// Run has given up on this handler (it ignored cancellation); its
		// lease will expire.
	}
}

// invoke calls the handler, turning a panic into a *PanicError.
func invoke(ctx context.Context, h Handler, args []byte) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, &PanicError{Value: p, Stack: string(debug.Stack())}
		}
	}()
	return h(ctx, args)
}
