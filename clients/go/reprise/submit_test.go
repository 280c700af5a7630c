package reprise_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"github.com/reprise-dev/reprise/clients/go/reprise"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// submitCalls records the Client's calls as they reach the wire, and can
// hold a chosen call (counted from 1) until the test releases it.
type submitCalls struct {
	mu    sync.Mutex
	calls []submitCall
	holds map[int]*heldCall
}

type submitCall struct {
	method   string // "Submit" or "SubmitBatch"
	tasks    []string
	metadata metadata.MD
}

type heldCall struct {
	entered chan struct{}
	release chan struct{}
}

func newSubmitCalls() *submitCalls { return &submitCalls{holds: map[int]*heldCall{}} }

// hold makes call n wait, once it is made, until release is called.
func (s *submitCalls) hold(n int) (entered <-chan struct{}, release func()) {
	h := &heldCall{entered: make(chan struct{}), release: make(chan struct{})}
	s.mu.Lock()
	s.holds[n] = h
	s.mu.Unlock()
	var once sync.Once
	return h.entered, func() { once.Do(func() { close(h.release) }) }
}

func (s *submitCalls) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	call := submitCall{method: method[strings.LastIndex(method, "/")+1:]}
	switch r := req.(type) {
	case *reprisev1.SubmitRequest:
		call.tasks = []string{r.GetTask()}
	case *reprisev1.SubmitBatchRequest:
		for _, sub := range r.GetSubmissions() {
			call.tasks = append(call.tasks, sub.GetTask())
		}
	default:
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	call.metadata, _ = metadata.FromOutgoingContext(ctx)
	s.mu.Lock()
	s.calls = append(s.calls, call)
	held := s.holds[len(s.calls)]
	s.mu.Unlock()
	if held != nil {
		close(held.entered)
		select {
		case <-held.release:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (s *submitCalls) list() []submitCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]submitCall(nil), s.calls...)
}

// describe is the calls as "Submit[a] SubmitBatch[b c]", for messages.
func (s *submitCalls) describe() string {
	var parts []string
	for _, c := range s.list() {
		parts = append(parts, fmt.Sprintf("%s%v", c.method, c.tasks))
	}
	return strings.Join(parts, " ")
}

// countingClient is a Client whose calls calls records.
func countingClient(t *testing.T, c *coordinator, calls *submitCalls) *reprise.Client {
	t.Helper()
	client, err := reprise.NewClient(reprise.ClientOptions{Conn: c.dial(grpc.WithUnaryInterceptor(calls.intercept))})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

type submitted struct {
	h   *reprise.Handle
	err error
}

// submitAsync calls Submit on a goroutine of its own.
func submitAsync(ctx context.Context, client *reprise.Client, task string, opts ...reprise.SubmitOption) <-chan submitted {
	out := make(chan submitted, 1)
	go func() {
		h, err := client.Submit(ctx, task, nil, opts...)
		out <- submitted{h, err}
	}()
	return out
}

func await(t *testing.T, ch <-chan submitted) submitted {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("Submit did not return within 10 s")
	}
	return submitted{}
}

func waitEntered(t *testing.T, entered <-chan struct{}) {
	t.Helper()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the held call was never made")
	}
}

func waitQueued(t *testing.T, client *reprise.Client, n int) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return reprise.QueuedSubmits(client) == n }, func() string {
		return fmt.Sprintf("%d submissions queued, want %d", reprise.QueuedSubmits(client), n)
	})
}

// checkNoSubmitSender fails the test if the goroutine that sends queued
// submits outlives the queue.
func checkNoSubmitSender(t *testing.T) {
	t.Helper()
	var stacks []byte
	eventually(t, 2*time.Second, func() bool {
		stacks = make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		return !bytes.Contains(stacks, []byte("reprise.(*submitBatcher)"))
	}, func() string { return fmt.Sprintf("the submit sender outlived its queue:\n%s", stacks) })
}

