package reprise_test

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"github.com/reprise-dev/reprise/clients/go/reprise"
	"google.golang.org/grpc"
)

func TestASlotFreesWhenItsHandlerReturnsNotWhenItsReportIsAnswered(t *testing.T) {
	c := startCoordinator(t)
	reportHeld := make(chan struct{})
	releaseReport := make(chan struct{})
	var reports atomic.Int32
	holdFirstReport := grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := req.(*reprisev1.ReportOutcomesRequest); ok && reports.Add(1) == 1 {
			close(reportHeld)
			<-releaseReport
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	opts := workerOptions(t, c)
	opts.Conn = c.dial(holdFirstReport)
	opts.Concurrency = 1
	started := make(chan string, 2)
	w := reprise.NewWorker(opts)
	w.Task("quick", func(ctx context.Context, _ json.RawMessage) (any, error) {
		a, _ := reprise.AttemptFromContext(ctx)
		started <- a.ExecutionID
		return nil, nil
	})
	runWorker(t, w)
	client := newClient(t, c)
	handles, err := client.SubmitMany(context.Background(), []reprise.Submission{{Task: "quick"}, {Task: "quick"}})
	if err != nil {
		t.Fatal(err)
	}

	select {
	case <-reportHeld:
	case <-time.After(10 * time.Second):
		t.Fatal("the first outcome was never reported")
	}
	// With Concurrency 1, the second attempt can only start once the
	// first one's slot is free, and the first report is still unanswered.
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			close(releaseReport)
			t.Fatal("the second attempt did not start while the first one's report was in flight")
		}
	}
	close(releaseReport)
	for _, h := range handles {
		if err := resultWithin(t, h, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// goroutineID is the calling goroutine's number, from its stack's first
// line: "goroutine 123 [running]:".
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

func TestAttemptsRunOnAPoolOfConcurrencyGoroutines(t *testing.T) {
	c := startCoordinator(t)
	opts := workerOptions(t, c)
	opts.Concurrency = 2
	var mu sync.Mutex
	goroutines := map[string]int{}
	w := reprise.NewWorker(opts)
	w.Task("counted", func(context.Context, json.RawMessage) (any, error) {
		mu.Lock()
		goroutines[goroutineID()]++
		mu.Unlock()
		return nil, nil
	})
	runWorker(t, w)
	client := newClient(t, c)

	subs := make([]reprise.Submission, 20)
	for i := range subs {
		subs[i] = reprise.Submission{Task: "counted"}
	}
	handles, err := client.SubmitMany(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range handles {
		if err := resultWithin(t, h, nil); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(goroutines) > 2 {
		t.Fatalf("20 attempts ran on %d goroutines (%v), want at most Concurrency (2)", len(goroutines), goroutines)
	}
}
