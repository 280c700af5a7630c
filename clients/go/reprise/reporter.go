package reprise

import (
	"context"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxBatch is the coordinator's default limit of outcomes per ReportOutcomes
// and of tokens per Heartbeat (its --max-batch-size). An operator may lower
// it; a batch refused as too large is then sent one outcome at a time.
const maxBatch = 1000

type queuedOutcome struct {
	outcome *reprisev1.Outcome
	attempt *running
}

// reportLoop sends outcomes in batches: whatever queued up while the previous
// call was in flight goes in the next one. It exits when ctx ends, or once
// noMoreReports is closed and the queue is empty.
func (r *runner) reportLoop(ctx context.Context) {
	defer close(r.reporterDone)
	for {
		var first queuedOutcome
		select {
		case first = <-r.reports:
		case <-r.noMoreReports:
			select {
			case first = <-r.reports:
			default:
				return
			}
		case <-ctx.Done():
			return
		}
		batch := []queuedOutcome{first}
		for more := true; more && len(batch) < maxBatch; {
			select {
			case q := <-r.reports:
				batch = append(batch, q)
			default:
				more = false
			}
		}
		r.report(ctx, batch)
	}
}

// report sends one batch, retrying while the coordinator is unavailable. A
// repeated outcome is harmless: when an earlier copy landed but its answer
// was lost, the coordinator accepts the repeat as a duplicate and changes
// nothing, and receive counts it as recorded.
func (r *runner) report(ctx context.Context, batch []queuedOutcome) {
	outcomes := make([]*reprisev1.Outcome, len(batch))
	for i, q := range batch {
		outcomes[i] = q.outcome
	}
	for failures := 0; ; failures++ {
		resp, err := r.client.ReportOutcomes(ctx, &reprisev1.ReportOutcomesRequest{Outcomes: outcomes})
		if err == nil {
			r.receive(batch, resp.GetReceipts())
			return
		}
		if !isTransient(err) || ctx.Err() != nil {
			r.refusedBatch(ctx, batch, err)
			return
		}
		r.log.Warn("reprise: reporting outcomes failed; retrying", "error", err, "outcomes", len(batch))
		if !sleepCtx(ctx, retryBackoff(failures)) {
			return
		}
	}
}

// refusedBatch handles a batch the coordinator rejected whole, which one bad
// outcome (such as a result over the payload limit) can cause: each outcome
// is sent alone so the others still land, and a result too large to store
// becomes a permanent failure rather than a lease left to expire.
func (r *runner) refusedBatch(ctx context.Context, batch []queuedOutcome, err error) {
	if ctx.Err() != nil {
		return
	}
	if len(batch) > 1 {
		for _, q := range batch {
			r.report(ctx, []queuedOutcome{q})
		}
		return
	}
	q := batch[0]
	if status.Code(err) == codes.ResourceExhausted && q.outcome.GetResult() != nil {
		q.outcome = &reprisev1.Outcome{LeaseToken: q.outcome.GetLeaseToken(), Outcome: &reprisev1.Outcome_Failure{Failure: &reprisev1.Failure{
			Type:         "ResultTooLarge",
			Message:      status.Convert(err).Message(),
			NonRetryable: true,
		}}}
		r.report(ctx, []queuedOutcome{q})
		return
	}
	r.log.Error("reprise: the coordinator refused an outcome; its lease will expire", "execution_id", q.attempt.leased.GetExecutionId(), "error", err)
	r.inflight.remove(q.attempt.leased.GetLeaseToken())
}

func (r *runner) receive(batch []queuedOutcome, receipts []*reprisev1.OutcomeReceipt) {
	for i, q := range batch {
		r.inflight.remove(q.attempt.leased.GetLeaseToken())
		if i >= len(receipts) {
			continue
		}
		receipt := receipts[i]
		switch {
		case !receipt.GetAccepted():
			r.log.Info("reprise: outcome refused", "execution_id", q.attempt.leased.GetExecutionId(), "attempt", q.attempt.leased.GetAttempt(), "reason", receipt.GetReason())
		case q.outcome.GetFailure() != nil:
			r.logFailedAttempt(q.attempt.leased, q.outcome.GetFailure(), receipt)
		case q.outcome.GetSnooze() != nil:
			r.logSnoozedAttempt(q.attempt.leased, q.outcome.GetSnooze(), receipt)
		case receipt.GetDuplicate():
			r.log.Debug("reprise: outcome recorded by an earlier report", "execution_id", q.attempt.leased.GetExecutionId(), "attempt", q.attempt.leased.GetAttempt())
		}
	}
}

// logSnoozedAttempt logs an accepted snooze at info with when the execution
// is due again, like a scheduled retry (a duplicate receipt does not say).
func (r *runner) logSnoozedAttempt(leased *reprisev1.LeasedAttempt, s *reprisev1.Snooze, receipt *reprisev1.OutcomeReceipt) {
	attrs := []any{
		"task", leased.GetTask(),
		"execution_id", leased.GetExecutionId(),
		"attempt", leased.GetAttempt(),
		"delay", s.GetDelay().AsDuration(),
	}
	if at := receipt.GetNextAttemptAt(); at != nil {
		attrs = append(attrs, "next_attempt_at", at.AsTime())
	}
	r.log.Info("reprise: attempt snoozed; no retry used", attrs...)
}

// logFailedAttempt logs an accepted failure at info with what the
// coordinator decided: a retry and when it may start, or none. A failed
// attempt is the handler's news, not the worker's trouble, so it is not a
// warning; the caller learns of a final failure from the execution itself.
//
// A duplicate receipt answers a report sent again after a transport error,
// when the first copy was recorded but its answer lost. The failure is
// recorded all the same, but the decision is not repeated, so the record
// says nothing of it.
func (r *runner) logFailedAttempt(leased *reprisev1.LeasedAttempt, f *reprisev1.Failure, receipt *reprisev1.OutcomeReceipt) {
	attrs := []any{
		"task", leased.GetTask(),
		"execution_id", leased.GetExecutionId(),
		"attempt", leased.GetAttempt(),
		"error_type", f.GetType(),
		"error_message", f.GetMessage(),
	}
	if receipt.GetDuplicate() {
		r.log.Info("reprise: attempt failed; recorded by an earlier report whose answer was lost", attrs...)
		return
	}
	attrs = append(attrs, "will_retry", receipt.GetWillRetry())
	if !receipt.GetWillRetry() {
		r.log.Info("reprise: attempt failed; no retry, the execution has failed", attrs...)
		return
	}
	if at := receipt.GetNextAttemptAt(); at != nil {
		next := at.AsTime()
		attrs = append(attrs, "next_attempt_at", next, "retry_in", max(0, time.Until(next)).Round(time.Millisecond))
	}
	r.log.Info("reprise: attempt failed; retry scheduled", attrs...)
}
