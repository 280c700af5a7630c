package reprise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func policy(limit uint32, unlimited bool, lo, hi time.Duration) *reprisev1.RetryPolicy {
	return &reprisev1.RetryPolicy{Limit: limit, Unlimited: unlimited, BackoffMin: durationpb.New(lo), BackoffMax: durationpb.New(hi)}
}

func withExtras(p *reprisev1.RetryPolicy, coefficient, jitter float64, maxElapsed time.Duration) *reprisev1.RetryPolicy {
	p.BackoffCoefficient, p.Jitter = coefficient, jitter
	if maxElapsed != 0 {
		p.MaxElapsed = durationpb.New(maxElapsed)
	}
	return p
}

func TestRetryPolicyFormsMapToTheWireWithExplicitBackoffs(t *testing.T) {
	cases := []struct {
		name string
		form Retries
		want *reprisev1.RetryPolicy
	}{
		{"zero value is at most once", Retries{}, policy(0, false, 0, 0)},
		{"NoRetries is at most once", NoRetries(), policy(0, false, 0, 0)},
		{"Immediate(n) is n retries with no delay", Immediate(2), policy(2, false, 0, 0)},
		{"Limit without Backoff is immediate, like retries=N", Retries{Limit: 3}, policy(3, false, 0, 0)},
		{"Limit with Backoff interpolates", Retries{Limit: 5, Backoff: [2]time.Duration{300 * time.Second, 600 * time.Second}}, policy(5, false, 300*time.Second, 600*time.Second)},
		{"Limit with DefaultBackoff is Coflux's Retries(limit=N)", Retries{Limit: 4, Backoff: DefaultBackoff}, policy(4, false, time.Second, time.Minute)},
		{"Unlimited() is retries=True, 1 s to 60 s", Unlimited(), policy(0, true, time.Second, time.Minute)},
		{"Unlimited without Backoff sends 1 s to 60 s explicitly", Retries{Unlimited: true}, policy(0, true, time.Second, time.Minute)},
		{"Unlimited with Backoff is random in that range", Retries{Unlimited: true, Backoff: [2]time.Duration{10 * time.Second, 300 * time.Second}}, policy(0, true, 10*time.Second, 300*time.Second)},
		{"sub-second backoffs keep their milliseconds", Retries{Limit: 1, Backoff: [2]time.Duration{1500 * time.Millisecond, 2500 * time.Millisecond}}, policy(1, false, 1500*time.Millisecond, 2500*time.Millisecond)},
		{"zero Coefficient, Jitter and MaxElapsed send nothing", Retries{Limit: 2, Coefficient: 0, Jitter: 0, MaxElapsed: 0}, policy(2, false, 0, 0)},
		{"Coefficient, Jitter and MaxElapsed are sent as they are", Retries{Limit: 5, Backoff: [2]time.Duration{time.Second, time.Minute}, Coefficient: 2, Jitter: 0.25, MaxElapsed: 10 * time.Minute},
			withExtras(policy(5, false, time.Second, time.Minute), 2, 0.25, 10*time.Minute)},
		{"Unlimited with a Coefficient multiplies DefaultBackoff's min", Retries{Unlimited: true, Coefficient: 1.5, Jitter: 1},
			withExtras(policy(0, true, time.Second, time.Minute), 1.5, 1, 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.form.wire()
			if !proto.Equal(got, c.want) {
				t.Fatalf("wire() = %v, want %v", got, c.want)
			}
			if got.GetBackoffMin() == nil || got.GetBackoffMax() == nil {
				t.Fatalf("backoffs must be sent explicitly, got %v", got)
			}
		})
	}
}

func TestInvalidRetryPolicyIsRejectedNamingTheField(t *testing.T) {
	cases := []struct {
		form Retries
		want string
	}{
		{Retries{Limit: -1}, "Limit: must not be negative"},
		{Retries{Limit: 10001}, "Limit: must be at most 10000"},
		{Retries{Limit: 2, Unlimited: true}, "Unlimited must not be set together with Limit"},
		{Retries{Limit: 1, Backoff: [2]time.Duration{2 * time.Second, time.Second}}, "Backoff: min 2s is greater than max 1s"},
		{Retries{Limit: 1, Backoff: [2]time.Duration{-time.Second, time.Second}}, "Backoff: must not be negative"},
	}
	for _, c := range cases {
		err := c.form.validate("Retries")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("validate(%+v) = %v, want it to mention %q", c.form, err, c.want)
		}
	}
}

var someBackoff = [2]time.Duration{time.Second, time.Minute}

