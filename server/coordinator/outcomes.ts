// What follows the end of an attempt: the retry rules applied to a failure, an
// abandonment or a timeout under the policy in effect now (then the task's
// retry budget), a snooze, and the receipt of a reported outcome. Everything
// here runs inside one change of the store.
import type { Outcome, OutcomeReceipt } from "@reprise/wire";
import type { Clock } from "./clock.js";
import type { Logger } from "../operator/log.js";
import type { CoordinatorMetrics } from "../operator/metrics.js";
import { takeRetryToken } from "./budget.js";
import { RULE_NAMES, RetryRule, latestRetryAt, planRetry } from "./policy.js";
import { storedPolicy } from "./snapshot.js";
import { durationToMs, msToTimestamp } from "./time.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../store/store.js";
import type { AttemptRef, FailureRecord, RetryDecision, Tx } from "../store/store.js";

const TERMINAL_FROM_ATTEMPT: Record<number, number> = {
  [A.failed]: E.failed,
  [A.abandoned]: E.abandoned,
  [A.timedOut]: E.timedOut,
};


const OUTCOME_OF_STATE: Record<number, Parameters<CoordinatorMetrics["attemptFinished"]>[1]> = {
  [A.succeeded]: "succeeded",
  [A.failed]: "failed",
  [A.abandoned]: "abandoned",
  [A.timedOut]: "timed_out",
  [A.cancelled]: "cancelled",
  [A.snoozed]: "snoozed",
};

/** The attempt state that each case of Outcome records: a repeat of the same case is a duplicate. */
const STATE_OF_CASE = { result: A.succeeded, failure: A.failed, snooze: A.snoozed } as const;

/** What deciding needs of the coordinator around it. */
export interface DecisionContext {
  clock: Clock;
  /** Uniform in [0, 1); drives the delays of unlimited retries. */
  random: () => number;
  log: Logger;
  /** Counts a metric once the change commits. */
  count(tx: Tx, effect: (metrics: CoordinatorMetrics) => void): void;
  /** Queues the new state of a changed execution for its watchers. */
  changed(tx: Tx, seq: number): Promise<void>;
  /** Wakes waiting workers, or arms the timer, for work of `task` due at `dueAt`. */
  workDueAt(tx: Tx, task: string, dueAt: number, now: number): void;
  /** The serialized policy that applies now, read in this change. */
  policyInEffect(tx: Tx, execution: { task: string; retryPolicy: Uint8Array | null }): Promise<Uint8Array | null>;
}

export class Outcomes {
  constructor(private readonly ctx: DecisionContext) {}

  /** The refusal of an outcome for an attempt that has ended otherwise. */
  private ended(tx: Tx, attempt: AttemptRef): OutcomeReceipt {
    const how = OUTCOME_OF_STATE[attempt.state];
    return this.refused(tx, "ended", `attempt ${attempt.number} already ended${how ? ` ${how}` : ""}; this lease is no longer current`);
  }

  private refused(tx: Tx, kind: string, reason: string): OutcomeReceipt {
    this.ctx.count(tx, (m) => m.reportRefused(kind));
    return receipt({ accepted: false, reason });
  }

