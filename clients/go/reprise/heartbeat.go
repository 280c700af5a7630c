package reprise

import (
	"context"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
)

// heartbeatLoop extends every in-flight lease with one Heartbeat call per
// third of the lease, so that two calls can fail before a lease runs out.
// The answer says which attempts the coordinator has ended: their handlers'
// contexts are cancelled and they are not reported.
func (r *runner) heartbeatLoop(ctx context.Context) {
	defer close(r.heartbeatDone)
	interval := r.opts.LeaseDuration / 3
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		// Attempts awaiting their report's receipt are still heartbeated, so
		// there can be more tokens than Concurrency.
		tokens := r.inflight.live()
		for start := 0; start < len(tokens); start += maxBatch {
			r.heartbeat(ctx, tokens[start:min(start+maxBatch, len(tokens))], interval)
		}
	}
}

func (r *runner) heartbeat(ctx context.Context, tokens [][]byte, timeout time.Duration) {
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := r.client.Heartbeat(callCtx, &reprisev1.HeartbeatRequest{LeaseTokens: tokens, WorkerId: r.opts.WorkerID})
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reprise: heartbeat failed; leases may expire", "error", err, "attempts", len(tokens))
		}
		return
	}
	r.settleAll(resp.GetCancelRequested(), ErrCancelled)
	r.settleAll(resp.GetLost(), ErrLeaseLost)
}

func (r *runner) settleAll(tokens [][]byte, cause error) {
	for _, token := range tokens {
		if a := r.inflight.get(token); a != nil {
			r.log.Info("reprise: stopping attempt", "execution_id", a.leased.GetExecutionId(), "attempt", a.leased.GetAttempt(), "cause", cause)
			a.settle(cause)
		}
	}
}
