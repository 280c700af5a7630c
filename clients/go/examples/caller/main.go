// Command caller submits one execution of each example task and prints how
// each ended. Run ../worker first; both take --address or REPRISE_ADDR.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/reprise-dev/reprise/clients/go/reprise"
)

func main() {
	address := flag.String("address", envOr("REPRISE_ADDR", "127.0.0.1:50051"), "coordinator host:port (env REPRISE_ADDR)")
	flag.Parse()

	client, err := reprise.NewClient(reprise.ClientOptions{Address: *address})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	hello, err := client.Submit(ctx, "flaky_hello", map[string]string{"name": "Reprise"})
	if err != nil {
		log.Fatal(err)
	}
	var greeting string
	if err := hello.Result(ctx, &greeting); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("flaky_hello %s: %q (after a retry)\n", hello.ID, greeting)

	api, err := client.Submit(ctx, "call_api", "/missing")
	if err != nil {
		log.Fatal(err)
	}
	var execErr *reprise.ExecutionError
	if err := api.Result(ctx, nil); errors.As(err, &execErr) {
		fmt.Printf("call_api %s: %s after %d attempt(s): %s\n", api.ID, execErr.Kind, execErr.Attempts, execErr.Message)
	} else if err != nil {
		log.Fatal(err)
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
