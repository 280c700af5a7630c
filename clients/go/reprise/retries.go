package reprise

import (
	"fmt"
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
// When, if set, is called on the worker with the handler's error. If it
// returns false, the attempt fails as non-retryable and the execution ends
// FAILED without using up any retries. If it panics, the attempt also fails
// as non-retryable, and the failure message carries both the panic and the
// error: a broken predicate is a bug, so it fails fast. See WhenIs and WhenAs.
// When is never sent to the coordinator, so a Submit's own policy ignores it.
type Retries struct {
	Limit     int
	Unlimited bool
	Backoff   [2]time.Duration
	When      func(err error) bool
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
	}
	return nil
}

// wire is the policy as the coordinator sees it. It is never nil, so that a
// Submit's at-most-once policy still overrides the task's declaration, and
// backoffs are always sent explicitly, because an absent backoff on the wire
// means something different for limited and unlimited policies.
func (r Retries) wire() *reprisev1.RetryPolicy {
	backoff := r.Backoff
	if r.Unlimited && backoff == [2]time.Duration{} {
		backoff = DefaultBackoff
	}
	return &reprisev1.RetryPolicy{
		Limit:      uint32(r.Limit),
		Unlimited:  r.Unlimited,
		BackoffMin: durationpb.New(backoff[0]),
		BackoffMax: durationpb.New(backoff[1]),
	}
}