// holdFirstCall makes a lone Submit of task "first" and holds its call, so
// that the submits made next queue behind it. release lets it go; its answer
// is on the returned channel.
func holdFirstCall(t *testing.T, client *reprise.Client, calls *submitCalls) (release func(), first <-chan submitted) {
	t.Helper()
	entered, release := calls.hold(1)
	t.Cleanup(release)
	first = submitAsync(context.Background(), client, "first")
	waitEntered(t, entered)
	return release, first
}

func TestALoneSubmitGoesOutAtOnceAsAPlainSubmit(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)

	for i := range 3 {
		if _, err := client.Submit(context.Background(), fmt.Sprintf("lone-%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := calls.describe(), "Submit[lone-0] Submit[lone-1] Submit[lone-2]"; got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
	checkNoSubmitSender(t)
}

func TestSubmitsMadeWhileACallIsInFlightGoOutAsOneSubmitBatch(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)
	release, first := holdFirstCall(t, client, calls)

	var queued []<-chan submitted
	for i := range 10 {
		queued = append(queued, submitAsync(context.Background(), client, fmt.Sprintf("queued-%d", i)))
	}
	waitQueued(t, client, 10)
	release()

	ids := map[string]bool{}
	for i, ch := range append([]<-chan submitted{first}, queued...) {
		s := await(t, ch)
		if s.err != nil {
			t.Fatalf("submit %d: %v", i, s.err)
		}
		ids[s.h.ID] = true
		task := "first"
		if i > 0 {
			task = fmt.Sprintf("queued-%d", i-1)
		}
		if got := get(t, client, s.h.ID).GetTask(); got != task {
			t.Fatalf("submit %d got the execution of %s, want one of %s", i, got, task)
		}
	}
	if len(ids) != 11 {
		t.Fatalf("%d distinct executions for 11 submits", len(ids))
	}
	got := calls.list()
	if len(got) != 2 || got[0].method != "Submit" || got[1].method != "SubmitBatch" || len(got[1].tasks) != 10 {
		t.Fatalf("calls %s, want one Submit, then one SubmitBatch of 10", calls.describe())
	}
	checkNoSubmitSender(t)
}

func TestARefusedBatchIsResentOneSubmissionAtATime(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)
	release, first := holdFirstCall(t, client, calls)

	good := []<-chan submitted{
		submitAsync(context.Background(), client, "good-0"),
		submitAsync(context.Background(), client, "good-1"),
	}
	waitQueued(t, client, 2)
	bad := submitAsync(context.Background(), client, "not a task name") // whitespace: INVALID_ARGUMENT
	waitQueued(t, client, 3)
	good = append(good, submitAsync(context.Background(), client, "good-2"))
	waitQueued(t, client, 4)
	release()

	for i, ch := range append(good, first) {
		if s := await(t, ch); s.err != nil {
			t.Fatalf("valid submit %d failed with its batch: %v", i, s.err)
		}
	}
	if s := await(t, bad); status.Code(s.err) != codes.InvalidArgument {
		t.Fatalf("the invalid submit got %v, want INVALID_ARGUMENT", s.err)
	}
	got := calls.list()
	if len(got) != 6 || got[1].method != "SubmitBatch" || len(got[1].tasks) != 4 {
		t.Fatalf("calls %s, want Submit, a refused SubmitBatch of 4, then 4 Submits", calls.describe())
	}
	for _, call := range got[2:] {
		if call.method != "Submit" {
			t.Fatalf("calls %s: after the refused batch, each submission goes alone", calls.describe())
		}
	}
	list, err := client.Executions().ListExecutions(context.Background(), &reprisev1.ListExecutionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetExecutions()); n != 4 {
		t.Fatalf("%d executions, want 4: each valid submission once", n)
	}
	checkNoSubmitSender(t)
}

