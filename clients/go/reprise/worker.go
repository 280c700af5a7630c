package reprise

import (
	"context"
	"errors"
	"fmt"
	"sync"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Worker runs tasks for a Reprise coordinator. Register tasks with Task, then
// call Run.
type Worker struct {
	opts  WorkerOptions
	mu    sync.Mutex
	tasks []*task
}

type task struct {
	name    string
	handler Handler
	config  taskConfig
}

// NewWorker returns a worker; options are checked when Run starts.
func NewWorker(opts WorkerOptions) *Worker {
	return &Worker{opts: opts}
}

// Task registers a handler for the named task, with its options: a Retries
// policy (default at most once), a Timeout and a RetryBudget. Register every
// task before Run; Run declares them to the coordinator.
//
//	w.Task("call_api", callAPI, reprise.Retries{
//		Limit:   3,
//		Backoff: [2]time.Duration{time.Second, 30 * time.Second},
//		When:    reprise.WhenIs(ErrConn, ErrTimeout),
//	}, reprise.Timeout(time.Minute), reprise.RetryBudget{PerSecond: 10, Burst: 50})
func (w *Worker) Task(name string, fn Handler, opts ...TaskOption) {
	t := &task{name: name, handler: fn}
	for _, o := range opts {
		o.applyTask(&t.config)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tasks = append(w.tasks, t)
}

// Run declares the tasks and runs attempts until ctx is cancelled. Then it
// stops leasing, lets in-flight attempts finish within ShutdownGrace (after
// which their contexts are cancelled with ErrShutdown), reports their
// outcomes and returns nil. While the coordinator is unreachable it keeps
// retrying with backoff. It returns an error at once for invalid options or
// tasks, and when the coordinator rejects the worker's requests as invalid or
// unauthorized.
func (w *Worker) Run(ctx context.Context) error {
	opts := w.opts.withDefaults()
	if err := opts.validate(); err != nil {
		return err
	}
	w.mu.Lock()
	tasks := append([]*task(nil), w.tasks...)
	w.mu.Unlock()
	byName, defs, err := checkTasks(tasks)
	if err != nil {
		return err
	}
	conn := opts.Conn
	if conn == nil {
		cc, err := dial(opts.Address, opts.Token, opts.DialOptions)
		if err != nil {
			return fmt.Errorf("reprise: dialling %s: %w", opts.Address, err)
		}
		defer cc.Close()
		conn = cc
	}
	r := newRunner(opts, reprisev1.NewWorkerServiceClient(conn), byName, defs)
	return r.run(ctx)
}

func checkTasks(tasks []*task) (map[string]*task, []*reprisev1.TaskDefinition, error) {
	if len(tasks) == 0 {
		return nil, nil, errors.New("reprise: no tasks registered: call Worker.Task before Run")
	}
	byName := make(map[string]*task, len(tasks))
	defs := make([]*reprisev1.TaskDefinition, 0, len(tasks))
	for _, t := range tasks {
		switch {
		case t.name == "":
			return nil, nil, errors.New("reprise: Task: the name must not be empty")
		case byName[t.name] != nil:
			return nil, nil, fmt.Errorf("reprise: Task %q: registered twice", t.name)
		case t.handler == nil:
			return nil, nil, fmt.Errorf("reprise: Task %q: the handler is nil", t.name)
		case t.config.timeout < 0 || t.config.timeout > maxDuration:
			return nil, nil, fmt.Errorf("reprise: Task %q: Timeout must be 0 to 365 days; got %v", t.name, t.config.timeout)
		}
		if err := t.config.retries.validate(fmt.Sprintf("reprise: Task %q: Retries", t.name)); err != nil {
			return nil, nil, err
		}
		if err := t.config.budget.validate(fmt.Sprintf("reprise: Task %q: RetryBudget", t.name)); err != nil {
			return nil, nil, err
		}
		byName[t.name] = t
		def := &reprisev1.TaskDefinition{Name: t.name, RetryPolicy: t.config.retries.wire(), RetryBudget: t.config.budget.wire()}
		if t.config.timeout > 0 {
			def.Timeout = durationpb.New(t.config.timeout)
		}
		defs = append(defs, def)
	}
	return byName, defs, nil
}