  /**
   * Applies one reported outcome to the attempt its token named (or why it
   * named none), and answers with its receipt. An outcome that ends the
   * attempt sets `attempt.state`, so that a repeat later in the same batch,
   * given the same ref, is answered as a duplicate.
   */
  async apply(tx: Tx, outcome: Outcome, attempt: AttemptRef | string): Promise<OutcomeReceipt> {
    const kind = outcome.outcome.case;
    if (kind === undefined) return this.refused(tx, "empty", "the outcome has none of result, failure or snooze");
    if (typeof attempt === "string") return this.refused(tx, attempt.startsWith("malformed") ? "malformed" : "unknown", attempt);
    if (attempt.state === A.cancelled) return this.refused(tx, "cancelled", "the execution was cancelled");
    if (attempt.state === STATE_OF_CASE[kind]) {
      this.ctx.count(tx, (m) => m.reportDuplicate());
      return receipt({ accepted: true, duplicate: true });
    }
    if (attempt.state !== A.running) return this.ended(tx, attempt);
    const now = this.ctx.clock.now();
    const expired = await this.expireIfDue(tx, attempt, now);
    if (expired !== null) {
      return expired === A.timedOut ? this.refused(tx, "timed_out", "the attempt timed out") : this.refused(tx, "expired", "the lease expired");
    }
    const execution = attempt.execution;
    if (outcome.outcome.case === "snooze") {
      const delay = outcome.outcome.value.delay;
      const dueAt = now + (delay ? durationToMs(delay) : 0);
      const decision = { rule: RetryRule.snooze, retryAt: dueAt, computedAt: null };
      if (!(await this.finishAttempt(tx, attempt, A.snoozed, now, null, null, decision))) return this.ended(tx, attempt);
      await tx.executionSetRetry({ seq: execution.seq, task: execution.task, nextAttemptAt: dueAt, runFailures: execution.runFailures });
      await this.ctx.changed(tx, execution.seq);
      this.ctx.workDueAt(tx, execution.task, dueAt, now);
      this.ctx.count(tx, (m) => m.attemptFinished(execution.task, "snoozed"));
      tx.afterCommit(() => this.ctx.log.info("attempt snoozed", { execution_id: execution.id, task: execution.task, attempt: attempt.number, delay_ms: dueAt - now }));
      return receipt({ accepted: true, nextAttemptAt: msToTimestamp(dueAt) });
    }
    if (outcome.outcome.case === "result") {
      const result = outcome.outcome.value;
      if (!(await this.finishAttempt(tx, attempt, A.succeeded, now, null, null, null))) return this.ended(tx, attempt);
      await tx.executionFinish({
        seq: execution.seq,
        task: execution.task,
        from: "running",
        state: E.succeeded,
        finishedAt: now,
        result: { data: result.data, contentType: result.contentType },
      });
      await this.ctx.changed(tx, execution.seq);
      this.ctx.count(tx, (m) => m.attemptFinished(execution.task, "succeeded"));
      return receipt({ accepted: true });
    }
    const failure = outcome.outcome.value;
    const decision = await this.endAttempt(tx, attempt, A.failed, now, {
      type: failure.type,
      message: failure.message,
      stackTrace: failure.stackTrace,
      nonRetryable: failure.nonRetryable,
      retryAfterMs: failure.retryAfter ? durationToMs(failure.retryAfter) : 0,
    });
    if (decision === undefined) return this.ended(tx, attempt);
    return receipt({ accepted: true, willRetry: decision !== null, nextAttemptAt: decision === null ? undefined : msToTimestamp(decision) });
  }

  /** Ends a RUNNING attempt, guarded on its lease; on success `attempt.state` follows. */
  private async finishAttempt(
    tx: Tx,
    attempt: AttemptRef,
    state: number,
    now: number,
    failure: FailureRecord | null,
    retryPolicy: Uint8Array | null,
    decision: RetryDecision | null,
  ): Promise<boolean> {
    const finished = await tx.attemptFinish({ id: attempt.id, leaseSecret: attempt.leaseSecret, state, finishedAt: now, failure, retryPolicy, decision });
    if (finished) attempt.state = state;
    return finished;
  }