func TestCoefficientMustBeZeroOrAFiniteNumberOfAtLeastOne(t *testing.T) {
	for _, bad := range []float64{0.5, -1, math.NaN(), math.Inf(1)} {
		err := Retries{Limit: 3, Backoff: someBackoff, Coefficient: bad}.validate("Retries")
		if err == nil || !strings.Contains(err.Error(), "Retries.Coefficient: must be 0 (Coflux's rule) or a finite number of at least 1") {
			t.Errorf("Coefficient %v: validate = %v, want an error naming Retries.Coefficient", bad, err)
		}
	}
	for _, good := range []float64{0, 1, 2.5, 1000} {
		if err := (Retries{Limit: 3, Backoff: someBackoff, Coefficient: good}).validate("Retries"); err != nil {
			t.Errorf("Coefficient %v: validate = %v, want nil", good, err)
		}
	}
}

func TestCoefficientWithAZeroMinBackoffIsRejectedAsAlwaysImmediate(t *testing.T) {
	for _, form := range []Retries{
		{Limit: 3, Coefficient: 2},
		{Limit: 3, Coefficient: 2, Backoff: [2]time.Duration{0, time.Minute}},
	} {
		err := form.validate("Retries")
		if err == nil || !strings.Contains(err.Error(), "Retries.Coefficient: multiplies Backoff's min, which is zero") {
			t.Errorf("validate(%+v) = %v, want an error naming Retries.Coefficient", form, err)
		}
	}
	// Unlimited with a zero Backoff sends DefaultBackoff, whose min is 1 s.
	if err := (Retries{Unlimited: true, Coefficient: 2}).validate("Retries"); err != nil {
		t.Errorf("Unlimited with a Coefficient: validate = %v, want nil", err)
	}
}

func TestJitterMustBeAFractionFromZeroToOne(t *testing.T) {
	for _, bad := range []float64{-0.1, 1.01, math.NaN(), math.Inf(1), math.Inf(-1)} {
		err := Retries{Limit: 1, Jitter: bad}.validate("Retries")
		if err == nil || !strings.Contains(err.Error(), "Retries.Jitter: must be a fraction from 0 to 1") {
			t.Errorf("Jitter %v: validate = %v, want an error naming Retries.Jitter", bad, err)
		}
	}
	for _, good := range []float64{0, 0.5, 1} {
		if err := (Retries{Limit: 1, Jitter: good}).validate("Retries"); err != nil {
			t.Errorf("Jitter %v: validate = %v, want nil", good, err)
		}
	}
}

func TestMaxElapsedMustBeZeroTo3650Days(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "Retries.MaxElapsed: must not be negative"},
		{3651 * 24 * time.Hour, "Retries.MaxElapsed: must be at most 3650 days"},
	}
	for _, c := range cases {
		err := Retries{Unlimited: true, MaxElapsed: c.d}.validate("Retries")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("MaxElapsed %v: validate = %v, want it to mention %q", c.d, err, c.want)
		}
	}
	for _, good := range []time.Duration{0, time.Minute, 3650 * 24 * time.Hour} {
		if err := (Retries{Unlimited: true, MaxElapsed: good}).validate("Retries"); err != nil {
			t.Errorf("MaxElapsed %v: validate = %v, want nil", good, err)
		}
	}
}

func TestInvalidRetryBudgetFailsRunNamingTheTaskAndField(t *testing.T) {
	cases := []struct {
		budget RetryBudget
		want   string
	}{
		{RetryBudget{PerSecond: -1}, `reprise: Task "t": RetryBudget.PerSecond: must be 0 to 1000000`},
		{RetryBudget{PerSecond: math.NaN()}, `reprise: Task "t": RetryBudget.PerSecond: must be 0 to 1000000`},
		{RetryBudget{PerSecond: math.Inf(1)}, `reprise: Task "t": RetryBudget.PerSecond: must be 0 to 1000000`},
		{RetryBudget{PerSecond: 1, Burst: 1_000_001}, `reprise: Task "t": RetryBudget.Burst: must be at most 1000000`},
	}
	for _, c := range cases {
		w := NewWorker(WorkerOptions{})
		w.Task("t", func(context.Context, json.RawMessage) (any, error) { return nil, nil }, c.budget)
		// Run checks its tasks before it dials, so no coordinator is needed.
		err := w.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Run = %v, want it to mention %q", c.budget, err, c.want)
		}
	}
}

func TestRetryBudgetMapsToTheWireOnlyWithARate(t *testing.T) {
	if got := (RetryBudget{Burst: 5}).wire(); got != nil {
		t.Errorf("a zero PerSecond sent %v, want no budget", got)
	}
	want := &reprisev1.RetryBudget{RetriesPerSecond: 2.5, Burst: 10}
	if got := (RetryBudget{PerSecond: 2.5, Burst: 10}).wire(); !proto.Equal(got, want) {
		t.Errorf("wire() = %v, want %v", got, want)
	}
}

var errConn = errors.New("connection refused")

type httpError struct{ status int }

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d", e.status) }

func TestWhenIsRetriesOnlyMatchingErrorsThroughWrapping(t *testing.T) {
	when := WhenIs(errConn, errTimeoutSentinel)
	if !when(fmt.Errorf("calling api: %w", errConn)) {
		t.Error("a wrapped errConn must be retried")
	}
	if when(errors.New("bad request")) {
		t.Error("an unrelated error must not be retried")
	}
}

