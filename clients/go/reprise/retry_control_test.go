package reprise_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"github.com/reprise-dev/reprise/clients/go/reprise"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestSnoozeReportsASnoozeThatUsesNoRetry(t *testing.T) {
	c := startCoordinator(t)
	log := &jsonLog{}
	opts := workerOptions(t, c)
	opts.Logger = log.logger()
	const delay = 300 * time.Millisecond
	var whenAsked atomic.Bool
	w := reprise.NewWorker(opts)
	// At most once, and a When that rejects everything: had the snooze been
	// reported as a failure, the execution would have ended FAILED.
	w.Task("export", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number == 1 {
			return nil, fmt.Errorf("the export is not ready: %w", reprise.Snooze(delay))
		}
		return "exported", nil
	}, reprise.Retries{When: func(error) bool { whenAsked.Store(true); return false }})
	runWorker(t, w)
	client := newClient(t, c)

	h, err := client.Submit(context.Background(), "export", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := resultWithin(t, h, &out); err != nil || out != "exported" {
		t.Fatalf("Result = %q, %v; want exported after the snooze", out, err)
	}
	if whenAsked.Load() {
		t.Error("the task's When was asked about a snooze")
	}
	attempts := get(t, client, h.ID).GetAttempts()
	if len(attempts) != 2 {
		t.Fatalf("%d attempts, want 2: %v", len(attempts), attempts)
	}
	snoozed := attempts[0]
	if snoozed.GetState() != reprisev1.AttemptState_ATTEMPT_STATE_SNOOZED || snoozed.GetFailure() != nil || snoozed.GetRetryRule() != reprisev1.RetryRule_RETRY_RULE_SNOOZE {
		t.Fatalf("attempt 1 = %v, want SNOOZED by the SNOOZE rule, with no failure", snoozed)
	}
	if gap := attempts[1].GetScheduledAt().AsTime().Sub(snoozed.GetFinishedAt().AsTime()); gap != delay {
		t.Errorf("attempt 2 was due %v after the snooze, want exactly %v", gap, delay)
	}
	if attempts[1].GetState() != reprisev1.AttemptState_ATTEMPT_STATE_SUCCEEDED {
		t.Errorf("attempt 2 = %v, want SUCCEEDED", attempts[1].GetState())
	}
	var records []map[string]any
	eventually(t, 5*time.Second, func() bool {
		records = log.records(t, "reprise: attempt snoozed")
		return len(records) > 0
	}, func() string { return "no record of the snooze in:\n" + log.buf.String() })
	if r := records[0]; r["level"] != "INFO" || r["execution_id"] != h.ID || r["attempt"] != float64(1) ||
		r["next_attempt_at"] != attempts[1].GetScheduledAt().AsTime().Format(time.RFC3339Nano) {
		t.Errorf("record = %v, want an INFO record of attempt 1 of %s with when it is due again", r, h.ID)
	}
	if failed := log.records(t, "reprise: attempt failed"); len(failed) != 0 {
		t.Errorf("the snooze was logged as a failure: %v", failed)
	}
}

func TestRetriesSendsCoefficientJitterAndMaxElapsed(t *testing.T) {
	c := startCoordinator(t)
	retries := reprise.Retries{
		Limit:       3,
		Backoff:     [2]time.Duration{100 * time.Millisecond, 10 * time.Second},
		Coefficient: 2,
		Jitter:      0.5,
		MaxElapsed:  time.Minute,
	}
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("fetch", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number < 3 {
			return nil, errFlaky
		}
		return "ok", nil
	}, retries)
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "fetch", nil)
	if err := resultWithin(t, h, nil); err != nil {
		t.Fatalf("Result = %v, want success on attempt 3", err)
	}
	attempts := get(t, client, h.ID).GetAttempts()
	if len(attempts) != 3 {
		t.Fatalf("%d attempts, want 3", len(attempts))
	}
	want := &reprisev1.RetryPolicy{
		Limit:              3,
		BackoffMin:         durationpb.New(100 * time.Millisecond),
		BackoffMax:         durationpb.New(10 * time.Second),
		BackoffCoefficient: 2,
		Jitter:             0.5,
		MaxElapsed:         durationpb.New(time.Minute),
	}
	if got := attempts[0].GetRetryPolicy(); !proto.Equal(got, want) {
		t.Fatalf("the coordinator decided with %v, want the declared %v", got, want)
	}
	// Exponential with coefficient 2 from 100 ms, jittered by half: retry 1
	// waits 50..100 ms and retry 2 100..200 ms. Coflux's linear rule would
	// have made retry 2 wait about 5 s.
	for k, bounds := range map[int][2]time.Duration{1: {50 * time.Millisecond, 100 * time.Millisecond}, 2: {100 * time.Millisecond, 200 * time.Millisecond}} {
		gap := attempts[k].GetScheduledAt().AsTime().Sub(attempts[k-1].GetFinishedAt().AsTime())
		if gap < bounds[0] || gap > bounds[1] {
			t.Errorf("retry %d was due %v after the failure, want %v to %v", k, gap, bounds[0], bounds[1])
		}
		if rule := attempts[k-1].GetRetryRule(); rule != reprisev1.RetryRule_RETRY_RULE_BACKOFF {
			t.Errorf("attempt %d's retry rule = %v, want BACKOFF", k, rule)
		}
	}
}

