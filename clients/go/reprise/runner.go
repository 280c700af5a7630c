package reprise

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// After ShutdownGrace the handlers' contexts are cancelled; a handler that
// ignores its context is then waited for this long at most, and the queued
// outcomes get this long to reach the coordinator, so Run always returns.
const (
	abandonHandlersAfter = 5 * time.Second
	flushReportsWithin   = 10 * time.Second
)

// runner is the state of one Worker.Run.
type runner struct {
	opts   WorkerOptions
	log    *slog.Logger
	client reprisev1.WorkerServiceClient
	tasks  map[string]*task
	defs   []*reprisev1.TaskDefinition
	names  []string

	// slots holds one token per attempt that may start: Concurrency in all.
	slots chan struct{}
	// attempts feeds the pool: Concurrency goroutines that live as long as
	// Run and take one attempt at a time. A goroutine per attempt grew a
	// fresh stack for each handler, about a quarter of the worker's CPU in a
	// W1 benchmark profile.
	attempts chan startedAttempt
	pool     sync.WaitGroup
	// handlerBase is the parent of every handler context. It outlives Run's
	// context so that in-flight attempts can finish during the grace period.
	handlerBase  context.Context
	stopHandlers context.CancelCauseFunc
	handlers     sync.WaitGroup
	inflight     inflightSet
	// reports holds the outcomes waiting for the next ReportOutcomes. Its
	// room of Concurrency is the worker's backpressure: when it is full, a
	// finished attempt keeps its slot, and leasing waits for the reporter.
	reports       chan queuedOutcome
	noMoreReports chan struct{}
	reporterDone  chan struct{}
	heartbeatDone chan struct{}
}

func newRunner(opts WorkerOptions, client reprisev1.WorkerServiceClient, tasks map[string]*task, defs []*reprisev1.TaskDefinition) *runner {
	r := &runner{
		opts:          opts,
		log:           opts.Logger.With("worker_id", opts.WorkerID),
		client:        client,
		tasks:         tasks,
		defs:          defs,
		slots:         make(chan struct{}, opts.Concurrency),
		attempts:      make(chan startedAttempt, opts.Concurrency),
		inflight:      inflightSet{byToken: map[string]*running{}},
		reports:       make(chan queuedOutcome, opts.Concurrency),
		noMoreReports: make(chan struct{}),
		reporterDone:  make(chan struct{}),
		heartbeatDone: make(chan struct{}),
	}
	for _, d := range defs {
		r.names = append(r.names, d.GetName())
	}
	for range opts.Concurrency {
		r.slots <- struct{}{}
	}
	r.handlerBase, r.stopHandlers = context.WithCancelCause(context.Background())
	return r
}

func (r *runner) run(ctx context.Context) error {
	// background ends only after the last report is flushed: heartbeats must
	// keep leases alive until then.
	background, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	go r.heartbeatLoop(background)
	go r.reportLoop(background)
	for range r.opts.Concurrency {
		r.pool.Go(r.runAttempts)
	}

	err := r.leaseLoop(ctx)

	drained := r.drainHandlers()
	close(r.attempts)
	if drained {
		r.pool.Wait()
	}
	close(r.noMoreReports)
	select {
	case <-r.reporterDone:
	case <-time.After(flushReportsWithin):
		r.log.Warn("reprise: gave up reporting outcomes at shutdown; their leases will expire")
	}
	stopBackground()
	<-r.heartbeatDone
	<-r.reporterDone
	return err
}

// drainHandlers waits for in-flight attempts: ShutdownGrace for them to
// finish on their own, then a bounded while after cancelling them. It
// reports whether every handler returned.
func (r *runner) drainHandlers() bool {
	done := make(chan struct{})
	go func() { r.handlers.Wait(); close(done) }()
	grace := time.NewTimer(r.opts.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
		return true
	case <-grace.C:
	}
	r.log.Warn("reprise: shutdown grace expired; cancelling in-flight attempts", "in_flight", r.inflight.len())
	r.stopHandlers(ErrShutdown)
	select {
	case <-done:
		return true
	case <-time.After(abandonHandlersAfter):
		r.log.Error("reprise: handlers ignored cancellation; leaving them behind")
		return false
	}
}

// leaseLoop declares the tasks, then leases as many attempts as there are
// free slots, until ctx ends. Transient errors are retried with backoff, and
// the tasks are declared again after each, in case the coordinator lost them.
func (r *runner) leaseLoop(ctx context.Context) error {
	declared := false
	for failures := 0; ctx.Err() == nil; {
		var err error
		if !declared {
			_, err = r.client.DeclareTasks(ctx, &reprisev1.DeclareTasksRequest{WorkerId: r.opts.WorkerID, Tasks: r.defs})
			declared = err == nil
		}
		if err == nil {
			err = r.leaseOnce(ctx)
		}
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		// RESOURCE_EXHAUSTED here is the per-connection quota of waiting
		// long-polls, as when many workers share one Conn: wait for a turn.
		if !isTransient(err) && status.Code(err) != codes.ResourceExhausted {
			return fmt.Errorf("reprise: the coordinator refused the worker: %w", err)
		}
		r.log.Warn("reprise: coordinator unavailable; retrying", "error", err, "failures", failures+1)
		declared = false
		if !sleepCtx(ctx, retryBackoff(failures)) {
			return nil
		}
		failures++
	}
	return nil
}

// leaseOnce waits for at least one free slot, then long-polls for up to as
// many attempts as there are free slots and starts each.
func (r *runner) leaseOnce(ctx context.Context) error {
	select {
	case <-r.slots:
	case <-ctx.Done():
		return nil
	}
	free := 1
	for more := true; more; {
		select {
		case <-r.slots:
			free++
		default:
			more = false
		}
	}
	// A black-holed connection must not hang the loop past the long-poll.
	callCtx, cancel := context.WithTimeout(ctx, r.opts.PollWait+10*time.Second)
	defer cancel()
	resp, err := r.client.LeaseAttempts(callCtx, &reprisev1.LeaseAttemptsRequest{
		WorkerId:      r.opts.WorkerID,
		Tasks:         r.names,
		MaxAttempts:   uint32(free),
		Wait:          durationpb.New(r.opts.PollWait),
		LeaseDuration: durationpb.New(r.opts.LeaseDuration),
	})
	leased := resp.GetAttempts()
	for range free - min(len(leased), free) {
		r.slots <- struct{}{}
	}
	for _, a := range leased[:min(len(leased), free)] {
		r.start(a)
	}
	return err
}
