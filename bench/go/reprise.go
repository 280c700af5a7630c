package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"github.com/reprise-dev/reprise/clients/go/reprise"
	"google.golang.org/grpc"
)

// repriseBatch is how many submissions go in one SubmitMany or SubmitBatch
// call, as the other systems get 1,000 per InsertMany / addBulk / addJobs
// call and the TypeScript harness makes 1,000 submits in one turn.
const repriseBatch = 1000

// repriseInFlight is how many goroutines submit at once in the client and
// unary enqueue modes.
const repriseInFlight = 64

// The ways W1 and W2 enqueue (--reprise-submit).
const (
	submitMany   = "many"   // Client.SubmitMany, 1,000 per call, one call after the other (the default)
	submitClient = "client" // Client.Submit from 64 goroutines: the client gathers them into SubmitBatch calls
	submitBatch  = "batch"  // SubmitBatch on the generated stub, 1,000 per call, bypassing the client
	submitUnary  = "unary"  // Submit on the generated stub, one unary call each, 64 in flight, bypassing the client
)

var submitModes = []string{submitMany, submitClient, submitBatch, submitUnary}

// repriseSystem is Reprise through its Go client: reprise.Worker at the given
// concurrency with one task, and reprise.Client for the caller's side.
type repriseSystem struct {
	address     string
	concurrency int
	workload    string
	logger      *slog.Logger
	stats       *rpcStats // --rpc-stats; nil otherwise
	submit      string    // --reprise-submit: one of submitModes

	task      string
	workerID  string
	client    *reprise.Client
	stopWork  context.CancelFunc
	workerRun chan error
}

func (s *repriseSystem) start(ctx context.Context, rec *recorder) error {
	s.task = fmt.Sprintf("go-%s-%d", s.workload, os.Getpid())
	s.workerID = fmt.Sprintf("bench-go-%d", os.Getpid())
	var dialOptions []grpc.DialOption
	if s.stats != nil {
		dialOptions = append(dialOptions, grpc.WithChainUnaryInterceptor(s.stats.interceptor()))
	}
	client, err := reprise.NewClient(reprise.ClientOptions{Address: s.address, DialOptions: dialOptions})
	if err != nil {
		return err
	}
	s.client = client

	// The policy W2 and W4 ask for: one retry, right away (W2) or 1 s after
	// the failure (W4). W1 and W3 keep the default, at most once.
	var retries reprise.Retries
	switch s.workload {
	case "W2":
		retries = reprise.Retries{Limit: 1, Backoff: [2]time.Duration{0, 0}}
	case "W4":
		retries = reprise.Retries{Limit: 1, Backoff: [2]time.Duration{time.Second, time.Second}}
	}
	w := reprise.NewWorker(reprise.WorkerOptions{
		Address:     s.address,
		WorkerID:    s.workerID,
		Concurrency: s.concurrency,
		Logger:      s.logger,
		DialOptions: dialOptions,
	})
	w.Task(s.task, reprise.Func(func(ctx context.Context, a benchArgs) (any, error) {
		if err := rec.work(a); err != nil {
			return nil, err
		}
		attempt, _ := reprise.AttemptFromContext(ctx)
		rec.finished(attempt.ExecutionID)
		return nil, nil
	}), retries)

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	s.stopWork = stopWork
	s.workerRun = make(chan error, 1)
	go func() { s.workerRun <- w.Run(workCtx) }()

	// Ready once the coordinator has this worker's declaration of the task:
	// Run declares, then long-polls at once.
	for {
		tasks, err := s.client.Executions().ListTasks(ctx, &reprisev1.ListTasksRequest{})
		if err == nil {
			for _, t := range tasks.GetTasks() {
				if t.GetName() == s.task && t.GetDeclaredBy() == s.workerID {
					return nil
				}
			}
		}
		select {
		case err := <-s.workerRun:
			s.workerRun <- err
			return fmt.Errorf("the worker stopped: %v", err)
		default:
		}
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return fmt.Errorf("the worker never declared %s: %w (last ListTasks error: %v)", s.task, context.Cause(ctx), err)
		}
	}
}

// enqueueBulk submits count executions the way --reprise-submit says.
func (s *repriseSystem) enqueueBulk(ctx context.Context, count int) error {
	switch s.submit {
	case submitClient:
		return inParallel(count, func(i int) error {
			_, err := s.client.Submit(ctx, s.task, benchArgs{I: i})
			return err
		})
	case submitUnary:
		return inParallel(count, func(i int) error {
			req, err := s.request(i)
			if err == nil {
				_, err = s.client.Executions().Submit(ctx, req)
			}
			return err
		})
	case submitBatch:
		return s.enqueueBatches(ctx, count)
	}
	for start := 0; start < count; start += repriseBatch {
		subs := make([]reprise.Submission, 0, repriseBatch)
		for i := start; i < min(count, start+repriseBatch); i++ {
			subs = append(subs, reprise.Submission{Task: s.task, Args: benchArgs{I: i}})
		}
		if _, err := s.client.SubmitMany(ctx, subs); err != nil {
			return err
		}
	}
	return nil
}