func TestWithRetriesSendsCoefficientJitterAndMaxElapsed(t *testing.T) {
	c := startCoordinator(t)
	client := newClient(t, c)

	h, err := client.Submit(context.Background(), "nobody_serves_this", nil, reprise.WithRetries(reprise.Retries{
		Unlimited:   true,
		Coefficient: 1.5,
		Jitter:      1,
		MaxElapsed:  time.Hour,
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := &reprisev1.RetryPolicy{
		Unlimited:          true,
		BackoffMin:         durationpb.New(time.Second),
		BackoffMax:         durationpb.New(time.Minute),
		BackoffCoefficient: 1.5,
		Jitter:             1,
		MaxElapsed:         durationpb.New(time.Hour),
	}
	if got := get(t, client, h.ID).GetRetryPolicy(); !proto.Equal(got, want) {
		t.Fatalf("execution's policy = %v, want %v", got, want)
	}
	_, err = client.Submit(context.Background(), "nobody_serves_this", nil, reprise.WithRetries(reprise.Retries{Limit: 1, Jitter: 2}))
	if err == nil || !strings.Contains(err.Error(), "reprise: WithRetries.Jitter: must be a fraction from 0 to 1") {
		t.Fatalf("Submit with Jitter 2 = %v, want an error naming WithRetries.Jitter", err)
	}
}

func TestMaxElapsedEndsRetryingWhenTheNextStartWouldFallPastIt(t *testing.T) {
	c := startCoordinator(t)
	const maxElapsed = 600 * time.Millisecond
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("fetch", func(context.Context, json.RawMessage) (any, error) { return nil, errFlaky },
		reprise.Retries{Limit: 5, Backoff: [2]time.Duration{400 * time.Millisecond, 400 * time.Millisecond}, MaxElapsed: maxElapsed})
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "fetch", nil)
	var execErr *reprise.ExecutionError
	if err := resultWithin(t, h, nil); !errors.As(err, &execErr) || execErr.Kind != reprise.Failed {
		t.Fatalf("Result = %v, want FAILED", err)
	}
	attempts := get(t, client, h.ID).GetAttempts()
	// Retries start 400 ms apart, so the limit of 5 is never reached: the
	// second retry would start past 600 ms.
	if len(attempts) >= 6 {
		t.Fatalf("%d attempts: the limit ended it, not MaxElapsed", len(attempts))
	}
	last := attempts[len(attempts)-1]
	if last.GetRetryRule() != reprisev1.RetryRule_RETRY_RULE_MAX_ELAPSED {
		t.Fatalf("the last attempt's retry rule = %v, want MAX_ELAPSED", last.GetRetryRule())
	}
	deadline := attempts[0].GetScheduledAt().AsTime().Add(maxElapsed)
	for _, a := range attempts {
		if a.GetScheduledAt().AsTime().After(deadline) {
			t.Errorf("attempt %d was due at %v, past the first's start + %v", a.GetNumber(), a.GetScheduledAt().AsTime(), maxElapsed)
		}
	}
}

// declaredTasks records the task definitions of the worker's DeclareTasks calls.
type declaredTasks struct {
	mu   sync.Mutex
	defs []*reprisev1.TaskDefinition
}

func (d *declaredTasks) option() grpc.DialOption {
	return grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if declare, ok := req.(*reprisev1.DeclareTasksRequest); ok {
			d.mu.Lock()
			d.defs = append(d.defs, declare.GetTasks()...)
			d.mu.Unlock()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

func (d *declaredTasks) first() *reprisev1.TaskDefinition {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.defs) == 0 {
		return nil
	}
	return d.defs[0]
}

func TestRetryBudgetIsDeclaredWithTheTask(t *testing.T) {
	c := startCoordinator(t)
	declared := &declaredTasks{}
	opts := workerOptions(t, c)
	opts.Conn = c.dial(declared.option())
	// Both first attempts fail together; one token a second, one at most in
	// the bucket: the first retry takes it, the second must wait for the next.
	var firstAttempts atomic.Int32
	bothRunning := make(chan struct{})
	w := reprise.NewWorker(opts)
	w.Task("call_api", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number > 1 {
			return "ok", nil
		}
		if firstAttempts.Add(1) == 2 {
			close(bothRunning)
		}
		select {
		case <-bothRunning:
			return nil, errFlaky
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, reprise.Immediate(1), reprise.RetryBudget{PerSecond: 1, Burst: 1})
	runWorker(t, w)
	client := newClient(t, c)

	var handles []*reprise.Handle
	for range 2 {
		h, err := client.Submit(context.Background(), "call_api", nil)
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, h)
	}
	for _, h := range handles {
		if err := resultWithin(t, h, nil); err != nil {
			t.Fatalf("Result = %v; a budget defers retries, it never drops them", err)
		}
	}
	want := &reprisev1.RetryBudget{RetriesPerSecond: 1, Burst: 1}
	if got := declared.first().GetRetryBudget(); !proto.Equal(got, want) {
		t.Fatalf("declared retry_budget = %v, want %v", got, want)
	}
	deferred := 0
	for _, h := range handles {
		attempts := get(t, client, h.ID).GetAttempts()
		if len(attempts) != 2 {
			t.Fatalf("%s: %d attempts, want 2", h.ID, len(attempts))
		}
		first := attempts[0]
		if first.GetRetryRule() != reprisev1.RetryRule_RETRY_RULE_BUDGET {
			continue
		}
		deferred++
		computed, at := first.GetRetryComputedAt().AsTime(), first.GetRetryAt().AsTime()
		if !at.After(computed) {
			t.Errorf("%s: the budget deferred the retry from %v to %v, want later", h.ID, computed, at)
		}
		if started := attempts[1].GetStartedAt().AsTime(); started.Before(at) {
			t.Errorf("%s: the retry started at %v, before the budget let it (%v)", h.ID, started, at)
		}
	}
	if deferred == 0 {
		t.Fatal("no retry was deferred by the budget (retry rule BUDGET)")
	}
}

func TestRerunRunsAFailedExecutionAgain(t *testing.T) {
	c := startCoordinator(t)
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("once", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number == 1 {
			return nil, errFlaky
		}
		return "second time lucky", nil
	})
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "once", nil)
	var execErr *reprise.ExecutionError
	if err := resultWithin(t, h, nil); !errors.As(err, &execErr) || execErr.Kind != reprise.Failed {
		t.Fatalf("Result = %v, want FAILED at most once", err)
	}
	ex, err := h.Rerun(context.Background())
	if err != nil {
		t.Fatalf("Rerun: %v", err)
	}
	if ex.GetId() != h.ID || ex.GetState() != reprisev1.ExecutionState_EXECUTION_STATE_PENDING || ex.GetFailure() != nil {
		t.Fatalf("Rerun returned %s in %v with failure %v, want %s PENDING with none", ex.GetId(), ex.GetState(), ex.GetFailure(), h.ID)
	}
	var out string
	if err := resultWithin(t, h, &out); err != nil || out != "second time lucky" {
		t.Fatalf("Result after Rerun = %q, %v; want success", out, err)
	}
	attempts := get(t, client, h.ID).GetAttempts()
	if len(attempts) != 2 || attempts[0].GetState() != reprisev1.AttemptState_ATTEMPT_STATE_FAILED ||
		attempts[1].GetState() != reprisev1.AttemptState_ATTEMPT_STATE_SUCCEEDED || attempts[1].GetNumber() != 2 {
		t.Fatalf("attempts = %v, want the FAILED attempt 1 kept and a SUCCEEDED attempt 2", attempts)
	}
}

func TestRerunOfASucceededExecutionIsAFailedPrecondition(t *testing.T) {
	c := startCoordinator(t)
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("fine", func(context.Context, json.RawMessage) (any, error) { return "ok", nil })
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "fine", nil)
	if err := resultWithin(t, h, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Rerun(context.Background(), h.ID); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Rerun of a SUCCEEDED execution = %v, want FailedPrecondition", err)
	}
	if ex := get(t, client, h.ID); ex.GetState() != reprisev1.ExecutionState_EXECUTION_STATE_SUCCEEDED || len(ex.GetAttempts()) != 1 {
		t.Fatalf("execution is %v with %d attempts, want it SUCCEEDED and unchanged", ex.GetState(), len(ex.GetAttempts()))
	}
}

