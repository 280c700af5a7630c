package reprise

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/grpc/metadata"
)

// Submit creates an execution of task. args are encoded as JSON unless they
// are a Payload or json.RawMessage.
//
// Submits made at the same time, from many goroutines, share calls. One made
// while no call of this Client is in flight goes out at once, as a plain
// Submit on ctx. Those made while one is in flight wait for it, then go out
// together as one SubmitBatch (up to 1000 in each). Each caller still gets
// its own answer: SubmitBatch is all or nothing, so a batch the coordinator
// refuses for its content is sent again one submission at a time, and an
// invalid submission fails alone (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for
// arguments over the payload limit) while the others are created.
//
// If ctx ends first, Submit returns ctx.Err() at once. A submission still
// queued is then withdrawn and never created. One already sent may still be
// created: a shared call is not cancelled for one caller, and runs until the
// latest deadline among its callers. To submit again safely after an error,
// give the submission WithIdempotencyKey.
//
// A shared call carries none of its callers' context values. A ctx with
// outgoing gRPC metadata (metadata.AppendToOutgoingContext) therefore gets a
// plain Submit of its own, which carries it. Other errors are gRPC status
// errors; Submit does not retry them.
func (c *Client) Submit(ctx context.Context, task string, args any, opts ...SubmitOption) (*Handle, error) {
	req, err := submitRequest(task, args, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var resp *reprisev1.SubmitResponse
	if hasOutgoingMetadata(ctx) {
		resp, err = c.executions.Submit(ctx, req)
		if err != nil && ctx.Err() != nil {
			err = ctx.Err()
		}
	} else {
		resp, err = c.submits.submit(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	return c.handle(resp), nil
}

// Submission is one execution for SubmitMany, with the arguments of Submit.
type Submission struct {
	Task    string
	Args    any
	Options []SubmitOption
}

// SubmitMany submits every submission, each with the meaning of Submit, and
// answers in order: handles[i] is submission i's execution, or nil when it
// failed. The error then joins every failure, each as "reprise: submission
// i: ...". The submissions queue behind any call in flight and go out in
// batches of up to 1000, shared with concurrent Submits; one refused
// submission does not fail the others.
//
// If ctx ends first, SubmitMany returns the handles answered so far and
// ctx.Err(). The submissions not yet sent are withdrawn; those already sent
// may still be created, as with Submit.
func (c *Client) SubmitMany(ctx context.Context, submissions []Submission) ([]*Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	handles := make([]*Handle, len(submissions))
	errs := make([]error, len(submissions))
	queued := make([]*queuedSubmit, len(submissions))
	toSend := make([]*queuedSubmit, 0, len(submissions))
	for i, s := range submissions {
		req, err := submitRequest(s.Task, s.Args, s.Options)
		if err != nil {
			errs[i] = fmt.Errorf("reprise: submission %d: %w", i, err)
			continue
		}
		queued[i] = newQueuedSubmit(ctx, req)
		toSend = append(toSend, queued[i])
	}
	batcher := c.submits
	if hasOutgoingMetadata(ctx) {
		// A batcher of their own, whose calls carry ctx's metadata.
		batcher = &submitBatcher{executions: c.executions, base: context.WithoutCancel(ctx)}
	}
	batcher.enqueue(toSend)
	for i, q := range queued {
		if q == nil {
			continue
		}
		select {
		case a := <-q.answer:
			if a.err != nil {
				errs[i] = fmt.Errorf("reprise: submission %d: %w", i, a.err)
				continue
			}
			handles[i] = c.handle(a.resp)
		case <-ctx.Done():
			for _, rest := range queued[i:] {
				if rest != nil {
					rest.leave()
				}
			}
			return handles, ctx.Err()
		}
	}
	return handles, errors.Join(errs...)
}

// submitRequest builds the request of one submission. It copies the bytes
// and labels the caller passed: a queued submission may still be sent after
// its caller has left, and the caller may then reuse them.
func submitRequest(task string, args any, opts []SubmitOption) (*reprisev1.SubmitRequest, error) {
	payload, err := encodePayload(args)
	if err != nil {
		return nil, err
	}
	switch args.(type) {
	case Payload, *Payload, json.RawMessage:
		payload.Data = bytes.Clone(payload.Data)
	}
	req := &reprisev1.SubmitRequest{Task: task, Arguments: payload}
	for _, o := range opts {
		if err := o(req); err != nil {
			return nil, err
		}
	}
	req.Labels = maps.Clone(req.Labels)
	return req, nil
}

func (c *Client) handle(resp *reprisev1.SubmitResponse) *Handle {
	return &Handle{ID: resp.GetExecution().GetId(), Existing: resp.GetExisting(), client: c}
}

func hasOutgoingMetadata(ctx context.Context) bool {
	md, ok := metadata.FromOutgoingContext(ctx)
	return ok && md.Len() > 0
}