  /**
   * Ends a RUNNING attempt as FAILED, ABANDONED or TIMED_OUT and decides what
   * follows under the policy in effect now, read in this change, and then the
   * task's retry budget. Returns when the retry is due, null when the
   * execution ended, or undefined when the attempt had ended already (earlier
   * in the same change).
   */
  private async endAttempt(tx: Tx, attempt: AttemptRef, state: number, now: number, failure: FailureRecord): Promise<number | null | undefined> {
    const execution = attempt.execution;
    const policyBytes = await this.ctx.policyInEffect(tx, execution);
    const policy = policyBytes === null ? null : storedPolicy(policyBytes).resolved;
    const plan = planRetry({
      policy,
      failureNumber: execution.runFailures + 1,
      retryable: !(state === A.failed && failure.nonRetryable),
      retryAfterMs: failure.retryAfterMs,
      now,
      runScheduledAt: execution.runScheduledAt,
      random: this.ctx.random,
    });
    let decision: RetryDecision = { rule: plan.rule, retryAt: plan.retry ? plan.dueAt : null, computedAt: null };
    if (plan.retry) {
      const budget = (await tx.taskGet(execution.task))?.retryBudget ?? null;
      if (budget !== null) {
        const taken = takeRetryToken(budget, await tx.retryBucketGet(execution.task), plan.dueAt, latestRetryAt(policy!, execution.runScheduledAt), now);
        if (taken === null) decision = { rule: RetryRule.maxElapsed, retryAt: null, computedAt: null };
        else {
          await tx.retryBucketPut(execution.task, taken.bucket);
          if (taken.deferred) decision = { rule: RetryRule.budget, retryAt: taken.dueAt, computedAt: plan.dueAt };
        }
      }
    }
    if (!(await this.finishAttempt(tx, attempt, state, now, failure, policy ? policyBytes : null, decision))) return undefined;
    const nextAttemptAt = decision.retryAt;
    tx.failureCounted({ task: execution.task, type: failure.type, at: now, retried: nextAttemptAt !== null });
    const fields = { execution_id: execution.id, task: execution.task, attempt: attempt.number, error_type: failure.type };
    this.ctx.count(tx, (m) => {
      m.attemptFinished(execution.task, OUTCOME_OF_STATE[state]!);
      if (nextAttemptAt !== null) m.retryScheduled(execution.task);
      if (decision.rule === RetryRule.budget) m.retryDeferred(execution.task);
    });
    if (state !== A.failed) tx.afterCommit(() => this.ctx.log.info(state === A.timedOut ? "attempt timed out" : "attempt abandoned", { ...fields, message: failure.message }));
    if (nextAttemptAt !== null) {
      await tx.executionSetRetry({ seq: execution.seq, task: execution.task, nextAttemptAt, runFailures: execution.runFailures + 1 });
      await this.ctx.changed(tx, execution.seq);
      this.ctx.workDueAt(tx, execution.task, nextAttemptAt, now);
      tx.afterCommit(() =>
        this.ctx.log.info("retry scheduled", { ...fields, attempt_state: OUTCOME_OF_STATE[state], delay_ms: nextAttemptAt - now, rule: RULE_NAMES[decision.rule] }),
      );
      return nextAttemptAt;
    }
    await tx.executionFinish({ seq: execution.seq, task: execution.task, from: "running", state: TERMINAL_FROM_ATTEMPT[state]!, finishedAt: now, failure });
    await this.ctx.changed(tx, execution.seq);
    tx.afterCommit(() => this.ctx.log.info("execution ended", { ...fields, state: OUTCOME_OF_STATE[state], rule: RULE_NAMES[decision.rule] }));
    return null;
  }

  /**
   * Ends a RUNNING attempt whose lease or timeout has passed, and returns the
   * state it ended in (null when neither has passed). When both have,
   * whichever came first decides; heartbeats never extend a lease past the
   * timeout, so a timeout at or before the lease expiry is a timeout.
   */
  async expireIfDue(tx: Tx, attempt: AttemptRef, now: number): Promise<number | null> {
    const timedOut = attempt.timeoutAt !== null && attempt.timeoutAt <= attempt.leaseExpiresAt;
    const deadline = timedOut ? attempt.timeoutAt! : attempt.leaseExpiresAt;
    if (deadline > now) return null;
    const failure: FailureRecord = timedOut
      ? {
          type: "TimedOut",
          message: `attempt ${attempt.number} ran past its timeout of ${attempt.timeoutAt! - attempt.startedAt} ms (at ${new Date(attempt.timeoutAt!).toISOString()})`,
          stackTrace: "",
          nonRetryable: false,
          retryAfterMs: 0,
        }
      : {
          type: "Abandoned",
          message: `the lease of attempt ${attempt.number} expired at ${new Date(attempt.leaseExpiresAt).toISOString()} with no heartbeat or outcome from worker ${JSON.stringify(attempt.workerId)}`,
          stackTrace: "",
          nonRetryable: false,
          retryAfterMs: 0,
        };
    const state = timedOut ? A.timedOut : A.abandoned;
    return (await this.endAttempt(tx, attempt, state, now, failure)) === undefined ? null : state;
  }
}

/** An OutcomeReceipt as a literal: create() would first fill in every default. */
function receipt({
  accepted,
  reason = "",
  willRetry = false,
  nextAttemptAt,
  duplicate = false,
}: Partial<Omit<OutcomeReceipt, "$typeName">> & { accepted: boolean }): OutcomeReceipt {
  return { $typeName: "reprise.v1.OutcomeReceipt", accepted, reason, willRetry, nextAttemptAt, duplicate };
}