// enqueueBatches calls SubmitBatch on the generated ExecutionService client
// (Client.Executions()), 1,000 submissions per call, one call after the other.
func (s *repriseSystem) enqueueBatches(ctx context.Context, count int) error {
	for start := 0; start < count; start += repriseBatch {
		end := min(count, start+repriseBatch)
		subs := make([]*reprisev1.SubmitRequest, 0, end-start)
		for i := start; i < end; i++ {
			req, err := s.request(i)
			if err != nil {
				return err
			}
			subs = append(subs, req)
		}
		resp, err := s.client.Executions().SubmitBatch(ctx, &reprisev1.SubmitBatchRequest{Submissions: subs})
		if err != nil {
			return err
		}
		if got := len(resp.GetResults()); got != len(subs) {
			return fmt.Errorf("SubmitBatch answered %d results for %d submissions", got, len(subs))
		}
	}
	return nil
}

func (s *repriseSystem) request(i int) (*reprisev1.SubmitRequest, error) {
	data, err := json.Marshal(benchArgs{I: i})
	if err != nil {
		return nil, err
	}
	return &reprisev1.SubmitRequest{Task: s.task, Arguments: &reprisev1.Payload{Data: data, ContentType: reprise.ContentTypeJSON}}, nil
}

// inParallel calls submit(i) for every i below count from repriseInFlight
// goroutines, and returns the first error; after one, the others stop once
// their call returns.
func inParallel(count int, submit func(i int) error) error {
	var next atomic.Int64
	errs := make(chan error, repriseInFlight)
	for range repriseInFlight {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= count {
					errs <- nil
					return
				}
				if err := submit(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var first error
	for range repriseInFlight {
		if err := <-errs; err != nil && first == nil {
			first = err
			next.Store(int64(count))
		}
	}
	return first
}

func (s *repriseSystem) submitOne(ctx context.Context, a benchArgs) error {
	_, err := s.client.Submit(ctx, s.task, a)
	return err
}

// confirmDone polls GetExecution on the execution whose handler finished
// last, every millisecond, until it is SUCCEEDED (as the Node harness does).
// The Go worker's handlers run on 64 goroutines, so the last handler to
// finish need not be the last outcome queued: ListTasks then checks that
// every execution of the task is SUCCEEDED, and is polled until it is.
func (s *repriseSystem) confirmDone(ctx context.Context, rec *recorder) error {
	id := rec.last()
	for {
		resp, err := s.client.Executions().GetExecution(ctx, &reprisev1.GetExecutionRequest{ExecutionId: id})
		if err != nil {
			return err
		}
		if resp.GetExecution().GetState() == reprisev1.ExecutionState_EXECUTION_STATE_SUCCEEDED {
			break
		}
		if !sleepCtx(ctx, time.Millisecond) {
			return fmt.Errorf("execution %s never SUCCEEDED: %w", id, context.Cause(ctx))
		}
	}
	for {
		succeeded, err := s.succeeded(ctx)
		if err != nil {
			return err
		}
		if succeeded == int64(rec.expected) {
			return nil
		}
		if !sleepCtx(ctx, time.Millisecond) {
			return fmt.Errorf("%d of %d executions SUCCEEDED: %w", succeeded, rec.expected, context.Cause(ctx))
		}
	}
}

func (s *repriseSystem) succeeded(ctx context.Context) (int64, error) {
	tasks, err := s.client.Executions().ListTasks(ctx, &reprisev1.ListTasksRequest{})
	if err != nil {
		return 0, err
	}
	for _, t := range tasks.GetTasks() {
		if t.GetName() != s.task {
			continue
		}
		for _, c := range t.GetExecutions() {
			if c.GetState() == reprisev1.ExecutionState_EXECUTION_STATE_SUCCEEDED {
				return c.GetCount(), nil
			}
		}
	}
	return 0, nil
}

// stop cancels Run's context: the worker stops leasing, finishes and reports
// what is in flight, and returns.
func (s *repriseSystem) stop(ctx context.Context) error {
	var errs []error
	if s.stopWork != nil {
		s.stopWork()
		select {
		case err := <-s.workerRun:
			errs = append(errs, err)
		case <-ctx.Done():
			errs = append(errs, errors.New("the worker did not stop in time"))
		}
	}
	if s.client != nil {
		errs = append(errs, s.client.Close())
	}
	return errors.Join(errs...)
}
