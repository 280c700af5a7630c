package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

const (
	riverQueue = "bench"
	riverBatch = 1000
)

// riverSystem is River on PostgreSQL (riverpgxv5, pgxpool): one River client
// in this process both inserts and works, on a queue with MaxWorkers set to
// the concurrency, in a database created for this run and dropped after it.
type riverSystem struct {
	pgURL         string
	concurrency   int
	workload      string
	logger        *slog.Logger
	fetchCooldown time.Duration
	fetchPoll     time.Duration
	poolConns     int32

	dbName     string
	pool       *pgxpool.Pool
	client     *river.Client[pgx.Tx]
	insertOpts *river.InsertOpts
	started    bool

	// completed counts EventKindJobCompleted events, which River's completer
	// sends after it has written the jobs' completed state.
	completed     atomic.Int64
	allCompleted  chan struct{}
	unsubscribe   func()
	eventsStopped chan struct{}
}

// fixedRetryPolicy schedules every retry delay after River asks, which is
// right after the failed attempt's Work returned (the executor calls the
// policy then): time.Now() for W2, time.Now() + 1 s for W4.
type fixedRetryPolicy struct{ delay time.Duration }

func (p fixedRetryPolicy) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(p.delay) }

type riverWorker struct {
	river.WorkerDefaults[benchArgs]
	rec *recorder
}

func (w *riverWorker) Work(_ context.Context, job *river.Job[benchArgs]) error {
	if err := w.rec.work(job.Args); err != nil {
		return err
	}
	w.rec.finished(strconv.FormatInt(job.ID, 10))
	return nil
}

// adminURL is the given server URL; dbURL is the same with the run's database.
func (s *riverSystem) dbURL() (string, error) {
	u, err := url.Parse(s.pgURL)
	if err != nil {
		return "", fmt.Errorf("--pg-url: %w", err)
	}
	u.Path = "/" + s.dbName
	return u.String(), nil
}

func (s *riverSystem) start(ctx context.Context, rec *recorder) error {
	s.dbName = fmt.Sprintf("river_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000)
	admin, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		s.dbName = ""
		return fmt.Errorf("connecting to %s: %w", s.pgURL, err)
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{s.dbName}.Sanitize())
	admin.Close(context.WithoutCancel(ctx))
	if err != nil {
		s.dbName = ""
		return fmt.Errorf("creating the database: %w", err)
	}

	dbURL, err := s.dbURL()
	if err != nil {
		return err
	}
	poolConfig, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	poolConfig.MaxConns = s.poolConns
	s.pool, err = pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return err
	}
	driver := riverpgxv5.New(s.pool)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: s.logger})
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &riverWorker{rec: rec}); err != nil {
		return err
	}
	config := &river.Config{
		Logger: s.logger,
		// New jobs arrive by LISTEN/NOTIFY (the pgx driver's listener). A
		// fetch may follow a notification at once (FetchCooldown at River's
		// minimum, which also lets every insert send its NOTIFY), and jobs
		// that come due without a notification (retries) are found by the
		// next poll, FetchPollInterval.
		FetchCooldown:     s.fetchCooldown,
		FetchPollInterval: s.fetchPoll,
		Queues:            map[string]river.QueueConfig{riverQueue: {MaxWorkers: s.concurrency}},
		Workers:           workers,
	}
	s.insertOpts = &river.InsertOpts{Queue: riverQueue}
	switch s.workload {
	case "W2":
		config.RetryPolicy = fixedRetryPolicy{delay: 0}
		s.insertOpts.MaxAttempts = 2
	case "W4":
		config.RetryPolicy = fixedRetryPolicy{delay: time.Second}
		s.insertOpts.MaxAttempts = 2
	}
	s.client, err = river.NewClient(driver, config)
	if err != nil {
		return err
	}

	// Completion events, counted; the channel holds every event of the run
	// so that none is dropped (River drops events a subscriber does not take).
	s.allCompleted = make(chan struct{})
	s.eventsStopped = make(chan struct{})
	events, unsubscribe := s.client.SubscribeConfig(&river.SubscribeConfig{
		Kinds:    []river.EventKind{river.EventKindJobCompleted},
		ChanSize: rec.expected + 1000,
	})
	s.unsubscribe = unsubscribe
	go func() {
		defer close(s.eventsStopped)
		for range events {
			if int(s.completed.Add(1)) == rec.expected {
				close(s.allCompleted)
			}
		}
	}()

	if err := s.client.Start(ctx); err != nil {
		return err
	}
	s.started = true
	return nil
}

func (s *riverSystem) enqueueBulk(ctx context.Context, count int) error {
	for start := 0; start < count; start += riverBatch {
		end := min(count, start+riverBatch)
		params := make([]river.InsertManyParams, 0, end-start)
		for i := start; i < end; i++ {
			params = append(params, river.InsertManyParams{Args: benchArgs{I: i}, InsertOpts: s.insertOpts})
		}
		if _, err := s.client.InsertMany(ctx, params); err != nil {
			return err
		}
	}
	return nil
}

func (s *riverSystem) submitOne(ctx context.Context, a benchArgs) error {
	_, err := s.client.Insert(ctx, a, s.insertOpts)
	return err
}

// confirmDone waits for the expected number of completion events (River's
// completer emits them after writing the completed state), then checks in the
// database that no job is left in another state, polling every millisecond
// until none is.
func (s *riverSystem) confirmDone(ctx context.Context, rec *recorder) error {
	select {
	case <-s.allCompleted:
	case <-ctx.Done():
		return fmt.Errorf("%d of %d completion events: %w", s.completed.Load(), rec.expected, context.Cause(ctx))
	}
	for {
		var completed, total int64
		err := s.pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FROM river_job").Scan(&completed, &total)
		if err != nil {
			return err
		}
		if completed == int64(rec.expected) && total == completed {
			return nil
		}
		if !sleepCtx(ctx, time.Millisecond) {
			return fmt.Errorf("%d of %d jobs completed (%d rows): %w", completed, rec.expected, total, context.Cause(ctx))
		}
	}
}

// stop stops the client (it finishes running jobs and flushes its completer),
// closes the pool and drops the run's database.
func (s *riverSystem) stop(ctx context.Context) error {
	var errs []error
	if s.client != nil && s.started {
		errs = append(errs, s.client.Stop(ctx))
	}
	if s.unsubscribe != nil {
		s.unsubscribe()
	}
	if s.pool != nil {
		s.pool.Close()
	}
	if s.dbName != "" {
		admin, err := pgx.Connect(ctx, s.pgURL)
		if err != nil {
			errs = append(errs, err)
		} else {
			_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.dbName}.Sanitize()+" WITH (FORCE)")
			errs = append(errs, err, admin.Close(ctx))
		}
	}
	return errors.Join(errs...)
}