// loseFirstReportReply is a fault on the worker's connection: the first
// ReportOutcomes reaches the coordinator, but the worker gets UNAVAILABLE
// instead of its receipts, so it sends the same report again. The receipts
// of every call that does return are kept.
type loseFirstReportReply struct {
	mu       sync.Mutex
	lost     bool
	receipts []*reprisev1.OutcomeReceipt
}

func (l *loseFirstReportReply) option() grpc.DialOption {
	return grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method != reprisev1.WorkerService_ReportOutcomes_FullMethodName {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		l.mu.Lock()
		defer l.mu.Unlock()
		if err == nil && !l.lost {
			l.lost = true
			return status.Error(codes.Unavailable, "reply lost by the test")
		}
		if err == nil {
			l.receipts = append(l.receipts, reply.(*reprisev1.ReportOutcomesResponse).GetReceipts()...)
		}
		return err
	})
}

func (l *loseFirstReportReply) firstReceipt() *reprisev1.OutcomeReceipt {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.receipts) == 0 {
		return nil
	}
	return l.receipts[0]
}

func TestADuplicateReceiptIsNotLoggedAsARefusal(t *testing.T) {
	c := startCoordinator(t)
	log := &jsonLog{}
	fault := &loseFirstReportReply{}
	opts := workerOptions(t, c)
	opts.Logger = log.logger()
	opts.Conn = c.dial(fault.option())
	w := reprise.NewWorker(opts)
	w.Task("flaky", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number == 1 {
			return nil, errFlaky
		}
		return "ok", nil
	}, reprise.Immediate(1))
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "flaky", nil)
	if err := resultWithin(t, h, nil); err != nil {
		t.Fatalf("Result = %v, want success on the retry", err)
	}
	if r := fault.firstReceipt(); !r.GetAccepted() || !r.GetDuplicate() {
		t.Fatalf("the re-sent report's receipt = %v, want accepted as a duplicate", r)
	}
	attempts := get(t, client, h.ID).GetAttempts()
	if len(attempts) != 2 || attempts[0].GetState() != reprisev1.AttemptState_ATTEMPT_STATE_FAILED {
		t.Fatalf("attempts = %v, want attempt 1 FAILED once and a retry", attempts)
	}
	var failed []map[string]any
	eventually(t, 5*time.Second, func() bool {
		failed = log.records(t, "reprise: attempt failed")
		return len(failed) > 0
	}, func() string { return "no record of the failed attempt in:\n" + log.buf.String() })
	if refused := log.records(t, "reprise: outcome refused"); len(refused) != 0 {
		t.Fatalf("a duplicate receipt was logged as a refusal: %v", refused)
	}
	// The duplicate does not repeat the decision, so the record must not
	// claim that no retry follows: one did.
	if len(failed) != 1 || failed[0]["msg"] != "reprise: attempt failed; recorded by an earlier report whose answer was lost" ||
		failed[0]["execution_id"] != h.ID || failed[0]["level"] != "INFO" {
		t.Fatalf("records of the failed attempt = %v, want one INFO record saying an earlier report recorded it", failed)
	}
	if _, ok := failed[0]["will_retry"]; ok {
		t.Errorf("will_retry in %v, which a duplicate receipt does not say", failed[0])
	}
}

