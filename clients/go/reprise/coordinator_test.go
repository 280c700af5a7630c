package reprise_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"github.com/reprise-dev/reprise/clients/go/reprise"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The tests run a real coordinator (node dist/server/cli.js) over loopback,
// with a fresh database per test. Nothing is mocked; faults are injected with
// gRPC interceptors on the worker's side only.

// REPRISE_COORDINATOR_ROOT points at another checkout's build, for example
// a known-good one while the server in this checkout is being changed.
var (
	repoRoot       = coordinatorRoot()
	coordinatorCLI = filepath.Join(repoRoot, "dist", "server", "cli.js")
)

func coordinatorRoot() string {
	if root := os.Getenv("REPRISE_COORDINATOR_ROOT"); root != "" {
		return root
	}
	root, _ := filepath.Abs("../../..")
	return root
}

// coordinator is one `reprise serve` process.
type coordinator struct {
	t    *testing.T
	addr string
	db   string
	args []string // more `reprise serve` options
	cmd  *exec.Cmd
	log  *syncBuffer
	exit chan error
	// conns are closed only after the coordinator has stopped: a connection
	// closed just before SIGTERM holds up the coordinator's shutdown for its
	// whole 3 s grace (see the Go client's report).
	conns []*grpc.ClientConn
}

var servingOn = regexp.MustCompile(`serving on 127\.0\.0\.1:(\d+)`)

// startCoordinator starts a coordinator on a free port with a fresh database
// and stops it (SIGTERM, by PID) when the test ends.
func startCoordinator(t *testing.T, args ...string) *coordinator {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed, so no coordinator can run: skipping")
	}
	if _, err := os.Stat(coordinatorCLI); err != nil {
		t.Fatalf("%s is missing: build the coordinator first with `npx tsc -b` in %s", coordinatorCLI, repoRoot)
	}
	c := &coordinator{t: t, db: filepath.Join(t.TempDir(), "r.db"), args: args, log: &syncBuffer{}}
	c.start("127.0.0.1:0")
	t.Cleanup(func() {
		c.stop()
		for _, conn := range c.conns {
			_ = conn.Close()
		}
		if t.Failed() {
			t.Logf("coordinator output:\n%s", c.log.String())
		}
	})
	return c
}

func (c *coordinator) start(listen string) {
	c.t.Helper()
	cmd := exec.Command("node", append([]string{coordinatorCLI, "serve", "--listen", listen, "--db", c.db}, c.args...)...)
	cmd.Dir = repoRoot
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout = c.log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting the coordinator: %v", err)
	}
	c.cmd, c.exit = cmd, make(chan error, 1)
	port := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			line := scanner.Text()
			c.log.WriteString(line + "\n")
			if m := servingOn.FindStringSubmatch(line); m != nil {
				port <- m[1]
			}
		}
		c.exit <- cmd.Wait()
	}()
	select {
	case p := <-port:
		c.addr = "127.0.0.1:" + p
	case err := <-c.exit:
		c.exit <- err
		c.t.Fatalf("the coordinator exited before serving (%v):\n%s", err, c.log.String())
	case <-time.After(20 * time.Second):
		c.t.Fatalf("the coordinator did not start within 20 s:\n%s", c.log.String())
	}
	c.waitAccepting()
}

// waitAccepting polls GetExecution until the coordinator answers it (NOT_FOUND
// for a made-up id, or UNAUTHENTICATED when it wants a token), bounded in time.
func (c *coordinator) waitAccepting() {
	c.t.Helper()
	client := reprisev1.NewExecutionServiceClient(c.dial())
	var last error
	eventually(c.t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, last = client.GetExecution(ctx, &reprisev1.GetExecutionRequest{ExecutionId: "probe"})
		return status.Code(last) == codes.NotFound || status.Code(last) == codes.Unauthenticated
	}, func() string { return fmt.Sprintf("the coordinator never accepted calls: %v", last) })
}

// stop sends SIGTERM to the coordinator's PID and waits for it to exit,
// killing it if it takes longer than its promised 5 s.
func (c *coordinator) stop() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exit:
	case <-time.After(8 * time.Second):
		c.t.Errorf("the coordinator did not exit within 8 s of SIGTERM; killing it")
		_ = c.cmd.Process.Kill()
		<-c.exit
	}
	c.cmd = nil
}

// dial returns a connection to the coordinator that lasts the whole test.
func (c *coordinator) dial(opts ...grpc.DialOption) *grpc.ClientConn {
	c.t.Helper()
	conn, err := grpc.NewClient(c.addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns = append(c.conns, conn)
	return conn
}

// restart stops the coordinator and starts it again on the same port and
// database.
func (c *coordinator) restart() {
	c.t.Helper()
	c.stop()
	c.start(c.addr)
}

// eventually polls cond until it holds or timeout passes; the tests wait on
// conditions, never on fixed sleeps.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runWorker runs w until the test ends (or the returned stop is called),
// and fails the test if Run returns an error or does not return.
func runWorker(t *testing.T, w *reprise.Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Worker.Run: %v", err)
				}
				checkNoRunnerGoroutines(t)
			case <-time.After(20 * time.Second):
				t.Errorf("Worker.Run did not return within 20 s of cancellation")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// checkNoRunnerGoroutines fails the test if any of the worker's goroutines
// (lease, heartbeat, report or handler) outlives Run.
func checkNoRunnerGoroutines(t *testing.T) {
	t.Helper()
	var stacks []byte
	leaked := func() bool {
		stacks = make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		return bytes.Contains(stacks, []byte("reprise.(*runner)"))
	}
	deadline := time.Now().Add(2 * time.Second)
	for leaked() {
		if time.Now().After(deadline) {
			t.Errorf("worker goroutines outlived Run:\n%s", stacks)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// workerOptions are fast settings for tests: short leases and polls.
func workerOptions(t *testing.T, c *coordinator) reprise.WorkerOptions {
	return reprise.WorkerOptions{
		Conn:          c.dial(),
		WorkerID:      "go-test-" + t.Name(),
		Concurrency:   4,
		LeaseDuration: 900 * time.Millisecond,
		PollWait:      2 * time.Second,
		ShutdownGrace: 5 * time.Second,
		Logger:        testLogger(t),
	}
}

func newClient(t *testing.T, c *coordinator) *reprise.Client {
	t.Helper()
	client, err := reprise.NewClient(reprise.ClientOptions{Conn: c.dial()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// testLogger keeps the worker's log and prints it only if the test fails.
func testLogger(t *testing.T) *slog.Logger {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) WriteString(s string) { _, _ = b.Write([]byte(s)) }

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// resultWithin calls Result with a deadline.
func resultWithin(t *testing.T, h *reprise.Handle, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := h.Result(ctx, out)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("execution %s did not end within 15 s", h.ID)
	}
	return err
}

func get(t *testing.T, client *reprise.Client, id string) *reprisev1.Execution {
	t.Helper()
	ex, err := client.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("GetExecution %s: %v", id, err)
	}
	return ex
}
