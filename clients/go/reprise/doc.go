// Package reprise is the Go client of the Reprise retry coordinator.
//
// A Worker declares tasks, each with a retry policy, then leases attempts,
// runs them and reports outcomes; the coordinator decides every retry. A
// Client submits executions and waits for their results through every retry;
// submits made at the same time, from many goroutines, share SubmitBatch
// calls.
//
// Retry semantics follow Coflux's "Automatic retries" (see the repository's
// docs/semantics.md, "Retry policies"):
//
//	reprise.Retries{}                 at most once (the default)
//	reprise.Immediate(n)              n retries, each right after the failure
//	reprise.Retries{Limit: n}         the same: a zero Backoff is no delay
//	reprise.Retries{Limit: n, Backoff: [2]time.Duration{min, max}}
//	                                  n retries, delays interpolated min..max
//	reprise.Retries{Limit: n, Backoff: reprise.DefaultBackoff}
//	                                  Coflux's Retries(limit=n): 1 s .. 60 s
//	reprise.Unlimited()               retries=True: random 1 s .. 60 s
//	reprise.Retries{Unlimited: true, Backoff: [2]time.Duration{min, max}}
//	                                  unlimited, random in [min, max]
//
// Beyond Coflux, and changing nothing at their zero values: Coefficient
// makes the backoff exponential (retry k waits min(max, min·c^(k-1))),
// Jitter spreads each delay d over [d·(1-Jitter), d], and MaxElapsed ends
// the retries when the next one would start more than MaxElapsed after the
// first attempt was due. A RetryBudget task option caps how fast a task's
// retries start, deferring (never dropping) the rest.
//
// Errors steer outcomes. A handler's error is retried while retries remain,
// unless the task's When condition rejects it or it wraps Permanent(err);
// RetryAfter(d, err) asks for a specific delay before the next retry; and
// Snooze(d) is no failure at all: the execution runs again after d without
// using up a retry. Client.Rerun runs an execution that ended without
// succeeding again.
package reprise