func TestARefusedReportIsStillLoggedAsARefusal(t *testing.T) {
	c := startCoordinator(t)
	log := &jsonLog{}
	var dropping atomic.Bool
	dropping.Store(true)
	opts := workerOptions(t, c)
	opts.Logger = log.logger()
	// Without heartbeats the worker never learns of the cancellation, so it
	// reports the result, which the coordinator refuses.
	opts.Conn = c.dial(dropHeartbeats(&dropping))
	opts.LeaseDuration = 10 * time.Second
	task := newBlockingTask()
	w := reprise.NewWorker(opts)
	w.Task("blocks", task.handle)
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "blocks", nil)
	task.waitStarted(t)
	if _, err := client.Cancel(context.Background(), h.ID); err != nil {
		t.Fatal(err)
	}
	close(task.release)
	var refused []map[string]any
	eventually(t, 5*time.Second, func() bool {
		refused = log.records(t, "reprise: outcome refused")
		return len(refused) > 0
	}, func() string { return "no record of the refusal in:\n" + log.buf.String() })
	if r := refused[0]; r["level"] != "INFO" || r["execution_id"] != h.ID || !strings.Contains(fmt.Sprint(r["reason"]), "cancelled") {
		t.Fatalf("record = %v, want an INFO refusal of %s saying it was cancelled", r, h.ID)
	}
}
