// Command bench runs one workload of the Node harness (bench/src/workloads.mjs)
// on one Go system: Reprise's Go client (worker and caller) or River
// (github.com/riverqueue/river, riverpgxv5). The worker runs in this process,
// on goroutines, as Go users run River; the caller is the same process.
//
//	bench --system reprise|river --workload W1|W2|W3|W4 --count N
//	      [--reprise-address HOST:PORT] [--pg-url postgres://...] [--concurrency 64]
//
// It prints exactly one JSON line, the last line of stdout:
//
//	W1, W2: {"perSecond": n, "seconds": s, "enqueueSeconds": s}
//	W3, W4: {"p50": ms, "p95": ms, "p99": ms, "p99Steady": ms, "first": ms, "max": ms, "min": ms}
//
// and exits non-zero with a one-line error on stderr when the workload does
// not complete within --timeout (300 s).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// base is the origin of every timestamp of this run: time.Since reads the
// monotonic clock, and the caller and the worker share this process.
var base = time.Now()

// nowMs is milliseconds since base, with sub-millisecond resolution.
func nowMs() float64 { return float64(time.Since(base).Nanoseconds()) / 1e6 }

// benchArgs are the arguments of every execution/job: i numbers it, t is the
// submit time (W3, W4), taken just before the submit/insert call.
type benchArgs struct {
	I int     `json:"i"`
	T float64 `json:"t,omitempty"`
}

// Kind names the River job kind.
func (benchArgs) Kind() string { return "bench" }

type mode int

const (
	modeNoop     mode = iota // W1: every attempt succeeds at once
	modeFailOnce             // W2, W4: the first attempt of each item fails, the second succeeds
	modeLatency              // W3: records handler start minus submit time
)

// errTransient is what a first attempt returns in failonce mode: retryable.
var errTransient = errors.New("first attempt fails on purpose")

// recorder is what the worker's handler sees and records, the same for both
// systems (bench/src/worker.mjs's work() and finished()).
type recorder struct {
	mode     mode
	expected int
	delayMs  float64

	mu        sync.Mutex
	seen      map[int]bool
	failedAt  map[int]float64
	retryAt   map[int]float64
	latencies []float64

	completed atomic.Int64
	lastID    atomic.Value // string
	doneOnce  sync.Once
	done      chan struct{}
}

func newRecorder(m mode, expected int, delayMs float64) *recorder {
	return &recorder{
		mode: m, expected: expected, delayMs: delayMs,
		seen: map[int]bool{}, failedAt: map[int]float64{}, retryAt: map[int]float64{},
		done: make(chan struct{}),
	}
}

// work is the handler's body; it returns errTransient when the attempt must fail.
func (r *recorder) work(a benchArgs) error {
	started := nowMs()
	switch r.mode {
	case modeLatency:
		r.mu.Lock()
		r.latencies = append(r.latencies, started-a.T)
		r.mu.Unlock()
	case modeFailOnce:
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.seen[a.I] {
			r.seen[a.I] = true
			r.failedAt[a.I] = nowMs()
			return errTransient
		}
		r.retryAt[a.I] = started
	}
	return nil
}

// finished counts one successful execution; the expected-th closes done.
func (r *recorder) finished(id string) {
	n := r.completed.Add(1)
	if int(n) == r.expected {
		r.lastID.Store(id)
		r.doneOnce.Do(func() { close(r.done) })
	}
}

func (r *recorder) last() string {
	s, _ := r.lastID.Load().(string)
	return s
}

func (r *recorder) lateness() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	// In the order of i, so that --samples shows them as they came due.
	out := make([]float64, 0, len(r.retryAt))
	for _, i := range slices.Sorted(maps.Keys(r.retryAt)) {
		if failed, ok := r.failedAt[i]; ok {
			out = append(out, r.retryAt[i]-(failed+r.delayMs))
		}
	}
	return out
}

func (r *recorder) latencySamples() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.latencies)
}

// system is one system under test: its worker (in this process) and its caller.
type system interface {
	// start starts the worker and returns once it is ready to take work.
	start(ctx context.Context, rec *recorder) error
	// enqueueBulk enqueues count items in bulk (for River, 1,000 per
	// InsertMany call, one after the other; for Reprise, see --reprise-submit).
	enqueueBulk(ctx context.Context, count int) error
	// submitOne submits one item.
	submitOne(ctx context.Context, a benchArgs) error
	// confirmDone returns once the system has recorded the last completion.
	confirmDone(ctx context.Context, rec *recorder) error
	// stop stops the worker and releases everything (River drops its database).
	stop(ctx context.Context) error
}

