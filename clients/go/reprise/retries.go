package reprise

import (
	"fmt"
	"math"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultBackoff is Coflux's default backoff range, [1 s, 60 s]. It is what
// an Unlimited policy with a zero Backoff uses, and what to write for
// Coflux's Retries(limit=N) without a backoff.
var DefaultBackoff = [2]time.Duration{time.Second, time.Minute}

// Limits enforced by the coordinator, checked here too so that a bad policy
// fails at Worker.Run or Submit with a message naming the field.
const (
	maxRetryLimit = 10000
	maxDuration   = 365 * 24 * time.Hour
	maxElapsed    = 3650 * 24 * time.Hour
)

// Retries is a task's retry policy. The zero value means at most once: an
// error or an abandoned attempt ends the execution.
//
// Backoff is [min, max]. With a Limit, retry k of N waits
// min + (max-min)·(k-1)/(N-1) (min when N = 1), and a zero Backoff means each
// retry starts right after the failure, like Coflux's retries=N. With
// Unlimited, each delay is uniform random in [min, max], and a zero Backoff
// means DefaultBackoff, like Coflux's retries=True, because unlimited
// immediate retries would spin.
//
// Coefficient, Jitter and MaxElapsed go beyond Coflux; their zero values
// change nothing. The k of retry k counts failures, abandonments and
// timeouts, never snoozes (see Snooze).
//
//   - Coefficient, if not 0, makes the backoff exponential, limited or
//     Unlimited alike: retry k waits min(max, min·Coefficient^(k-1)). It must
//     be at least 1, and Backoff's min must not be zero, since it is what
//     Coefficient multiplies.
//   - Jitter, a fraction in [0, 1], spreads retries that would start
//     together: a computed delay d becomes uniform random in [d·(1-Jitter), d],
//     so a retry never starts later than its schedule. It does not apply to a
//     RetryAfter delay.
//   - MaxElapsed, if not 0, bounds the time spent retrying: no retry is
//     scheduled to start later than MaxElapsed after the first attempt's
//     earliest start (or after a Rerun). The execution then ends with its
//     failure, as if the limit had been reached. At most 3650 days.
//
// When, if set, is called on the worker with the handler's error. If it
// returns false, the attempt fails as non-retryable and the execution ends
// FAILED without using up any retries. If it panics, the attempt also fails
// as non-retryable, and the failure message carries both the panic and the
// error: a broken predicate is a bug, so it fails fast. See WhenIs and WhenAs.
// When is never sent to the coordinator, so a Submit's own policy ignores it.
type Retries struct {
	Limit       int
	Unlimited   bool
	Backoff     [2]time.Duration
	Coefficient float64
	Jitter      float64
	MaxElapsed  time.Duration
	When        func(err error) bool
}

// NoRetries is the at-most-once policy, the same as Retries{}.
func NoRetries() Retries { return Retries{} }

// Immediate is n retries, each starting right after the failure (Coflux's
// retries=n).
func Immediate(n int) Retries { return Retries{Limit: n} }

// Unlimited retries until an attempt succeeds or fails non-retryably, each
// after a random delay in DefaultBackoff (Coflux's retries=True).
func Unlimited() Retries { return Retries{Unlimited: true, Backoff: DefaultBackoff} }

func (r Retries) applyTask(t *taskConfig) { t.retries = r }

// allowsRetries reports whether any retry can follow a failure.
func (r Retries) allowsRetries() bool { return r.Unlimited || r.Limit > 0 }

func (r Retries) validate(field string) error {
	switch {
	case r.Limit < 0:
		return fmt.Errorf("%s.Limit: must not be negative; got %d", field, r.Limit)
	case r.Limit > maxRetryLimit:
		return fmt.Errorf("%s.Limit: must be at most %d; got %d", field, maxRetryLimit, r.Limit)
	case r.Unlimited && r.Limit > 0:
		return fmt.Errorf("%s: Unlimited must not be set together with Limit %d", field, r.Limit)
	case r.Backoff[0] < 0 || r.Backoff[1] < 0:
		return fmt.Errorf("%s.Backoff: must not be negative; got %v", field, r.Backoff)
	case r.Backoff[0] > maxDuration || r.Backoff[1] > maxDuration:
		return fmt.Errorf("%s.Backoff: must be at most 365 days; got %v", field, r.Backoff)
	case r.Backoff[0] > r.Backoff[1]:
		return fmt.Errorf("%s.Backoff: min %v is greater than max %v", field, r.Backoff[0], r.Backoff[1])
	case math.IsNaN(r.Coefficient) || math.IsInf(r.Coefficient, 0) || (r.Coefficient != 0 && r.Coefficient < 1):
		return fmt.Errorf("%s.Coefficient: must be 0 (Coflux's rule) or a finite number of at least 1; got %v", field, r.Coefficient)
	case r.Coefficient != 0 && r.wireBackoff()[0] == 0:
		return fmt.Errorf("%s.Coefficient: multiplies Backoff's min, which is zero, so every retry would be immediate; set Backoff (for example DefaultBackoff)", field)
	case math.IsNaN(r.Jitter) || r.Jitter < 0 || r.Jitter > 1:
		return fmt.Errorf("%s.Jitter: must be a fraction from 0 to 1; got %v", field, r.Jitter)
	case r.MaxElapsed < 0:
		return fmt.Errorf("%s.MaxElapsed: must not be negative; got %v", field, r.MaxElapsed)
	case r.MaxElapsed > maxElapsed:
		return fmt.Errorf("%s.MaxElapsed: must be at most 3650 days; got %v", field, r.MaxElapsed)
	}
	return nil
}

// wire is the policy as the coordinator sees it. It is never nil, so that a
// Submit's at-most-once policy still overrides the task's declaration, and
// backoffs are always sent explicitly, because an absent backoff on the wire
// means something different for limited and unlimited policies.
func (r Retries) wire() *reprisev1.RetryPolicy {
	backoff := r.wireBackoff()
	p := &reprisev1.RetryPolicy{
		Limit:              uint32(r.Limit),
		Unlimited:          r.Unlimited,
		BackoffMin:         durationpb.New(backoff[0]),
		BackoffMax:         durationpb.New(backoff[1]),
		BackoffCoefficient: r.Coefficient,
		Jitter:             r.Jitter,
	}
	if r.MaxElapsed > 0 {
		p.MaxElapsed = durationpb.New(r.MaxElapsed)
	}
	return p
}

// wireBackoff is Backoff as sent: DefaultBackoff for an Unlimited policy
// with a zero Backoff.
func (r Retries) wireBackoff() [2]time.Duration {
	if r.Unlimited && r.Backoff == [2]time.Duration{} {
		return DefaultBackoff
	}
	return r.Backoff
}