func TestACancelledCallerReturnsAtOnceAndItsQueuedSubmissionIsNeverSent(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)
	release, first := holdFirstCall(t, client, calls)

	ctx, cancel := context.WithCancel(context.Background())
	cancelled := submitAsync(ctx, client, "cancelled")
	waitQueued(t, client, 1)
	stays := submitAsync(context.Background(), client, "stays")
	waitQueued(t, client, 2)
	cancel()
	// The first call is still held: the cancelled caller must not wait for it.
	if s := await(t, cancelled); !errors.Is(s.err, context.Canceled) {
		t.Fatalf("the cancelled caller got %v, want context.Canceled", s.err)
	}
	release()
	for _, ch := range []<-chan submitted{first, stays} {
		if s := await(t, ch); s.err != nil {
			t.Fatal(s.err)
		}
	}
	if got, want := calls.describe(), "Submit[first] Submit[stays]"; got != want {
		t.Fatalf("calls %s, want %s: the withdrawn submission is not sent", got, want)
	}
	checkNoSubmitSender(t)
}

func TestACancelledLoneCallerReturnsItsContextError(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)

	ended, cancelEnded := context.WithCancel(context.Background())
	cancelEnded()
	if _, err := client.Submit(ended, "never", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit on an ended context got %v, want context.Canceled", err)
	}
	if got := calls.describe(); got != "" {
		t.Fatalf("calls %s, want none for an ended context", got)
	}

	entered, release := calls.hold(1)
	t.Cleanup(release)
	ctx, cancel := context.WithCancel(context.Background())
	lone := submitAsync(ctx, client, "lone")
	waitEntered(t, entered)
	cancel()
	if s := await(t, lone); !errors.Is(s.err, context.Canceled) {
		t.Fatalf("the lone caller cancelled during its call got %v, want context.Canceled", s.err)
	}
	// The batcher is idle again: the next submit goes out at once.
	if _, err := client.Submit(context.Background(), "next", nil); err != nil {
		t.Fatal(err)
	}
	if got, want := calls.describe(), "Submit[lone] Submit[next]"; got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
}

func TestACallerThatLeftIsNotResentAloneAfterItsBatchIsRefused(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)
	enteredBatch, releaseBatch := calls.hold(2)
	t.Cleanup(releaseBatch)
	release, first := holdFirstCall(t, client, calls)

	ctx, cancel := context.WithCancel(context.Background())
	leaves := submitAsync(ctx, client, "leaves")
	waitQueued(t, client, 1)
	bad := submitAsync(context.Background(), client, "not a task name")
	waitQueued(t, client, 2)
	release()
	waitEntered(t, enteredBatch)
	cancel()
	if s := await(t, leaves); !errors.Is(s.err, context.Canceled) {
		t.Fatalf("the cancelled caller got %v, want context.Canceled", s.err)
	}
	releaseBatch()

	if s := await(t, first); s.err != nil {
		t.Fatal(s.err)
	}
	if s := await(t, bad); status.Code(s.err) != codes.InvalidArgument {
		t.Fatalf("the invalid submit got %v, want INVALID_ARGUMENT", s.err)
	}
	if got, want := calls.describe(), "Submit[first] SubmitBatch[leaves not a task name] Submit[not a task name]"; got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
	checkNoSubmitSender(t)
}

func TestAnIdempotencyKeyRepeatedWithinOneBatchCreatesOneExecution(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)
	release, first := holdFirstCall(t, client, calls)

	var same []<-chan submitted
	for i := range 3 {
		same = append(same, submitAsync(context.Background(), client, "keyed", reprise.WithIdempotencyKey("order-42")))
		waitQueued(t, client, i+1)
	}
	release()
	if s := await(t, first); s.err != nil {
		t.Fatal(s.err)
	}
	var ids []string
	created := 0
	for _, ch := range same {
		s := await(t, ch)
		if s.err != nil {
			t.Fatal(s.err)
		}
		ids = append(ids, s.h.ID)
		if !s.h.Existing {
			created++
		}
	}
	if ids[0] != ids[1] || ids[1] != ids[2] || created != 1 {
		t.Fatalf("ids %v with %d created, want one execution created and the other two Existing", ids, created)
	}
	if got := calls.list(); len(got) != 2 || got[1].method != "SubmitBatch" {
		t.Fatalf("calls %s, want the three keyed submits in one SubmitBatch", calls.describe())
	}
	again, err := client.Submit(context.Background(), "keyed", nil, reprise.WithIdempotencyKey("order-42"))
	if err != nil || again.ID != ids[0] || !again.Existing {
		t.Fatalf("a later repeat got %+v, %v; want the same execution, Existing", again, err)
	}
}

