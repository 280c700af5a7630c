package reprise_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/clients/go/reprise"
)

// HTTPError is a user's error type that wraps the cause of the failure.
type HTTPError struct {
	Status int
	Err    error
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err) }
func (e *HTTPError) Unwrap() error { return e.Err }

// jsonLog is a worker logger whose records the test can read back.
type jsonLog struct{ buf syncBuffer }

func (l *jsonLog) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(&l.buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the records whose message starts with prefix.
func (l *jsonLog) records(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	var found []map[string]any
	scanner := bufio.NewScanner(strings.NewReader(l.buf.String()))
	for scanner.Scan() {
		var record map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &record); err != nil {
			t.Fatalf("log line %q: %v", scanner.Text(), err)
		}
		if msg, _ := record["msg"].(string); strings.HasPrefix(msg, prefix) {
			found = append(found, record)
		}
	}
	return found
}

func TestFailedAttemptAndItsScheduledRetryAreLoggedAtInfo(t *testing.T) {
	c := startCoordinator(t)
	log := &jsonLog{}
	opts := workerOptions(t, c)
	opts.Logger = log.logger()
	w := reprise.NewWorker(opts)
	w.Task("fetch", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if a, _ := reprise.AttemptFromContext(ctx); a.Number == 1 {
			return nil, fmt.Errorf("GET /report: %w", &HTTPError{Status: 503, Err: io.ErrUnexpectedEOF})
		}
		return "ok", nil
	}, reprise.Retries{Limit: 2, Backoff: [2]time.Duration{300 * time.Millisecond, 600 * time.Millisecond}})
	runWorker(t, w)
	client := newClient(t, c)

	h, err := client.Submit(context.Background(), "fetch", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := resultWithin(t, h, nil); err != nil {
		t.Fatalf("Result: %v", err)
	}
	var records []map[string]any
	eventually(t, 5*time.Second, func() bool {
		records = log.records(t, "reprise: attempt failed")
		return len(records) > 0
	}, func() string { return "no record of the failed attempt in:\n" + log.buf.String() })
	attempts := get(t, client, h.ID).GetAttempts()
	want := map[string]any{
		"level":           "INFO",
		"msg":             "reprise: attempt failed; retry scheduled",
		"task":            "fetch",
		"execution_id":    h.ID,
		"attempt":         float64(1),
		"error_type":      "reprise_test.HTTPError",
		"error_message":   "GET /report: HTTP 503: unexpected EOF",
		"will_retry":      true,
		"next_attempt_at": attempts[1].GetScheduledAt().AsTime().Format(time.RFC3339Nano),
	}
	if len(records) != 1 {
		t.Fatalf("%d records of a failed attempt, want 1: %v", len(records), records)
	}
	for key, value := range want {
		if records[0][key] != value {
			t.Errorf("%s = %v, want %v (record %v)", key, records[0][key], value, records[0])
		}
	}
	if _, ok := records[0]["retry_in"]; !ok {
		t.Errorf("no retry_in in %v", records[0])
	}
	// The coordinator records the same type the log names.
	if got := attempts[0].GetFailure().GetType(); got != "reprise_test.HTTPError" {
		t.Errorf("attempt 1's failure type = %q, want reprise_test.HTTPError", got)
	}
}

func TestFailedAttemptWithoutRetryIsLoggedAtInfoSayingNoRetry(t *testing.T) {
	c := startCoordinator(t)
	log := &jsonLog{}
	opts := workerOptions(t, c)
	opts.Logger = log.logger()
	w := reprise.NewWorker(opts)
	w.Task("fetch", func(context.Context, json.RawMessage) (any, error) {
		return nil, fmt.Errorf("GET /missing: %w", &HTTPError{Status: 404, Err: io.EOF})
	}, reprise.Retries{Limit: 3, When: reprise.WhenAs(func(e *HTTPError) bool { return e.Status >= 500 })})
	runWorker(t, w)
	client := newClient(t, c)

	h, err := client.Submit(context.Background(), "fetch", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := resultWithin(t, h, nil); err == nil {
		t.Fatal("Result succeeded; want FAILED")
	}
	var records []map[string]any
	eventually(t, 5*time.Second, func() bool {
		records = log.records(t, "reprise: attempt failed")
		return len(records) > 0
	}, func() string { return "no record of the failed attempt in:\n" + log.buf.String() })
	r := records[0]
	if r["level"] != "INFO" || r["msg"] != "reprise: attempt failed; no retry, the execution has failed" ||
		r["execution_id"] != h.ID || r["attempt"] != float64(1) || r["error_type"] != "reprise_test.HTTPError" || r["will_retry"] != false {
		t.Fatalf("record = %v, want an INFO record of attempt 1 of %s with no retry", r, h.ID)
	}
	if _, ok := r["next_attempt_at"]; ok {
		t.Errorf("next_attempt_at in %v, want none", r)
	}
}
