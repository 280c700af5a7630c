package reprise_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"github.com/reprise-dev/reprise/clients/go/reprise"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// The other side of TestASlotFreesWhenItsHandlerReturnsNotWhenItsReportIsAnswered:
// a slot frees once the outcome is queued, so when the queue is full the
// slot is kept, and with every slot kept leasing stops until the reporter
// takes outcomes off the queue.
func TestWhenTheReportQueueIsFullAFinishedAttemptKeepsItsSlotAndLeasingWaits(t *testing.T) {
	const concurrency = 2
	c := startCoordinator(t)

	// Every ReportOutcomes waits until releaseReports; LeaseAttempts calls
	// and the attempts they return are counted.
	releaseReports := make(chan struct{})
	release := sync.OnceFunc(func() { close(releaseReports) })
	firstReportHeld := make(chan int, 1) // the held batch's size
	var reportCalls, leaseCalls, leasesInFlight, leased atomic.Int32
	intercept := grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch r := req.(type) {
		case *reprisev1.ReportOutcomesRequest:
			if reportCalls.Add(1) == 1 {
				firstReportHeld <- len(r.GetOutcomes())
			}
			select {
			case <-releaseReports:
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		case *reprisev1.LeaseAttemptsRequest:
			leaseCalls.Add(1)
			leasesInFlight.Add(1)
			err := invoker(ctx, method, req, reply, cc, opts...)
			leasesInFlight.Add(-1)
			leased.Add(int32(len(reply.(*reprisev1.LeaseAttemptsResponse).GetAttempts())))
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	opts := workerOptions(t, c)
	opts.Conn = c.dial(intercept)
	opts.Concurrency = concurrency
	var handled atomic.Int32
	w := reprise.NewWorker(opts)
	w.Task("quick", func(context.Context, json.RawMessage) (any, error) {
		handled.Add(1)
		return nil, nil
	})
	runWorker(t, w)
	// Registered after runWorker so that it runs first: a failing test must
	// not leave the reporter stuck while Run waits for it.
	t.Cleanup(release)
	client := newClient(t, c)

	// One execution alone first, so that the report held in flight carries
	// exactly its outcome, whatever the timing.
	first, err := client.Submit(context.Background(), "quick", nil)
	if err != nil {
		t.Fatal(err)
	}
	var heldBatch int
	select {
	case heldBatch = <-firstReportHeld:
	case <-time.After(10 * time.Second):
		t.Fatal("the first outcome was never reported")
	}
	if heldBatch != 1 {
		t.Fatalf("the first report carried %d outcomes, want 1", heldBatch)
	}

	const total = 20 // well over Concurrency*3
	subs := make([]reprise.Submission, total-1)
	for i := range subs {
		subs[i] = reprise.Submission{Task: "quick"}
	}
	handles, err := client.SubmitMany(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	handles = append(handles, first)

	// While the report is held, an attempt is leased only with a free slot,
	// and a slot frees only when its outcome enters the queue. So the
	// attempts ever leased are: the held batch (1, its slots freed), the
	// outcomes that fill the queue (its room, Concurrency, their slots
	// freed), and the attempts that finished but wait to queue their
	// outcomes, each keeping its slot (Concurrency). Then no slot is free.
	bound := int32(heldBatch + concurrency + concurrency)
	state := func() string {
		return fmt.Sprintf("leased %d, handled %d, LeaseAttempts calls %d (%d in flight); bound %d",
			leased.Load(), handled.Load(), leaseCalls.Load(), leasesInFlight.Load(), bound)
	}
	eventually(t, 10*time.Second, func() bool { return leased.Load() >= bound && handled.Load() >= bound },
		func() string { return "the worker never filled its slots and report queue: " + state() })

	// Leasing must now wait: no attempt leased or run beyond the bound and
	// no LeaseAttempts call made, for a while.
	callsAtBound := leaseCalls.Load()
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if leased.Load() > bound || handled.Load() > bound {
			t.Fatalf("with the report queue full, attempts went on starting: %s", state())
		}
		if leaseCalls.Load() != callsAtBound || leasesInFlight.Load() != 0 {
			t.Fatalf("with every slot kept, the worker went on leasing: %s", state())
		}
	}

	release()
	for _, h := range handles {
		if err := resultWithin(t, h, nil); err != nil {
			t.Fatalf("execution %s: %v", h.ID, err)
		}
		if ex := get(t, client, h.ID); ex.GetState() != reprisev1.ExecutionState_EXECUTION_STATE_SUCCEEDED {
			t.Fatalf("execution %s is %v, want SUCCEEDED", h.ID, ex.GetState())
		}
	}
	if n := handled.Load(); n != total {
		t.Fatalf("%d attempts ran for %d executions, want one each", n, total)
	}
}
