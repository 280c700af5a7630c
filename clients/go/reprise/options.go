package reprise

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/grpc"
)

// WorkerOptions configures a Worker. Every default is set in withDefaults and
// every limit is checked in validate, at Run.
type WorkerOptions struct {
	// Address of the coordinator, host:port. Default "127.0.0.1:50051".
	// Ignored when Conn is set.
	Address string
	// Conn is an existing connection to use instead of dialling Address. The
	// worker does not close it.
	Conn grpc.ClientConnInterface
	// DialOptions are added when dialling Address (for TLS, interceptors...).
	// Without them the connection is plaintext.
	DialOptions []grpc.DialOption
	// Token is a bearer token (a worker or admin one) for a coordinator run
	// with --auth-tokens, sent on every call. Ignored when Conn is set.
	Token string
	// WorkerID identifies the worker to operators. Default host-pid-random.
	WorkerID string
	// Concurrency is how many attempts run at once. Default 10.
	Concurrency int
	// LeaseDuration is how long a lease lasts without a heartbeat. Heartbeats
	// go every third of it. Default 30 s; 100 ms to 1 hour.
	LeaseDuration time.Duration
	// PollWait is how long one LeaseAttempts call waits for work. Default
	// 30 s; at most 60 s.
	PollWait time.Duration
	// ShutdownGrace is how long in-flight attempts may run on after Run's
	// context is cancelled. Then their contexts are cancelled with
	// ErrShutdown. Default 30 s.
	ShutdownGrace time.Duration
	// Logger receives the worker's diagnostics. Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultAddress       = "127.0.0.1:50051"
	defaultConcurrency   = 10
	defaultLeaseDuration = 30 * time.Second
	defaultPollWait      = 30 * time.Second
	defaultShutdownGrace = 30 * time.Second

	minLeaseDuration = 100 * time.Millisecond
	maxLeaseDuration = time.Hour
	maxPollWait      = 60 * time.Second
	maxConcurrency   = 1000 // LeaseAttempts.max_attempts
)

func (o WorkerOptions) withDefaults() WorkerOptions {
	if o.Address == "" {
		o.Address = defaultAddress
	}
	if o.WorkerID == "" {
		o.WorkerID = defaultWorkerID()
	}
	if o.Concurrency == 0 {
		o.Concurrency = defaultConcurrency
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = defaultLeaseDuration
	}
	if o.PollWait == 0 {
		o.PollWait = defaultPollWait
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = defaultShutdownGrace
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func (o WorkerOptions) validate() error {
	switch {
	case o.Concurrency < 1 || o.Concurrency > maxConcurrency:
		return fmt.Errorf("reprise: WorkerOptions.Concurrency: must be 1 to %d; got %d", maxConcurrency, o.Concurrency)
	case o.LeaseDuration < minLeaseDuration || o.LeaseDuration > maxLeaseDuration:
		return fmt.Errorf("reprise: WorkerOptions.LeaseDuration: must be %v to %v; got %v", minLeaseDuration, maxLeaseDuration, o.LeaseDuration)
	case o.PollWait < 0 || o.PollWait > maxPollWait:
		return fmt.Errorf("reprise: WorkerOptions.PollWait: must be 0 to %v; got %v", maxPollWait, o.PollWait)
	case o.ShutdownGrace < 0:
		return fmt.Errorf("reprise: WorkerOptions.ShutdownGrace: must not be negative; got %v", o.ShutdownGrace)
	case len(o.WorkerID) > 256:
		return fmt.Errorf("reprise: WorkerOptions.WorkerID: must be at most 256 bytes; got %d", len(o.WorkerID))
	}
	return nil
}

func defaultWorkerID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "worker"
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(suffix[:]))
}

// TaskOption configures one task: a Retries policy, a Timeout or a
// RetryBudget.
type TaskOption interface{ applyTask(*taskConfig) }

type taskConfig struct {
	retries Retries
	timeout time.Duration
	budget  RetryBudget
}

type timeoutOption time.Duration

func (d timeoutOption) applyTask(t *taskConfig) { t.timeout = time.Duration(d) }

// Timeout limits how long one attempt of the task may run, counted from its
// lease. An attempt that runs longer becomes TIMED_OUT, which is retryable;
// its handler's context is cancelled with ErrTimeout. Zero means no timeout.
func Timeout(d time.Duration) TaskOption { return timeoutOption(d) }

// Limits of a RetryBudget enforced by the coordinator.
const (
	maxBudgetPerSecond = 1_000_000
	maxBudgetBurst     = 1_000_000
)

// RetryBudget spreads the retries of a task over time, so that a dead
// dependency does not face a retry storm: a token bucket that fills at
// PerSecond tokens a second up to Burst, one bucket per task for the whole
// coordinator. Each retry takes a token; when none is left, the retry is
// deferred until the next one accrues. It is never dropped, though the
// policy's MaxElapsed still applies: a retry deferred past it does not
// happen, and the execution ends with its failure. First attempts and
// snoozes take no token.
//
//	w.Task("call_api", callAPI, reprise.Unlimited(), reprise.RetryBudget{PerSecond: 10, Burst: 50})
//
// A zero PerSecond means no budget; a zero Burst means 1. Like the Timeout,
// the budget is declared with the task and applies to every retry of it,
// whichever policy decided the retry. Both are at most 1000000.
type RetryBudget struct {
	PerSecond float64
	Burst     uint32
}

func (b RetryBudget) applyTask(t *taskConfig) { t.budget = b }

func (b RetryBudget) validate(field string) error {
	switch {
	case math.IsNaN(b.PerSecond) || b.PerSecond < 0 || b.PerSecond > maxBudgetPerSecond:
		return fmt.Errorf("%s.PerSecond: must be 0 to %d; got %v", field, maxBudgetPerSecond, b.PerSecond)
	case b.Burst > maxBudgetBurst:
		return fmt.Errorf("%s.Burst: must be at most %d; got %d", field, maxBudgetBurst, b.Burst)
	}
	return nil
}

// wire is the budget as the coordinator sees it; nil when there is none.
func (b RetryBudget) wire() *reprisev1.RetryBudget {
	if b.PerSecond == 0 {
		return nil
	}
	return &reprisev1.RetryBudget{RetriesPerSecond: b.PerSecond, Burst: b.Burst}
}