type options struct {
	system, workload string
	count            int
	repriseAddress   string
	pgURL            string
	concurrency      int
	timeout          time.Duration
	cpuProfile       string
	fetchCooldown    time.Duration
	fetchPoll        time.Duration
	poolConns        int
	rpcStats         bool
	samples          string
	repriseSubmit    string
}

func main() {
	var o options
	flag.StringVar(&o.system, "system", "", "reprise or river")
	flag.StringVar(&o.workload, "workload", "", "W1, W2, W3 or W4")
	flag.IntVar(&o.count, "count", 0, "how many executions/jobs")
	flag.StringVar(&o.repriseAddress, "reprise-address", "127.0.0.1:50051", "a running coordinator, host:port")
	flag.StringVar(&o.pgURL, "pg-url", "", "PostgreSQL server for River (a fresh database is created in it per run)")
	flag.IntVar(&o.concurrency, "concurrency", 64, "worker concurrency")
	flag.DurationVar(&o.timeout, "timeout", 300*time.Second, "bound on the whole run")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	flag.DurationVar(&o.fetchCooldown, "river-fetch-cooldown", time.Millisecond, "River Config.FetchCooldown")
	flag.DurationVar(&o.fetchPoll, "river-fetch-poll-interval", 20*time.Millisecond, "River Config.FetchPollInterval")
	flag.IntVar(&o.poolConns, "river-pool-conns", 11, "pgxpool MaxConns for River")
	flag.StringVar(&o.samples, "samples", "", "W3, W4: write every sample (ms) to this file, one JSON array")
	flag.StringVar(&o.repriseSubmit, "reprise-submit", submitMany, "W1, W2 enqueue for reprise: many (Client.SubmitMany, 1,000 per call), client (Client.Submit from 64 goroutines), batch (SubmitBatch on the generated stub, 1,000 per call) or unary (Submit on the generated stub, 64 in flight)")
	flag.BoolVar(&o.rpcStats, "rpc-stats", false, "reprise: print the client's calls by method on stderr at the end")
	flag.Parse()

	result, err := run(o)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		fmt.Fprintf(os.Stderr, "bench-go: %s %s: %s\n", o.system, o.workload, msg)
		os.Exit(1)
	}
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}

func run(o options) (any, error) {
	switch {
	case o.count < 1:
		return nil, fmt.Errorf("--count must be at least 1")
	case o.concurrency < 1:
		return nil, fmt.Errorf("--concurrency must be at least 1")
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}

	// Both systems log every failed attempt at info; the Node harness drops
	// such per-failure lines too. Warnings and errors still reach stderr.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var sys system
	switch o.system {
	case "reprise":
		if !slices.Contains(submitModes, o.repriseSubmit) {
			return nil, fmt.Errorf("--reprise-submit must be one of %s; got %q", strings.Join(submitModes, ", "), o.repriseSubmit)
		}
		rs := &repriseSystem{address: o.repriseAddress, concurrency: o.concurrency, workload: o.workload, logger: logger, submit: o.repriseSubmit}
		if o.rpcStats {
			rs.stats = newRPCStats()
			defer rs.stats.print(os.Stderr)
		}
		sys = rs
	case "river":
		if o.pgURL == "" {
			return nil, fmt.Errorf("--pg-url is required for river")
		}
		sys = &riverSystem{pgURL: o.pgURL, concurrency: o.concurrency, workload: o.workload, logger: logger,
			fetchCooldown: o.fetchCooldown, fetchPoll: o.fetchPoll, poolConns: int32(o.poolConns)}
	default:
		return nil, fmt.Errorf("--system must be reprise or river; got %q", o.system)
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("the workload did not complete within %v", o.timeout))
	defer cancel()

	switch o.workload {
	case "W1":
		return throughput(ctx, sys, newRecorder(modeNoop, o.count, 0), o.count)
	case "W2":
		return throughput(ctx, sys, newRecorder(modeFailOnce, o.count, 0), o.count)
	case "W3":
		return dispatchLatency(ctx, sys, o.count, 20*time.Millisecond, o.samples)
	case "W4":
		return retryTimer(ctx, sys, o.count, 5*time.Millisecond, o.samples)
	}
	return nil, fmt.Errorf("--workload must be W1, W2, W3 or W4; got %q", o.workload)
}

// withWorker starts the worker, runs body, and always stops the worker
// (within 30 s of a fresh context, so that River's database is dropped even
// after a timeout).
func withWorker(ctx context.Context, sys system, rec *recorder, settle time.Duration, body func() error) (err error) {
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if stopErr := sys.stop(stopCtx); stopErr != nil && err == nil {
			err = fmt.Errorf("stopping: %w", stopErr)
		}
	}()
	if err := sys.start(ctx, rec); err != nil {
		return fmt.Errorf("starting the worker: %w", err)
	}
	// The worker is running and idle (long-poll, LISTEN) when the clock starts.
	if !sleepCtx(ctx, settle) {
		return context.Cause(ctx)
	}
	return body()
}

