package reprise

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Micro-batching of submits, as in the TypeScript client: a unary call costs
// the coordinator far more than the row it carries, so submits made at the
// same time share one SubmitBatch. A submit made while no call is in flight
// goes out at once, as a plain Submit on its caller's context, so a lone
// caller waits for no timer. Submits made while a call is in flight queue,
// and go out together when it returns. One call is in flight at a time, so
// the batches grow with the load, as the worker's reports do.
//
// SubmitBatch is all or nothing. When the coordinator refuses a batch for
// its content (one invalid submission, a payload over its limit, a batch
// over a lowered --max-batch-size, or a coordinator without SubmitBatch),
// nothing was created, and each submission is sent again alone, so that
// each caller gets its own answer.

// resendInParallel bounds the plain Submits in flight while a refused batch
// is sent again one submission at a time.
const resendInParallel = 64

type submitBatcher struct {
	executions reprisev1.ExecutionServiceClient
	// base is the parent of every call's context: Background for the
	// client's shared batcher, the caller's (uncancelled) context for the
	// batcher of one SubmitMany whose context carries gRPC metadata.
	base context.Context

	mu sync.Mutex
	// busy is true while a call is in flight; new submits then queue.
	busy  bool
	queue []*queuedSubmit
}

// The states of a queuedSubmit. Its caller and the sender race to move it
// out of submitQueued, with compare-and-swap, so that a submission is either
// sent or withdrawn, never both.
const (
	submitQueued int32 = iota
	// submitSent: taken into a call; the answer comes from that call.
	submitSent
	// submitWithdrawn: its caller left before it was sent. It is never sent.
	submitWithdrawn
	// submitAbandoned: its caller left after it was sent. If the batch is
	// refused, it is not sent again alone.
	submitAbandoned
)

type queuedSubmit struct {
	req *reprisev1.SubmitRequest
	// deadline is the caller's; zero when its context has none.
	deadline time.Time
	state    atomic.Int32
	// answer has room for the one answer, so the sender never waits for a
	// caller that has left.
	answer chan submitAnswer
}

type submitAnswer struct {
	resp *reprisev1.SubmitResponse
	err  error
}

func newQueuedSubmit(ctx context.Context, req *reprisev1.SubmitRequest) *queuedSubmit {
	q := &queuedSubmit{req: req, answer: make(chan submitAnswer, 1)}
	q.deadline, _ = ctx.Deadline()
	return q
}

// leave is called when the caller stops waiting: the submission is withdrawn
// if it has not been sent.
func (q *queuedSubmit) leave() {
	if !q.state.CompareAndSwap(submitQueued, submitWithdrawn) {
		q.state.CompareAndSwap(submitSent, submitAbandoned)
	}
}

// submit sends one submission: at once when no call is in flight, otherwise
// with the next batch.
func (b *submitBatcher) submit(ctx context.Context, req *reprisev1.SubmitRequest) (*reprisev1.SubmitResponse, error) {
	b.mu.Lock()
	if !b.busy {
		b.busy = true
		b.mu.Unlock()
		resp, err := b.executions.Submit(ctx, req)
		b.callEnded()
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return resp, err
	}
	q := newQueuedSubmit(ctx, req)
	b.queue = append(b.queue, q)
	b.mu.Unlock()
	select {
	case a := <-q.answer:
		if a.err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return a.resp, a.err
	case <-ctx.Done():
		q.leave()
		return nil, ctx.Err()
	}
}

// enqueue queues submissions to go out with the next batches, in order, and
// starts sending if no call is in flight.
func (b *submitBatcher) enqueue(qs []*queuedSubmit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queue = append(b.queue, qs...)
	if !b.busy && len(b.queue) > 0 {
		b.busy = true
		go b.sendQueued()
	}
}

// callEnded follows a plain Submit sent at once: what queued meanwhile goes
// out now, on a goroutine of its own so that the caller returns.
func (b *submitBatcher) callEnded() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.busy = false
		return
	}
	go b.sendQueued()
}

// sendQueued sends batches until the queue is empty, one call at a time. It
// holds busy; take releases it.
func (b *submitBatcher) sendQueued() {
	for {
		batch := b.take()
		if len(batch) == 0 {
			return
		}
		b.send(batch)
	}
}

// take removes the next batch from the queue: up to maxBatch submissions
// whose callers are still waiting. When none is left the batcher is idle.
func (b *submitBatcher) take() []*queuedSubmit {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch []*queuedSubmit
	n := 0
	for ; n < len(b.queue) && len(batch) < maxBatch; n++ {
		if q := b.queue[n]; q.state.CompareAndSwap(submitQueued, submitSent) {
			batch = append(batch, q)
		}
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	if len(batch) == 0 {
		b.busy = false
	}
	return batch
}

// send makes one call for the batch and answers each of its callers.
func (b *submitBatcher) send(batch []*queuedSubmit) {
	ctx, cancel := b.callContext(batch)
	defer cancel()
	if len(batch) == 1 {
		resp, err := b.executions.Submit(ctx, batch[0].req)
		batch[0].answer <- submitAnswer{resp: resp, err: err}
		return
	}
	reqs := make([]*reprisev1.SubmitRequest, len(batch))
	for i, q := range batch {
		reqs[i] = q.req
	}
	resp, err := b.executions.SubmitBatch(ctx, &reprisev1.SubmitBatchRequest{Submissions: reqs})
	if err == nil && len(resp.GetResults()) != len(batch) {
		err = status.Errorf(codes.Internal, "reprise: SubmitBatch answered %d results for %d submissions", len(resp.GetResults()), len(batch))
	}
	switch {
	case err == nil:
		for i, q := range batch {
			q.answer <- submitAnswer{resp: resp.GetResults()[i]}
		}
	case refusedForContent(err):
		b.resendAlone(batch)
	default:
		// UNAVAILABLE and the like: whether the batch was created is unknown,
		// as for a plain Submit, so every caller gets the error.
		for _, q := range batch {
			q.answer <- submitAnswer{err: err}
		}
	}
}

// callContext bounds a call by the latest deadline among its callers, and
// by none when one of them has none. A shared call is not cancelled when one
// caller leaves: the others still wait for it.
func (b *submitBatcher) callContext(batch []*queuedSubmit) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, q := range batch {
		if q.deadline.IsZero() {
			return context.WithCancel(b.base)
		}
		if q.deadline.After(latest) {
			latest = q.deadline
		}
	}
	return context.WithDeadline(b.base, latest)
}

// refusedForContent reports whether a SubmitBatch failed because of what it
// carried, so that nothing was created and each submission may be sent alone.
func refusedForContent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.ResourceExhausted, codes.Unimplemented:
		return true
	}
	return false
}

// resendAlone sends each submission of a refused batch as a plain Submit, a
// few at a time, skipping those whose callers have left: nothing of the
// batch was created, and nobody waits for them.
func (b *submitBatcher) resendAlone(batch []*queuedSubmit) {
	next := make(chan *queuedSubmit)
	var wg sync.WaitGroup
	for range min(len(batch), resendInParallel) {
		wg.Go(func() {
			for q := range next {
				b.send([]*queuedSubmit{q})
			}
		})
	}
	for _, q := range batch {
		if q.state.Load() != submitAbandoned {
			next <- q
		}
	}
	close(next)
	wg.Wait()
}
