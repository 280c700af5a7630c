// Command worker is an example Reprise worker with two tasks:
//
//   - "flaky_hello" fails retryably on its first attempt, then succeeds;
//   - "call_api" fails with an HTTP 404, which its When condition rejects,
//     so the execution ends FAILED at once without using its retries.
//
// Run it with --address or REPRISE_ADDR (default 127.0.0.1:50051), then
// submit work with ../caller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/reprise-dev/reprise/clients/go/reprise"
)

var errUnavailable = errors.New("upstream unavailable")

// HTTPError is what a real API client might return.
type HTTPError struct{ Status int }

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d", e.Status) }

type greeting struct {
	Name string `json:"name"`
}

func flakyHello(ctx context.Context, g greeting) (string, error) {
	if a, _ := reprise.AttemptFromContext(ctx); a.Number == 1 {
		return "", fmt.Errorf("attempt %d: %w", a.Number, errUnavailable)
	}
	return "hello, " + g.Name, nil
}

func callAPI(ctx context.Context, path string) (string, error) {
	return "", fmt.Errorf("GET %s: %w", path, &HTTPError{Status: 404})
}

func main() {
	address := flag.String("address", envOr("REPRISE_ADDR", "127.0.0.1:50051"), "coordinator host:port (env REPRISE_ADDR)")
	flag.Parse()

	w := reprise.NewWorker(reprise.WorkerOptions{Address: *address, Concurrency: 16})
	w.Task("flaky_hello", reprise.Func(flakyHello), reprise.Immediate(2))
	w.Task("call_api", reprise.Func(callAPI), reprise.Retries{
		Limit:   3,
		Backoff: [2]time.Duration{time.Second, 30 * time.Second},
		// Only server errors are worth retrying; a 4xx fails at once.
		When: reprise.WhenAs(func(e *HTTPError) bool { return e.Status >= 500 }),
	}, reprise.Timeout(time.Minute))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("worker: serving flaky_hello and call_api from %s", *address)
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
	log.Print("worker: stopped")
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
