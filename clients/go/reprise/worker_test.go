package reprise_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"github.com/reprise-dev/reprise/clients/go/reprise"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var errFlaky = errors.New("flaky upstream")

func TestRetryableErrorIsRetriedThenSucceeds(t *testing.T) {
	c := startCoordinator(t)
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("flaky", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number == 1 {
			return nil, errFlaky
		}
		return "ok", nil
	}, reprise.Immediate(2))
	runWorker(t, w)
	client := newClient(t, c)

	h, err := client.Submit(context.Background(), "flaky", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := resultWithin(t, h, &out); err != nil || out != "ok" {
		t.Fatalf("Result = %q, %v; want ok", out, err)
	}
	ex := get(t, client, h.ID)
	if n := len(ex.GetAttempts()); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
	first := ex.GetAttempts()[0]
	if first.GetState() != reprisev1.AttemptState_ATTEMPT_STATE_FAILED || first.GetFailure().GetMessage() != errFlaky.Error() || first.GetFailure().GetNonRetryable() {
		t.Fatalf("attempt 1 = %v, want a retryable failure with %q", first, errFlaky)
	}
}

func TestErrorWithoutRetriesEndsFailedAtMostOnce(t *testing.T) {
	c := startCoordinator(t)
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("once", func(context.Context, json.RawMessage) (any, error) { return nil, errFlaky })
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "once", nil)
	var execErr *reprise.ExecutionError
	if err := resultWithin(t, h, nil); !errors.As(err, &execErr) || execErr.Kind != reprise.Failed || execErr.Attempts != 1 {
		t.Fatalf("Result = %v, want FAILED after 1 attempt", err)
	}
}

func TestWhenRejectingErrorEndsFailedAfterOneAttemptWithoutUsingRetries(t *testing.T) {
	c := startCoordinator(t)
	errBadRequest := errors.New("400 bad request")
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("call_api", func(context.Context, json.RawMessage) (any, error) {
		return nil, errBadRequest
	}, reprise.Retries{Limit: 3, When: reprise.WhenIs(errFlaky)})
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "call_api", nil)
	var execErr *reprise.ExecutionError
	err := resultWithin(t, h, nil)
	if !errors.As(err, &execErr) {
		t.Fatalf("Result = %v, want an *ExecutionError", err)
	}
	if execErr.Kind != reprise.Failed || execErr.Attempts != 1 || !execErr.NonRetryable || execErr.Message != errBadRequest.Error() {
		t.Fatalf("Result = %+v, want FAILED, non-retryable, after 1 attempt", execErr)
	}
}

func TestPanickingWhenFailsNonRetryableWithBothMessages(t *testing.T) {
	c := startCoordinator(t)
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("broken_when", func(context.Context, json.RawMessage) (any, error) {
		return nil, errors.New("upstream said no")
	}, reprise.Retries{Limit: 3, When: func(error) bool { panic("predicate bug") }})
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "broken_when", nil)
	var execErr *reprise.ExecutionError
	if err := resultWithin(t, h, nil); !errors.As(err, &execErr) {
		t.Fatalf("Result = %v, want an *ExecutionError", err)
	}
	if execErr.Kind != reprise.Failed || execErr.Attempts != 1 || !execErr.NonRetryable ||
		!strings.Contains(execErr.Message, "predicate bug") || !strings.Contains(execErr.Message, "upstream said no") {
		t.Fatalf("Result = %+v, want FAILED non-retryable after 1 attempt with both messages", execErr)
	}
}

func TestHandlerPanicIsARetryableFailureWithItsStack(t *testing.T) {
	c := startCoordinator(t)
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("panics_once", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number == 1 {
			panic("nil map")
		}
		return 1, nil
	}, reprise.Immediate(1))
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "panics_once", nil)
	if err := resultWithin(t, h, nil); err != nil {
		t.Fatalf("Result = %v, want success on the retry", err)
	}
	f := get(t, client, h.ID).GetAttempts()[0].GetFailure()
	if f.GetType() != "panic" || f.GetMessage() != "panic: nil map" || !strings.Contains(f.GetStackTrace(), "worker_test.go") || f.GetNonRetryable() {
		t.Fatalf("attempt 1 failure = %v, want a retryable panic with its stack", f)
	}
}

func TestRetryAfterIsSentAsRetryAfterAndReplacesTheDelay(t *testing.T) {
	c := startCoordinator(t)
	const requested = 400 * time.Millisecond
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("rate_limited", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number == 1 {
			return nil, reprise.RetryAfter(requested, errors.New("429 too many requests"))
		}
		return "done", nil
	}, reprise.Immediate(1))
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "rate_limited", nil)
	if err := resultWithin(t, h, nil); err != nil {
		t.Fatal(err)
	}
	attempts := get(t, client, h.ID).GetAttempts()
	if got := attempts[0].GetFailure().GetRetryAfter().AsDuration(); got != requested {
		t.Fatalf("attempt 1 retry_after = %v, want %v", got, requested)
	}
	// The policy is immediate, so any gap comes from retry_after.
	gap := attempts[1].GetScheduledAt().AsTime().Sub(attempts[0].GetFinishedAt().AsTime())
	if gap != requested {
		t.Fatalf("retry scheduled %v after the failure, want exactly %v", gap, requested)
	}
}

