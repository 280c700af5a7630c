// Command interop is the Go side of the cross-language interop suite
// (test/interop/interop.test.ts). It uses only the Go client library.
//
//	interop worker --address HOST:PORT --worker-id ID
//	interop call   --address HOST:PORT --task NAME --args JSON
//
// The worker serves:
//   - go.echo:   answers {"lang":"go","attempt":n,"echo":<the arguments, byte for byte>};
//   - go.reject: 3 retries, but its When retries only HTTP 5xx, and it always
//     fails with an HTTP 404, so the execution ends FAILED after one attempt;
//   - handoff:   2 immediate retries; answers like go.echo (the Python worker
//     declares the same task, and hangs in it until it is killed).
//
// The caller submits one execution, waits through every retry, and prints one
// JSON line: {"id","result"} or {"id","error":{"kind","type","message"}}.
package main

import (
	"context"
	"encoding/json"
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

// HTTPError is what a real API client might return.
type HTTPError struct{ Status int }

func (e *HTTPError) Error() string       { return fmt.Sprintf("HTTP %d", e.Status) }
func (e *HTTPError) FailureType() string { return "HTTPError" }

type echoed struct {
	Lang    string          `json:"lang"`
	Attempt int             `json:"attempt"`
	Echo    json.RawMessage `json:"echo"`
}

func echo(ctx context.Context, args json.RawMessage) (any, error) {
	a, _ := reprise.AttemptFromContext(ctx)
	fmt.Printf("started %s %s attempt %d\n", a.Task, a.ExecutionID, a.Number)
	if len(args) == 0 {
		args = json.RawMessage("null")
	}
	return echoed{Lang: "go", Attempt: a.Number, Echo: args}, nil
}

func reject(ctx context.Context, _ json.RawMessage) (any, error) {
	a, _ := reprise.AttemptFromContext(ctx)
	fmt.Printf("started %s %s attempt %d\n", a.Task, a.ExecutionID, a.Number)
	return nil, fmt.Errorf("GET /missing: %w", &HTTPError{Status: 404})
}

func runWorker(args []string) error {
	flags := flag.NewFlagSet("worker", flag.ExitOnError)
	address := flags.String("address", "127.0.0.1:50051", "coordinator host:port")
	workerID := flags.String("worker-id", "", "worker id shown on attempts")
	_ = flags.Parse(args)

	w := reprise.NewWorker(reprise.WorkerOptions{
		Address:       *address,
		WorkerID:      *workerID,
		LeaseDuration: time.Second,
		PollWait:      5 * time.Second,
		ShutdownGrace: 5 * time.Second,
	})
	w.Task("go.echo", echo)
	w.Task("go.reject", reject, reprise.Retries{
		Limit:   3,
		Backoff: [2]time.Duration{200 * time.Millisecond, 200 * time.Millisecond},
		When:    reprise.WhenAs(func(e *HTTPError) bool { return e.Status >= 500 }),
	})
	w.Task("handoff", echo, reprise.Immediate(2))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("worker %s: serving go.echo, go.reject, handoff\n", *workerID)
	if err := w.Run(ctx); err != nil {
		return err
	}
	fmt.Println("worker: stopped")
	return nil
}

func runCall(args []string) error {
	flags := flag.NewFlagSet("call", flag.ExitOnError)
	address := flags.String("address", "127.0.0.1:50051", "coordinator host:port")
	task := flags.String("task", "", "task to submit")
	argsJSON := flags.String("args", "null", "the arguments, as JSON")
	timeout := flags.Duration("timeout", 30*time.Second, "how long to wait for the result")
	_ = flags.Parse(args)

	client, err := reprise.NewClient(reprise.ClientOptions{Address: *address})
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	h, err := client.Submit(ctx, *task, json.RawMessage(*argsJSON))
	if err != nil {
		return err
	}
	var result json.RawMessage
	err = h.Result(ctx, &result)
	var execErr *reprise.ExecutionError
	switch {
	case err == nil:
		return printJSON(map[string]any{"id": h.ID, "result": result})
	case errors.As(err, &execErr):
		return printJSON(map[string]any{"id": h.ID, "error": map[string]any{
			"kind": execErr.Kind.String(), "type": execErr.Type, "message": execErr.Message,
		}})
	default:
		return err
	}
}

func printJSON(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	return nil
}

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: interop worker|call [flags]")
	}
	var err error
	switch os.Args[1] {
	case "worker":
		err = runWorker(os.Args[2:])
	case "call":
		err = runCall(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}