var errTimeoutSentinel = errors.New("timeout")

func TestWhenAsRetriesOnlyTypedErrorsThatMatch(t *testing.T) {
	when := WhenAs(func(e *httpError) bool { return e.status >= 500 })
	if !when(fmt.Errorf("upstream: %w", &httpError{503})) {
		t.Error("a wrapped 503 must be retried")
	}
	if when(&httpError{404}) {
		t.Error("a 404 must not be retried")
	}
	if when(errConn) {
		t.Error("an error that is not an *httpError must not be retried")
	}
	if !WhenAs[*httpError](nil)(&httpError{404}) {
		t.Error("WhenAs with a nil match retries every error of the type")
	}
}

func TestFailureOfWhenRejectingIsNonRetryable(t *testing.T) {
	f := failureOf(errors.New("bad request"), WhenIs(errConn))
	if !f.GetNonRetryable() {
		t.Fatalf("failure = %v, want non_retryable", f)
	}
	if f := failureOf(errConn, WhenIs(errConn)); f.GetNonRetryable() {
		t.Fatalf("failure = %v, want retryable", f)
	}
}

func TestFailureOfPanickingWhenIsNonRetryableWithBothMessages(t *testing.T) {
	f := failureOf(errors.New("upstream said no"), func(error) bool { panic("predicate bug") })
	if !f.GetNonRetryable() || !strings.Contains(f.GetMessage(), "predicate bug") || !strings.Contains(f.GetMessage(), "upstream said no") {
		t.Fatalf("failure = %v, want non_retryable with both messages", f)
	}
}

func TestFailureOfPermanentSkipsWhen(t *testing.T) {
	f := failureOf(fmt.Errorf("x: %w", Permanent(errConn)), WhenIs(errConn))
	if !f.GetNonRetryable() {
		t.Fatalf("failure = %v, want non_retryable", f)
	}
}

func TestFailureOfRetryAfterSetsRetryAfter(t *testing.T) {
	f := failureOf(fmt.Errorf("rate limited: %w", RetryAfter(1500*time.Millisecond, errConn)), nil)
	if got := f.GetRetryAfter().AsDuration(); got != 1500*time.Millisecond {
		t.Fatalf("retry_after = %v, want 1.5s", got)
	}
	if f.GetNonRetryable() {
		t.Fatal("RetryAfter must stay retryable")
	}
}

type typedFailure struct{}

func (typedFailure) Error() string       { return "typed" }
func (typedFailure) FailureType() string { return "QuotaExceeded" }

// causeError is a user's error type that wraps a lower-level cause.
type causeError struct{ cause error }

func (e *causeError) Error() string { return "fetching: " + e.cause.Error() }
func (e *causeError) Unwrap() error { return e.cause }

type valueError struct{}

func (valueError) Error() string { return "by value" }

func TestFailureTypeNamesTheUsersErrorTypeNotErrorsErrorString(t *testing.T) {
	bare := errors.New("upstream unavailable")
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"the user's type itself", &httpError{500}, "reprise.httpError"},
		{"a value type", valueError{}, "reprise.valueError"},
		{"under fmt.Errorf's %w", fmt.Errorf("GET /a: %w", fmt.Errorf("retrying: %w", &httpError{503})), "reprise.httpError"},
		{"the user's type, not the cause it wraps", fmt.Errorf("ctx: %w", &causeError{bare}), "reprise.causeError"},
		{"under RetryAfter and Permanent", Permanent(RetryAfter(time.Second, fmt.Errorf("x: %w", &httpError{429}))), "reprise.httpError"},
		{"the first named one under errors.Join", errors.Join(bare, &httpError{502}), "reprise.httpError"},
		{"the first named one under several %w", fmt.Errorf("%w; %w", bare, valueError{}), "reprise.valueError"},
		{"its own FailureType", fmt.Errorf("ctx: %w", typedFailure{}), "QuotaExceeded"},
		{"a bare errors.New is just an error", bare, "error"},
		{"a sentinel under %w is just an error", fmt.Errorf("attempt 1: %w", bare), "error"},
		{"fmt.Errorf without %w is just an error", fmt.Errorf("HTTP %d", 503), "error"},
		{"Permanent of a bare message is just an error", Permanent(bare), "error"},
	} {
		if got := failureOf(c.err, nil).GetType(); got != c.want {
			t.Errorf("%s: type = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestLongFailureTextsAreCutToTheCoordinatorLimits(t *testing.T) {
	f := failureOf(errors.New(strings.Repeat("é", maxFailureMessageBytes)), nil)
	if len(f.GetMessage()) > maxFailureMessageBytes || !strings.HasPrefix(f.GetMessage(), "éé") {
		t.Fatalf("message of %d bytes, want at most %d", len(f.GetMessage()), maxFailureMessageBytes)
	}
}