func waitDone(ctx context.Context, rec *recorder) error {
	select {
	case <-rec.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (%d of %d finished)", context.Cause(ctx), rec.completed.Load(), rec.expected)
	}
}

type throughputResult struct {
	PerSecond      float64 `json:"perSecond"`
	Seconds        float64 `json:"seconds"`
	EnqueueSeconds float64 `json:"enqueueSeconds"`
}

// throughput is W1 and W2: enqueue count items in bulk while the worker works
// them; from just before the first enqueue call to the confirmed last completion.
func throughput(ctx context.Context, sys system, rec *recorder, count int) (any, error) {
	var res throughputResult
	err := withWorker(ctx, sys, rec, 200*time.Millisecond, func() error {
		started := nowMs()
		if err := sys.enqueueBulk(ctx, count); err != nil {
			return fmt.Errorf("enqueueing: %w", err)
		}
		enqueued := nowMs()
		if err := waitDone(ctx, rec); err != nil {
			return err
		}
		if err := sys.confirmDone(ctx, rec); err != nil {
			return fmt.Errorf("confirming the end: %w", err)
		}
		ended := nowMs()
		res.Seconds = (ended - started) / 1000
		res.PerSecond = float64(count) / res.Seconds
		res.EnqueueSeconds = (enqueued - started) / 1000
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// dispatchLatency is W3: after 500 ms idle, submit one at a time, each
// starting gap after the previous one started; handler start minus submit time.
func dispatchLatency(ctx context.Context, sys system, count int, gap time.Duration, samplesFile string) (any, error) {
	rec := newRecorder(modeLatency, count, 0)
	err := withWorker(ctx, sys, rec, 500*time.Millisecond, func() error {
		return submitPaced(ctx, sys, rec, count, gap)
	})
	if err != nil {
		return nil, err
	}
	return summarise(rec.latencySamples(), count, "latencies", samplesFile)
}

// submitPaced submits count items one at a time, each starting gap after the
// previous one started and carrying its submit time, then waits for the worker
// to be done with them all.
func submitPaced(ctx context.Context, sys system, rec *recorder, count int, gap time.Duration) error {
	first := time.Now()
	for i := range count {
		if err := sys.submitOne(ctx, benchArgs{I: i, T: nowMs()}); err != nil {
			return fmt.Errorf("submitting %d: %w", i, err)
		}
		if !sleepCtx(ctx, time.Until(first.Add(time.Duration(i+1)*gap))) {
			return context.Cause(ctx)
		}
	}
	return waitDone(ctx, rec)
}

// retryTimer is W4: count items submitted gap apart fail their first attempt
// and retry after 1 s; lateness is the retry's start minus (failure + 1 s).
func retryTimer(ctx context.Context, sys system, count int, gap time.Duration, samplesFile string) (any, error) {
	rec := newRecorder(modeFailOnce, count, 1000)
	err := withWorker(ctx, sys, rec, 200*time.Millisecond, func() error {
		return submitPaced(ctx, sys, rec, count, gap)
	})
	if err != nil {
		return nil, err
	}
	return summarise(rec.lateness(), count, "lateness samples", samplesFile)
}

type latencyResult struct {
	P50       float64 `json:"p50"`
	P95       float64 `json:"p95"`
	P99       float64 `json:"p99"`
	P99Steady float64 `json:"p99Steady"`
	First     float64 `json:"first"`
	Max       float64 `json:"max"`
	Min       float64 `json:"min"`
}

// warmup is how many first samples p99Steady leaves out (workloads.mjs's WARMUP).
const warmup = 5

func summarise(samples []float64, expected int, what string, samplesFile string) (any, error) {
	if samplesFile != "" {
		data, _ := json.Marshal(samples)
		if err := os.WriteFile(samplesFile, data, 0o644); err != nil {
			return nil, err
		}
	}
	if len(samples) != expected {
		return nil, fmt.Errorf("expected %d %s, got %d", expected, what, len(samples))
	}
	first := samples[0]
	steady := slices.Clone(samples[min(warmup, len(samples)-1):])
	slices.Sort(steady)
	slices.Sort(samples)
	return latencyResult{
		P50: percentile(samples, 50), P95: percentile(samples, 95), P99: percentile(samples, 99),
		P99Steady: percentile(steady, 99), First: first,
		Max: samples[len(samples)-1], Min: samples[0],
	}, nil
}

// percentile is the nearest rank of sorted, p in [0, 100] (common.mjs).
func percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(len(sorted)-1, max(0, rank))]
}

// sleepCtx sleeps d (nothing when d <= 0); false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