func TestJSONPayloadRoundTrip(t *testing.T) {
	type order struct {
		ID    string            `json:"id"`
		Items []int             `json:"items"`
		Meta  map[string]string `json:"meta"`
	}
	type total struct {
		Sum  int    `json:"sum"`
		Note string `json:"note"`
	}
	c := startCoordinator(t)
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("sum", reprise.Func(func(_ context.Context, o order) (total, error) {
		sum := 0
		for _, i := range o.Items {
			sum += i
		}
		return total{Sum: sum, Note: o.ID + " " + o.Meta["note"]}, nil
	}))
	runWorker(t, w)
	client := newClient(t, c)

	h, err := client.Submit(context.Background(), "sum", order{ID: "o-1", Items: []int{1, 2, 39}, Meta: map[string]string{"note": "é✓"}})
	if err != nil {
		t.Fatal(err)
	}
	var out total
	if err := resultWithin(t, h, &out); err != nil {
		t.Fatal(err)
	}
	if out != (total{Sum: 42, Note: "o-1 é✓"}) {
		t.Fatalf("result = %+v", out)
	}
	ex := get(t, client, h.ID)
	if ex.GetArguments().GetContentType() != reprise.ContentTypeJSON || ex.GetResult().GetContentType() != reprise.ContentTypeJSON {
		t.Fatalf("content types = %q, %q; want %q", ex.GetArguments().GetContentType(), ex.GetResult().GetContentType(), reprise.ContentTypeJSON)
	}
}

func TestArgumentsThatDoNotDecodeFailPermanently(t *testing.T) {
	c := startCoordinator(t)
	w := reprise.NewWorker(workerOptions(t, c))
	w.Task("typed", reprise.Func(func(_ context.Context, n int) (int, error) { return n, nil }), reprise.Immediate(3))
	runWorker(t, w)
	client := newClient(t, c)

	h, _ := client.Submit(context.Background(), "typed", "not a number")
	var execErr *reprise.ExecutionError
	if err := resultWithin(t, h, nil); !errors.As(err, &execErr) || execErr.Type != "ArgumentsError" || execErr.Attempts != 1 {
		t.Fatalf("Result = %v, want an ArgumentsError after 1 attempt", err)
	}
}

func TestConcurrencyIsRespected(t *testing.T) {
	c := startCoordinator(t)
	opts := workerOptions(t, c)
	opts.Concurrency = 2
	var running, peak atomic.Int32
	release := make(chan struct{}, 5)
	w := reprise.NewWorker(opts)
	w.Task("slow", func(ctx context.Context, _ json.RawMessage) (any, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		return nil, nil
	})
	runWorker(t, w)
	client := newClient(t, c)

	var handles []*reprise.Handle
	for range 5 {
		h, err := client.Submit(context.Background(), "slow", nil)
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, h)
	}
	eventually(t, 10*time.Second, func() bool { return running.Load() == 2 }, func() string { return "two attempts never ran at once" })
	list, err := client.Executions().ListExecutions(context.Background(), &reprisev1.ListExecutionsRequest{Task: "slow", State: reprisev1.ExecutionState_EXECUTION_STATE_RUNNING})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetExecutions()); n != 2 {
		t.Fatalf("%d executions RUNNING with Concurrency 2", n)
	}
	for range handles {
		release <- struct{}{}
	}
	for _, h := range handles {
		if err := resultWithin(t, h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak concurrency %d, want 2", p)
	}
}

func TestTokenIsSentOnEveryCallOfTheWorkerAndTheClient(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("worker worker-token-0123456789\ncaller caller-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCoordinator(t, "--auth-tokens", tokens)
	opts := workerOptions(t, c)
	opts.Conn, opts.Address, opts.Token = nil, c.addr, "worker-token-0123456789"
	w := reprise.NewWorker(opts)
	w.Task("guarded", func(context.Context, json.RawMessage) (any, error) { return "ok", nil }, reprise.NoRetries())
	runWorker(t, w)
	client, err := reprise.NewClient(reprise.ClientOptions{Address: c.addr, Token: "caller-token-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	h, err := client.Submit(context.Background(), "guarded", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := resultWithin(t, h, &out); err != nil || out != "ok" {
		t.Fatalf("Result = %q, %v; want ok", out, err)
	}
	anonymous, err := reprise.NewClient(reprise.ClientOptions{Address: c.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer anonymous.Close()
	if _, err := anonymous.Submit(context.Background(), "guarded", nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Submit without a token: %v, want UNAUTHENTICATED", err)
	}
}
