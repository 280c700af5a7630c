package reprise_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"github.com/reprise-dev/reprise/clients/go/reprise"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// blockingTask is a handler that signals when it starts, then waits for its
// context to end (or for release) and records the context's cause.
type blockingTask struct {
	started chan reprise.Attempt
	release chan struct{}
	cause   chan error
}

func newBlockingTask() *blockingTask {
	return &blockingTask{started: make(chan reprise.Attempt, 4), release: make(chan struct{}), cause: make(chan error, 4)}
}

func (b *blockingTask) handle(ctx context.Context, _ json.RawMessage) (any, error) {
	a, _ := reprise.AttemptFromContext(ctx)
	b.started <- a
	select {
	case <-ctx.Done():
		b.cause <- context.Cause(ctx)
		return nil, ctx.Err()
	case <-b.release:
		b.cause <- ctx.Err()
		return "finished", nil
	}
}

func (b *blockingTask) waitStarted(t *testing.T) reprise.Attempt {
	t.Helper()
	select {
	case a := <-b.started:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never started")
	}
	return reprise.Attempt{}
}

func (b *blockingTask) waitCause(t *testing.T) error {
	t.Helper()
	select {
	case err := <-b.cause:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context never ended")
	}
	return nil
}

func TestCancelExecutionCancelsTheHandlerContext(t *testing.T) {
	c := startCoordinator(t)
	task := newBlockingTask()
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("blocks", task.handle, reprise.Immediate(3))
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "blocks", nil)
	task.waitStarted(t)
	if _, err := client.Cancel(context.Background(), h.ID); err != nil {
		t.Fatal(err)
	}
	if cause := task.waitCause(t); !errors.Is(cause, reprise.ErrCancelled) {
		t.Fatalf("context cause = %v, want ErrCancelled", cause)
	}
	var execErr *reprise.ExecutionError
	if err := resultWithin(t, h, nil); !errors.As(err, &execErr) || execErr.Kind != reprise.Cancelled {
		t.Fatalf("Result = %v, want CANCELLED", err)
	}
	ex := get(t, client, h.ID)
	if len(ex.GetAttempts()) != 1 || ex.GetAttempts()[0].GetState() != reprisev1.AttemptState_ATTEMPT_STATE_CANCELLED {
		t.Fatalf("attempts = %v, want one CANCELLED attempt and no retry", ex.GetAttempts())
	}
}

// dropHeartbeats is a fault injected into the worker's connection: while
// dropping is set, its heartbeats fail before they leave the process.
func dropHeartbeats(dropping *atomic.Bool) grpc.DialOption {
	return grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == reprisev1.WorkerService_Heartbeat_FullMethodName && dropping.Load() {
			return status.Error(codes.Unavailable, "heartbeat dropped by the test")
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

func TestLostLeaseCancelsTheHandlerContext(t *testing.T) {
	c := startCoordinator(t)
	var dropping atomic.Bool
	dropping.Store(true)
	opts := workerOptions(t, c)
	opts.Conn = c.dial(dropHeartbeats(&dropping))
	opts.LeaseDuration = 300 * time.Millisecond
	task := newBlockingTask()
	w := reprise.NewWorker(opts)
	w.Task("blocks", task.handle)
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "blocks", nil)
	task.waitStarted(t)
	// Without heartbeats the lease expires; the at-most-once execution ends
	// ABANDONED while its handler still runs.
	var execErr *reprise.ExecutionError
	if err := resultWithin(t, h, nil); !errors.As(err, &execErr) || execErr.Kind != reprise.Abandoned || execErr.Type != "Abandoned" {
		t.Fatalf("Result = %v, want ABANDONED", err)
	}
	dropping.Store(false)
	if cause := task.waitCause(t); !errors.Is(cause, reprise.ErrLeaseLost) {
		t.Fatalf("context cause = %v, want ErrLeaseLost", cause)
	}
}

func TestTaskTimeoutCancelsTheHandlerContextAndEndsTimedOut(t *testing.T) {
	c := startCoordinator(t)
	opts := workerOptions(t, c)
	opts.LeaseDuration = 3 * time.Second
	task := newBlockingTask()
	w := reprise.NewWorker(opts)
	w.Task("slow", task.handle, reprise.Timeout(300*time.Millisecond))
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "slow", nil)
	task.waitStarted(t)
	if cause := task.waitCause(t); !errors.Is(cause, reprise.ErrTimeout) {
		t.Fatalf("context cause = %v, want ErrTimeout", cause)
	}
	var execErr *reprise.ExecutionError
	if err := resultWithin(t, h, nil); !errors.As(err, &execErr) || execErr.Kind != reprise.TimedOut || execErr.Type != "TimedOut" {
		t.Fatalf("Result = %v, want TIMED_OUT (the coordinator's own verdict, not a reported failure)", err)
	}
}