func TestSubmitManyAnswersInOrderInBatchesOfAtMost1000(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)

	subs := make([]reprise.Submission, 2500)
	for i := range subs {
		subs[i] = reprise.Submission{Task: "many", Args: map[string]int{"i": i}}
	}
	handles, err := client.SubmitMany(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, call := range calls.list() {
		if call.method != "SubmitBatch" {
			t.Fatalf("calls %s, want SubmitBatch only", calls.describe())
		}
		sizes = append(sizes, len(call.tasks))
	}
	if fmt.Sprint(sizes) != "[1000 1000 500]" {
		t.Fatalf("SubmitBatch sizes %v, want [1000 1000 500]", sizes)
	}
	ids := map[string]bool{}
	for _, h := range handles {
		ids[h.ID] = true
	}
	if len(ids) != len(subs) {
		t.Fatalf("%d distinct executions for %d submissions", len(ids), len(subs))
	}
	for _, i := range []int{0, 999, 1000, 2499} {
		want := fmt.Sprintf(`{"i":%d}`, i)
		if got := string(get(t, client, handles[i].ID).GetArguments().GetData()); got != want {
			t.Fatalf("handles[%d] is the execution with arguments %s, want %s", i, got, want)
		}
	}
	checkNoSubmitSender(t)
}

func TestSubmitManyFailsOnlyTheSubmissionsThatAreRefused(t *testing.T) {
	c := startCoordinator(t)
	client := newClient(t, c)

	handles, err := client.SubmitMany(context.Background(), []reprise.Submission{
		{Task: "ok"},
		{Task: "not a task name"},
		{Task: "ok", Options: []reprise.SubmitOption{reprise.WithDelay(-time.Second)}},
		{Task: "ok"},
	})
	if handles[0] == nil || handles[1] != nil || handles[2] != nil || handles[3] == nil {
		t.Fatalf("handles %v, want 0 and 3 only", handles)
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "submission 1:") || !strings.Contains(err.Error(), "submission 2: reprise: WithDelay") {
		t.Fatalf("error %v, want submission 1's INVALID_ARGUMENT and submission 2's WithDelay", err)
	}
}

func TestAContextWithOutgoingMetadataGetsAPlainSubmitOfItsOwn(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)
	release, first := holdFirstCall(t, client, calls)

	// While the first call is held, a submit with metadata does not queue.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tenant", "acme")
	if _, err := client.Submit(ctx, "with-metadata", nil); err != nil {
		t.Fatal(err)
	}
	release()
	if s := await(t, first); s.err != nil {
		t.Fatal(s.err)
	}
	got := calls.list()
	if len(got) != 2 || got[1].method != "Submit" || fmt.Sprint(got[1].metadata.Get("x-tenant")) != "[acme]" {
		t.Fatalf("calls %s, want a plain Submit of with-metadata carrying x-tenant: acme", calls.describe())
	}
}

func TestSubmitManyWithOutgoingMetadataGetsCallsOfItsOwnThatCarryIt(t *testing.T) {
	c := startCoordinator(t)
	calls := newSubmitCalls()
	client := countingClient(t, c, calls)
	release, first := holdFirstCall(t, client, calls)

	// While the first call is held, these do not queue behind it.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tenant", "acme")
	handles, err := client.SubmitMany(ctx, []reprise.Submission{{Task: "tenant-0"}, {Task: "tenant-1"}})
	if err != nil || len(handles) != 2 {
		t.Fatalf("SubmitMany = %v, %v", handles, err)
	}
	release()
	if s := await(t, first); s.err != nil {
		t.Fatal(s.err)
	}
	got := calls.list()
	if len(got) != 2 || got[1].method != "SubmitBatch" || len(got[1].tasks) != 2 || fmt.Sprint(got[1].metadata.Get("x-tenant")) != "[acme]" {
		t.Fatalf("calls %s, want one SubmitBatch of both carrying x-tenant: acme", calls.describe())
	}
	checkNoSubmitSender(t)
}
