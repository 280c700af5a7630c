package reprise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Client submits executions and waits for their results.
type Client struct {
	conn       *grpc.ClientConn
	executions reprisev1.ExecutionServiceClient
	submits    *submitBatcher
}

// ClientOptions configures a Client.
type ClientOptions struct {
	// Address of the coordinator, host:port. Default "127.0.0.1:50051".
	Address string
	// Conn is an existing connection to use instead of dialling Address.
	// Close does not close it.
	Conn grpc.ClientConnInterface
	// DialOptions are added when dialling Address. Without them the
	// connection is plaintext.
	DialOptions []grpc.DialOption
	// Token is a bearer token (a caller or admin one) for a coordinator
	// run with --auth-tokens, sent on every call. Ignored when Conn is set.
	Token string
}

// NewClient returns a client. The connection is made lazily, on first use.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Conn != nil {
		return newClient(nil, opts.Conn), nil
	}
	if opts.Address == "" {
		opts.Address = defaultAddress
	}
	conn, err := dial(opts.Address, opts.Token, opts.DialOptions)
	if err != nil {
		return nil, fmt.Errorf("reprise: dialling %s: %w", opts.Address, err)
	}
	return newClient(conn, conn), nil
}

func newClient(dialled *grpc.ClientConn, conn grpc.ClientConnInterface) *Client {
	executions := reprisev1.NewExecutionServiceClient(conn)
	return &Client{
		conn:       dialled,
		executions: executions,
		submits:    &submitBatcher{executions: executions, base: context.Background()},
	}
}

// Close closes the connection the client dialled.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Executions is the generated ExecutionService client, for what this type
// does not wrap (ListExecutions, full snapshots).
func (c *Client) Executions() reprisev1.ExecutionServiceClient { return c.executions }

// SubmitOption configures one Submit.
type SubmitOption func(*reprisev1.SubmitRequest) error

// WithRetries gives the execution its own retry policy, overriding the task's
// declaration, even when it is NoRetries. Its When is ignored: conditions run
// on the worker, which applies the declared task's When.
func WithRetries(r Retries) SubmitOption {
	return func(req *reprisev1.SubmitRequest) error {
		if err := r.validate("reprise: WithRetries"); err != nil {
			return err
		}
		req.RetryPolicy = r.wire()
		return nil
	}
}

// WithIdempotencyKey makes the Submit idempotent: a repeat with the same key
// returns the existing execution and creates nothing.
func WithIdempotencyKey(key string) SubmitOption {
	return func(req *reprisev1.SubmitRequest) error { req.IdempotencyKey = key; return nil }
}

// WithDelay sets the earliest start of the first attempt to now + d.
func WithDelay(d time.Duration) SubmitOption {
	return func(req *reprisev1.SubmitRequest) error {
		if d < 0 {
			return fmt.Errorf("reprise: WithDelay: must not be negative; got %v", d)
		}
		req.Delay = durationpb.New(d)
		return nil
	}
}

// WithLabels attaches labels, passed to every attempt.
func WithLabels(labels map[string]string) SubmitOption {
	return func(req *reprisev1.SubmitRequest) error { req.Labels = labels; return nil }
}

// Handle is a submitted execution.
type Handle struct {
	ID string
	// Existing is true when an idempotency key matched an existing execution.
	Existing bool
	client   *Client
}

// Result waits for the execution's end; see Client.Result.
func (h *Handle) Result(ctx context.Context, out any) error { return h.client.Result(ctx, h.ID, out) }

// Rerun runs the execution again after it ended without succeeding; see
// Client.Rerun. Result then waits for its new end.
func (h *Handle) Rerun(ctx context.Context) (*reprisev1.Execution, error) {
	return h.client.Rerun(ctx, h.ID)
}

// Get returns a snapshot of the execution with all its attempts.
func (c *Client) Get(ctx context.Context, id string) (*reprisev1.Execution, error) {
	resp, err := c.executions.GetExecution(ctx, &reprisev1.GetExecutionRequest{ExecutionId: id})
	return resp.GetExecution(), err
}

// Cancel cancels the execution; see ExecutionService.CancelExecution.
func (c *Client) Cancel(ctx context.Context, id string) (*reprisev1.Execution, error) {
	resp, err := c.executions.CancelExecution(ctx, &reprisev1.CancelExecutionRequest{ExecutionId: id})
	return resp.GetExecution(), err
}

// Rerun runs an execution that ended FAILED, ABANDONED, TIMED_OUT or
// CANCELLED again, and returns it PENDING, due now; see
// ExecutionService.RerunExecution. It keeps its id, its attempts and its
// idempotency key; its next attempt is numbered after its last one; and its
// retry limit and MaxElapsed count afresh. An execution that is PENDING,
// RUNNING or SUCCEEDED is not re-run: the error is then a gRPC status error
// with code FailedPrecondition.
func (c *Client) Rerun(ctx context.Context, id string) (*reprisev1.Execution, error) {
	resp, err := c.executions.RerunExecution(ctx, &reprisev1.RerunExecutionRequest{ExecutionId: id})
	return resp.GetExecution(), err
}

// Result waits, through every retry, until the execution ends. When it
// succeeded, the result is decoded into out (JSON; pass a *Payload for the raw
// bytes, or nil to discard it) and Result returns nil. Otherwise it returns an
// *ExecutionError saying how it ended. If the watch stream drops, for
// example while the coordinator restarts, Result watches again until ctx
// ends. Other errors are gRPC status errors (NotFound for an unknown id).
func (c *Client) Result(ctx context.Context, id string, out any) error {
	ex, err := c.Wait(ctx, id)
	if err != nil {
		return err
	}
	if ex.GetState() != reprisev1.ExecutionState_EXECUTION_STATE_SUCCEEDED {
		return executionError(ex)
	}
	return decodePayload(ex.GetResult(), out)
}

// Wait returns the execution's terminal snapshot, watching again whenever
// the stream drops before the end.
func (c *Client) Wait(ctx context.Context, id string) (*reprisev1.Execution, error) {
	for failures := 0; ; failures++ {
		ex, err := c.watchOnce(ctx, id)
		if err == nil {
			return ex, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// RESOURCE_EXHAUSTED on a watch is the per-connection quota of open
		// watches: wait for others to end, like an unavailable coordinator.
		retryable := isTransient(err) || errors.Is(err, errStreamEndedEarly) || status.Code(err) == codes.ResourceExhausted
		if !retryable {
			return nil, err
		}
		if !sleepCtx(ctx, retryBackoff(failures)) {
			return nil, ctx.Err()
		}
	}
}

var errStreamEndedEarly = errors.New("reprise: watch stream ended before the execution did")

func (c *Client) watchOnce(ctx context.Context, id string) (*reprisev1.Execution, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.executions.WatchExecution(ctx, &reprisev1.WatchExecutionRequest{ExecutionId: id})
	if err != nil {
		return nil, err
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return nil, errStreamEndedEarly
		}
		if err != nil {
			return nil, err
		}
		if ex := msg.GetExecution(); isTerminal(ex.GetState()) {
			return ex, nil
		}
	}
}