func TestGracefulShutdownDrainsInFlightAttempts(t *testing.T) {
	c := startCoordinator(t)
	opts := workerOptions(t, c)
	// One slot: while the attempt runs no LeaseAttempts call is open, so none
	// can race the shutdown.
	opts.Concurrency = 1
	task := newBlockingTask()
	w := reprise.NewWorker(opts)
	w.Task("blocks", task.handle)
	stop := runWorker(t, w)
	client := newClient(t, c)

	running, _ := client.Submit(context.Background(), "blocks", nil)
	task.waitStarted(t)
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	later, _ := client.Submit(context.Background(), "blocks", nil)
	select {
	case <-stopped:
		t.Fatal("Run returned while an attempt was still running")
	default:
	}
	close(task.release)
	if cause := task.waitCause(t); cause != nil {
		t.Fatalf("the in-flight attempt's context ended (%v) within its grace period", cause)
	}
	<-stopped
	// Run reports before it returns, so the outcome is already recorded.
	if ex := get(t, client, running.ID); ex.GetState() != reprisev1.ExecutionState_EXECUTION_STATE_SUCCEEDED {
		t.Fatalf("drained execution is %v, want SUCCEEDED", ex.GetState())
	}
	if ex := get(t, client, later.ID); ex.GetState() != reprisev1.ExecutionState_EXECUTION_STATE_PENDING || len(ex.GetAttempts()) != 0 {
		t.Fatalf("execution submitted during shutdown is %v with %d attempts, want PENDING and never leased", ex.GetState(), len(ex.GetAttempts()))
	}
}

func TestShutdownGraceExpiryCancelsHandlersAndReportsThemRetryable(t *testing.T) {
	c := startCoordinator(t)
	opts := workerOptions(t, c)
	opts.Concurrency = 1
	opts.ShutdownGrace = 200 * time.Millisecond
	task := newBlockingTask()
	w := reprise.NewWorker(opts)
	// When would reject context.Canceled; an interrupted attempt must be
	// retried anyway, like an abandoned one.
	w.Task("blocks", task.handle, reprise.Retries{Limit: 1, Backoff: [2]time.Duration{time.Hour, time.Hour}, When: reprise.WhenIs(errFlaky)})
	stop := runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "blocks", nil)
	task.waitStarted(t)
	stop()
	if cause := task.waitCause(t); !errors.Is(cause, reprise.ErrShutdown) {
		t.Fatalf("context cause = %v, want ErrShutdown", cause)
	}
	ex := get(t, client, h.ID)
	f := ex.GetAttempts()[0].GetFailure()
	if ex.GetState() != reprisev1.ExecutionState_EXECUTION_STATE_PENDING || f.GetType() != "WorkerShutdown" || f.GetNonRetryable() {
		t.Fatalf("execution %v with attempt failure %v, want PENDING for a retry after a retryable WorkerShutdown", ex.GetState(), f)
	}
}

func TestWorkerAndResultSurviveACoordinatorRestart(t *testing.T) {
	c := startCoordinator(t)
	opts := workerOptions(t, c)
	opts.Conn = nil
	opts.Address = c.addr
	opts.LeaseDuration = 5 * time.Second
	task := newBlockingTask()
	w := reprise.NewWorker(opts)
	w.Task("blocks", task.handle)
	runWorker(t, w)
	client, err := reprise.NewClient(reprise.ClientOptions{Address: c.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	h, _ := client.Submit(context.Background(), "blocks", nil)
	task.waitStarted(t)
	result := make(chan error, 1)
	var out string
	go func() { result <- resultWithin(t, h, &out) }()
	c.restart()
	// The lease survived the restart; the worker reports through its new
	// connection and the waiter, watching again, sees the end.
	close(task.release)
	if err := <-result; err != nil || out != "finished" {
		t.Fatalf("Result = %q, %v; want finished", out, err)
	}
	// And the worker leases again after reconnecting.
	task.release = nil
	h2, _ := client.Submit(context.Background(), "blocks", nil)
	task.waitStarted(t)
	if _, err := client.Cancel(context.Background(), h2.ID); err != nil {
		t.Fatal(err)
	}
}

func TestOneHeartbeatCarriesEveryInFlightAttempt(t *testing.T) {
	c := startCoordinator(t)
	var widest atomic.Int32
	countTokens := grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if hb, ok := req.(*reprisev1.HeartbeatRequest); ok {
			for n := int32(len(hb.GetLeaseTokens())); n > widest.Load(); {
				widest.CompareAndSwap(widest.Load(), n)
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	opts := workerOptions(t, c)
	opts.Conn = c.dial(countTokens)
	opts.LeaseDuration = 300 * time.Millisecond
	task := newBlockingTask()
	w := reprise.NewWorker(opts)
	w.Task("blocks", task.handle)
	runWorker(t, w)
	client := newClient(t, c)

	var handles []*reprise.Handle
	for range 3 {
		h, _ := client.Submit(context.Background(), "blocks", nil)
		handles = append(handles, h)
	}
	for range handles {
		task.waitStarted(t)
	}
	eventually(t, 5*time.Second, func() bool { return widest.Load() == 3 }, func() string {
		return "no heartbeat carried all three in-flight attempts"
	})
	close(task.release)
	for _, h := range handles {
		if err := resultWithin(t, h, nil); err != nil {
			t.Fatalf("Result = %v; the leases must have been kept alive", err)
		}
	}
}
