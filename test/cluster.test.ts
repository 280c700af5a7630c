// DESIGN.md section 8: any number of `reprise serve` processes on one
// PostgreSQL database form one coordinator, and every rule of part one holds
// across nodes. Each test starts three real processes on a fresh database of
// the run's PostgreSQL server; the outage test runs a server of its own, which
// it stops and starts again.
import { status } from "@grpc/grpc-js";
import { AttemptState, ExecutionState, RetryRule } from "@reprise/wire";
import type { Execution, LeasedAttempt } from "@reprise/wire";
import { afterEach, describe, expect, inject, test } from "vitest";
import { json, millis, seconds, toMs, until } from "./helpers.js";
import { startPostgres, testDatabase } from "./postgres-server.js";
import type { PostgresServer } from "./postgres-server.js";
import type { ChildCoordinator } from "./process-helpers.js";
import { fail, get, leaseNow, submit, succeed } from "./wire-helpers.js";
import { codeOf, healthOf, queryRows, sleep, startCluster, startSilentLink, streamCodeOf, watch } from "./cluster-helpers.js";
import type { Cluster, HealthStatus, SilentLink } from "./cluster-helpers.js";

const E = ExecutionState;
const A = AttemptState;
const isTerminal = (state: ExecutionState) => state !== E.PENDING && state !== E.RUNNING;

/** Leases on `node`, waiting up to `waitMs` for work. */
async function lease(node: ChildCoordinator, task: string, options: { leaseMs?: number; waitMs?: number; max?: number; workerId?: string } = {}): Promise<LeasedAttempt[]> {
  const { attempts } = await node.workers.leaseAttempts({
    workerId: options.workerId ?? "cluster-worker",
    tasks: [task],
    maxAttempts: options.max ?? 1,
    leaseDuration: millis(options.leaseMs ?? 30_000),
    wait: millis(options.waitMs ?? 0),
  });
  return attempts;
}

/**
 * How far an execution has come: attempts begun, attempts ended, ended. Every
 * legal change moves it strictly forward (lexicographically).
 */
const progress = (e: Execution): [number, number, number] => [
  e.attempts.length,
  e.attempts.filter((attempt) => attempt.state !== A.RUNNING).length,
  isTerminal(e.state) ? 1 : 0,
];

function expectForwardOnly(snapshots: Execution[], where: string): void {
  for (let i = 1; i < snapshots.length; i++) {
    const [before, after] = [progress(snapshots[i - 1]!), progress(snapshots[i]!)];
    const forward = after[0] > before[0] || (after[0] === before[0] && (after[1] > before[1] || (after[1] === before[1] && after[2] > before[2])));
    expect(forward, `${where}: snapshot ${i} ${JSON.stringify(after)} does not move on from ${JSON.stringify(before)}`).toBe(true);
  }
  expect(snapshots.filter((e) => isTerminal(e.state)), `${where}: exactly one terminal snapshot`).toHaveLength(1);
  expect(isTerminal(snapshots.at(-1)!.state), `${where}: the terminal snapshot is the last`).toBe(true);
}

const round = (ms: number) => Math.round(ms);

describe.skipIf(!inject("postgresUrl"))("a cluster of three nodes on one PostgreSQL database", () => {
  const clusters: Cluster[] = [];
  const servers: PostgresServer[] = [];
  const links: SilentLink[] = [];

  /** Three nodes on a fresh database of the run's server, stopped after the test. */
  async function cluster(extraArgs: string[] = []): Promise<{ db: string; cluster: Cluster; nodes: ChildCoordinator[] }> {
    const db = await testDatabase("cluster");
    const started = await startCluster(db, 3, extraArgs);
    clusters.push(started);
    return { db, cluster: started, nodes: started.nodes };
  }

  // Before process-helpers' own afterEach, which fails a test that left processes running.
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
    await Promise.all(links.splice(0).map((l) => l.close()));
  });

  test("a worker may lease on one node, heartbeat on a second and report on a third: heartbeats anywhere keep the lease, each failure schedules its retry per the policy, and the execution ends SUCCEEDED", async () => {
    const { nodes } = await cluster();
    const [a, b, c] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];
    const { id } = await submit(a, "relay", { retryPolicy: { limit: 2, backoffMin: millis(200), backoffMax: millis(400) } });
    const delays = [200, 400]; // retry k of limit 2 over [200 ms, 400 ms]
    const routes = [
      [a, b, c],
      [b, c, a],
      [c, a, b],
    ] as const;
    for (let k = 0; k < routes.length; k++) {
      const [leaser, beater, reporter] = routes[k]!;
      const [attempt] = await lease(leaser, "relay", { leaseMs: 1000, waitMs: 3000 });
      expect([attempt?.executionId, attempt?.attempt]).toEqual([id, k + 1]);
      // The first time, 1.2 s of heartbeats on another node: past the 1 s lease granted by the first.
      for (let beat = 0; beat < (k === 0 ? 4 : 1); beat++) {
        await sleep(300);
        const { cancelRequested, lost } = await beater.workers.heartbeat({ leaseTokens: [attempt!.leaseToken] });
        expect({ cancelRequested, lost }).toEqual({ cancelRequested: [], lost: [] });
      }
      if (k < 2) {
        const receipt = await fail(reporter, attempt!);
        expect([receipt.accepted, receipt.willRetry, receipt.reason]).toEqual([true, true, ""]);
        const seen = await get(leaser, id);
        expect(seen.state).toBe(E.PENDING);
        const failed = seen.attempts[k]!;
        expect(failed.state).toBe(A.FAILED);
        expect(failed.retryPolicy?.limit).toBe(2);
        expect(toMs(receipt.nextAttemptAt)).toBe(toMs(failed.finishedAt) + delays[k]!);
        expect(toMs(seen.nextAttemptAt)).toBe(toMs(receipt.nextAttemptAt));
        // Its token is no longer current on any node.
        for (const node of nodes) expect((await succeed(node, attempt!)).accepted).toBe(false);
      } else {
        expect((await succeed(reporter, attempt!, "done")).accepted).toBe(true);
      }
    }
    for (const node of nodes) {
      const final = await get(node, id);
      expect(final.state).toBe(E.SUCCEEDED);
      expect(final.attempts.map((attempt) => attempt.state)).toEqual([A.FAILED, A.FAILED, A.SUCCEEDED]);
      for (let k = 1; k < 3; k++) expect(toMs(final.attempts[k]!.scheduledAt)).toBe(toMs(final.attempts[k - 1]!.finishedAt) + delays[k - 1]!);
      expect(JSON.parse(new TextDecoder().decode(final.result!.data))).toBe("done");
    }
  });

  test("a watch on one node follows every change made through another, its snapshots never go backwards, and it ends once, after the terminal state", async () => {
    const { nodes } = await cluster();
    const [a, b, c] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];

    // Step by step: each change through A shows on B's watch before the next.
    const stepped = await submit(a, "watched", { retryPolicy: { limit: 2 } });
    const onB = await watch(b, stepped.id);
    const onC = await watch(c, stepped.id);
    const latencies: number[] = [];
    const step = async (act: () => Promise<unknown>, reached: (e: Execution) => boolean, what: string) => {
      const started = performance.now();
      await act();
      await onB.until(reached, 3000, what);
      latencies.push(round(performance.now() - started));
    };
    for (let n = 1; n <= 3; n++) {
      let leased: LeasedAttempt | undefined;
      await step(async () => ([leased] = await leaseNow(a, ["watched"])), (e) => e.state === E.RUNNING && e.attempts.length === n, `attempt ${n} RUNNING`);
      if (n < 3) await step(() => fail(a, leased!), (e) => e.state === E.PENDING && e.attempts.length === n, `attempt ${n} FAILED and a retry PENDING`);
      else await step(() => succeed(a, leased!), (e) => e.state === E.SUCCEEDED, "SUCCEEDED");
    }
    await onB.ended;
    await onC.ended;
    console.log(`[cluster] change committed through A, then seen on B's watch after (ms, call included): ${latencies.join(", ")}`);
    expect(onB.seen.map((e) => e.state)).toEqual([E.PENDING, E.RUNNING, E.PENDING, E.RUNNING, E.PENDING, E.RUNNING, E.SUCCEEDED]);
    expect(onB.seen.map((e) => e.attempts.length)).toEqual([0, 1, 1, 2, 2, 3, 3]);
    expectForwardOnly(onB.seen, "watch on B");
    expectForwardOnly(onC.seen, "watch on C");
    // Attached after the end: the final state at once, then the end.
    const late = await watch(c, stepped.id);
    await late.ended;
    expect(late.seen.map((e) => e.state)).toEqual([E.SUCCEEDED]);

    // As fast as the changes come, through two nodes, watched on all three.
    const rushed = await submit(c, "rushed", { retryPolicy: { limit: 5 } });
    const watches = await Promise.all(nodes.map((node) => watch(node, rushed.id)));
    for (let n = 1; n <= 5; n++) {
      const [leased] = await leaseNow(n % 2 === 0 ? a : c, ["rushed"]);
      await fail(n % 2 === 0 ? c : a, leased!);
    }
    const [last] = await leaseNow(a, ["rushed"]);
    await succeed(c, last!);
    await Promise.all(watches.map((w) => w.ended));
    watches.forEach((w, i) => {
      expectForwardOnly(w.seen, `rushed watch on node ${i}`);
      expect(w.seen.at(-1)!.attempts).toHaveLength(6);
      expect(w.seen.at(-1)!.state).toBe(E.SUCCEEDED);
    });
  });

  test("a watch sees a change that came without news (a node killed between its commit and its NOTIFY) at the next one-second re-check, and ends after it", async () => {
    const { db, nodes } = await cluster();
    const [a, b] = nodes as [ChildCoordinator, ChildCoordinator];
    const { id } = await submit(a, "unannounced");
    const onB = await watch(b, id);
    // What a node's change looks like when the node dies before telling anyone: committed, no NOTIFY.
    const started = performance.now();
    await queryRows(db, "UPDATE executions SET state = $1, version = version + 1, next_attempt_at = NULL, finished_at = $2 WHERE id = $3", [E.CANCELLED, Date.now(), id]);
    await onB.ended;
    const ms = round(performance.now() - started);
    console.log(`[cluster] an unannounced change reached the watch after ${ms} ms`);
    expect(onB.seen.map((e) => e.state)).toEqual([E.PENDING, E.CANCELLED]);
    expect(ms).toBeLessThan(3000);
  });

  test("a long-poll on one node wakes within 500 ms when work is submitted on another, and a retry decided on one node wakes a long-poll on another on time", async () => {
    const { nodes } = await cluster();
    const [a, b, c] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];
    const pairs = [
      [a, b],
      [b, c],
      [c, a],
      [a, c],
      [b, a],
      [c, b],
    ] as const;
    const wakes: number[] = [];
    for (const [i, [submitter, poller]] of pairs.entries()) {
      const task = `wake-${i}`;
      const poll = lease(poller, task, { waitMs: 10_000 });
      await sleep(200); // the long-poll is waiting
      const started = performance.now();
      const { id } = await submit(submitter, task);
      const attempts = await poll;
      wakes.push(round(performance.now() - started));
      expect(attempts.map((attempt) => attempt.executionId)).toEqual([id]);
    }
    console.log(`[cluster] long-poll woken on another node after a Submit (ms, Submit included): ${wakes.join(", ")}`);
    for (const ms of wakes) expect(ms).toBeLessThan(500);

    const lateness: string[] = [];
    for (const [i, [decider, poller, reader]] of ([[a, b, c], [c, a, b]] as const).entries()) {
      const task = `retry-wake-${i}`;
      const { id } = await submit(decider, task, { retryPolicy: { limit: 1, backoffMin: seconds(1), backoffMax: seconds(1) } });
      const [first] = await leaseNow(decider, [task]);
      const poll = lease(poller, task, { waitMs: 5000 });
      await sleep(200);
      const receipt = await fail(decider, first!);
      expect(receipt.willRetry).toBe(true);
      const dueAt = toMs(receipt.nextAttemptAt);
      const [second] = await poll;
      const returnedAt = Date.now(); // the same machine's clock as the database's
      expect([second?.executionId, second?.attempt]).toEqual([id, 2]);
      const started = (await get(reader, id)).attempts[1]!;
      expect(toMs(started.scheduledAt)).toBe(dueAt);
      const serverLate = toMs(started.startedAt) - dueAt;
      const clientLate = returnedAt - dueAt;
      lateness.push(`leased ${serverLate} ms after due, received ${clientLate} ms after due`);
      expect(serverLate).toBeGreaterThanOrEqual(0);
      expect(serverLate).toBeLessThan(300);
      expect(clientLate).toBeLessThan(300);
    }
    console.log(`[cluster] retry due in 1 s, decided on one node, long-poll on another: ${lateness.join("; ")}`);
  });

  test("idempotency keys are unique across nodes: concurrent Submits of one key spread over three nodes give one execution", async () => {
    const { db, nodes } = await cluster();
    const keys = ["key-1", "key-2", "key-3"];
    const answers = await Promise.all(
      keys.flatMap((key) =>
        Array.from({ length: 20 }, (_, i) =>
          nodes[i % 3]!.executions.submit({ task: "once", arguments: json({ key, i }), idempotencyKey: key }).then(({ execution }) => ({ key, execution: execution! })),
        ),
      ),
    );
    const idOfKey = new Map<string, string>();
    for (const key of keys) {
      const mine = answers.filter((answer) => answer.key === key).map((answer) => answer.execution);
      expect(mine).toHaveLength(20);
      expect(new Set(mine.map((e) => e.id)).size, `one execution id for ${key}`).toBe(1);
      // A repeat returns the execution as the winner created it, whatever its own arguments.
      expect(new Set(mine.map((e) => new TextDecoder().decode(e.arguments!.data))).size).toBe(1);
      idOfKey.set(key, mine[0]!.id);
    }
    for (const node of nodes) {
      const { executions } = await node.executions.listExecutions({ task: "once" });
      expect(executions.map((e) => e.id).sort()).toEqual([...idOfKey.values()].sort());
    }
    const rows = await queryRows<{ idempotency_key: string; n: number }>(db, "SELECT idempotency_key, count(*)::int AS n FROM executions GROUP BY idempotency_key ORDER BY 1");
    expect(rows).toEqual(keys.map((key) => ({ idempotency_key: key, n: 1 })));
  });

  test("a cancel on one node reaches a worker that heartbeats on another: its token is in cancel_requested, its reports are refused on every node, and the execution is never retried", async () => {
    const { nodes } = await cluster();
    const [a, b, c] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];
    const { id } = await submit(c, "cancellable", { retryPolicy: { limit: 3 } });
    const [attempt] = await leaseNow(c, ["cancellable"]);
    expect(await b.workers.heartbeat({ leaseTokens: [attempt!.leaseToken] })).toMatchObject({ cancelRequested: [], lost: [] });
    const cancelled = (await a.executions.cancelExecution({ executionId: id })).execution!;
    expect(cancelled.state).toBe(E.CANCELLED);
    const beat = await b.workers.heartbeat({ leaseTokens: [attempt!.leaseToken] });
    expect(beat.cancelRequested).toEqual([attempt!.leaseToken]);
    expect(beat.lost).toEqual([]);
    const refused = [await succeed(b, attempt!), await fail(c, attempt!), await succeed(a, attempt!)];
    for (const receipt of refused) {
      expect(receipt.accepted).toBe(false);
      expect(receipt.reason).toMatch(/cancel/i);
    }
    for (const node of nodes) {
      const seen = await get(node, id);
      expect(seen.state).toBe(E.CANCELLED);
      expect(seen.attempts.map((x) => x.state)).toEqual([A.CANCELLED]);
      expect(await lease(node, "cancellable")).toEqual([]);
    }
  });

  test("a declaration made on one node governs the next failure decided on another, read at the failure", async () => {
    const { nodes } = await cluster();
    const [a, b, c] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];
    await a.workers.declareTasks({ workerId: "declarer", tasks: [{ name: "declared", retryPolicy: { limit: 0 } }] });
    const x = await submit(c, "declared");
    const [ax] = await leaseNow(b, ["declared"]);
    const first = await fail(b, ax!);
    expect([first.accepted, first.willRetry]).toEqual([true, false]);
    expect((await get(c, x.id)).state).toBe(E.FAILED);

    // Leased under limit 0; re-declared with limit 2 on A before the failure on B.
    const y = await submit(c, "declared");
    const [ay] = await leaseNow(b, ["declared"]);
    await a.workers.declareTasks({ workerId: "declarer", tasks: [{ name: "declared", retryPolicy: { limit: 2 } }] });
    const second = await fail(b, ay!);
    expect([second.accepted, second.willRetry]).toEqual([true, true]);
    const retrying = await get(c, y.id);
    expect(retrying.state).toBe(E.PENDING);
    expect(retrying.retryPolicy?.limit).toBe(2);
    expect(retrying.attempts[0]!.retryPolicy?.limit).toBe(2);
    // And back to limit 0 on C: the retry's failure on A ends it.
    await c.workers.declareTasks({ workerId: "declarer", tasks: [{ name: "declared", retryPolicy: { limit: 0 } }] });
    const [again] = await leaseNow(b, ["declared"]);
    expect(again!.attempt).toBe(2);
    expect((await fail(a, again!)).willRetry).toBe(false);
    expect((await get(b, y.id)).state).toBe(E.FAILED);
  });

  test("a task's retry budget is one bucket for the whole cluster: failures reported on three nodes at once are spread at its rate, and none is dropped", async () => {
    const { nodes } = await cluster();
    const [a, b] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];
    await a.workers.declareTasks({ workerId: "w", tasks: [{ name: "budgeted", retryPolicy: { limit: 1 }, retryBudget: { retriesPerSecond: 5, burst: 1 } }] });
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => submit(nodes[i % 3]!, "budgeted").then((e) => e.id)));
    const leased = await lease(b, "budgeted", { max: 12 });
    expect(leased).toHaveLength(12);
    // Every outcome in a call of its own, spread over the nodes, all at once.
    const receipts = await Promise.all(leased.map((attempt, i) => fail(nodes[i % 3]!, attempt)));
    expect(receipts.every((r) => r.accepted && r.willRetry)).toBe(true);
    const due = receipts.map((r) => toMs(r.nextAttemptAt)).sort((x, y) => x - y);
    // One token at once, then one every 200 ms: a bucket per node would let three go together.
    for (let i = 1; i < due.length; i++) expect(due[i]! - due[i - 1]!, `retry ${i}`).toBeGreaterThanOrEqual(199);
    const rules = await Promise.all(ids.map(async (id) => (await get(a, id)).attempts[0]!.retryRule));
    expect(rules.filter((rule) => rule === RetryRule.BUDGET)).toHaveLength(11);
  });

  test("an expired lease is abandoned exactly once, by the surviving nodes, when the node that granted it is dead; the execution is retried or ended per its policy", async () => {
    const { db, nodes } = await cluster(["--log-level", "info"]);
    const [a, b, c] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];
    const M = 100; // enough that both survivors are sweeping at once
    const retried = (
      await Promise.all(Array.from({ length: M }, (_, i) => submit(nodes[i % 3]!, "sweep-retry", { retryPolicy: { limit: 1 } })))
    ).map((e) => e.id);
    const once = (await submit(c, "sweep-once")).id;
    const leased = [...(await lease(a, "sweep-retry", { leaseMs: 1000, max: M })), ...(await lease(a, "sweep-once", { leaseMs: 1000 }))];
    expect(leased.map((x) => x.executionId).sort()).toEqual([...retried, once].sort());
    const expiresAt = new Map(leased.map((x) => [x.executionId, toMs(x.leaseExpiresAt)]));
    await a.kill();

    const all = [...retried, once];
    await until(
      async () => (await b.executions.listExecutions({ pageSize: 1000 })).executions.every((e) => e.attempts[0]?.state === A.ABANDONED),
      8000,
      "every lease granted by the dead node to be abandoned",
    );
    const onceNow = await get(c, once);
    expect(onceNow.state).toBe(E.ABANDONED);
    expect(onceNow.failure?.type).toBe("Abandoned");
    expect(onceNow.attempts).toHaveLength(1);
    const sweptLate = [toMs(onceNow.attempts[0]!.finishedAt) - expiresAt.get(once)!];
    for (const id of retried) {
      const e = await get(c, id);
      expect(e.state).toBe(E.PENDING);
      expect(e.attempts).toHaveLength(1);
      expect(toMs(e.nextAttemptAt)).toBe(toMs(e.attempts[0]!.finishedAt)); // limit 1, no backoff: due at once
      sweptLate.push(toMs(e.attempts[0]!.finishedAt) - expiresAt.get(id)!);
    }
    console.log(`[cluster] leases of the dead node abandoned ${Math.min(...sweptLate)} to ${Math.max(...sweptLate)} ms after they expired`);
    // Never before the expiry (the nodes read the database's clock, each within a few ms of it), and soon after it.
    expect(Math.min(...sweptLate)).toBeGreaterThanOrEqual(-20);
    expect(Math.max(...sweptLate)).toBeLessThan(2500);

    // Exactly one ABANDONED attempt per execution in the database, and one "attempt abandoned" decision in the logs.
    const rows = await queryRows<{ id: string; attempts: number; abandoned: number }>(
      db,
      `SELECT e.id, count(a.id)::int AS attempts, count(a.id) FILTER (WHERE a.state = ${A.ABANDONED})::int AS abandoned
       FROM executions e JOIN attempts a ON a.execution_seq = e.seq GROUP BY e.id`,
    );
    expect(rows.map((r) => [r.attempts, r.abandoned])).toEqual(all.map(() => [1, 1]));
    const decisions = () =>
      [b, c].flatMap((node) =>
        node
          .stderr()
          .split("\n")
          .filter((line) => line.includes('"attempt abandoned"'))
          .map((line) => (JSON.parse(line) as { execution_id: string }).execution_id),
      );
    await until(() => decisions().length >= all.length, 3000, "the abandonments in the logs");
    await sleep(300);
    expect(decisions().sort()).toEqual([...all].sort());
    const byNode = [b, c].map((node) => node.stderr().split("\n").filter((line) => line.includes('"attempt abandoned"')).length);
    console.log(`[cluster] abandonments decided: ${byNode[0]} by B, ${byNode[1]} by C`);

    // The retries run; the at-most-once execution never runs again.
    const second = await lease(c, "sweep-retry", { max: M, waitMs: 2000 });
    expect(second.map((x) => x.attempt)).toEqual(retried.map(() => 2));
    const { receipts } = await b.workers.reportOutcomes({ outcomes: second.map((x) => ({ leaseToken: x.leaseToken, outcome: { case: "result", value: json("ok") } })) });
    expect(receipts.every((r) => r.accepted)).toBe(true);
    for (const id of retried) expect((await get(b, id)).attempts.map((x) => x.state)).toEqual([A.ABANDONED, A.SUCCEEDED]);
    expect(await lease(b, "sweep-once", { waitMs: 300 })).toEqual([]);
  });

  test("killing a node with -9 mid-run loses nothing acknowledged: every acknowledged Submit ends, every accepted result stays, and the dead node's leases are retried", async () => {
    const { db, cluster: running, nodes } = await cluster();
    const [a, b, c] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];
    const N = 60;
    const task = "bulk";
    const acknowledged: string[] = [];
    const succeededAttempt = new Map<string, number>(); // execution id -> the attempt whose result was accepted
    let refusedSubmits = 0;
    let stop = false;
    const errors: unknown[] = [];
    const unexpected = (error: unknown) => {
      if ((error as { code?: number }).code !== status.UNAVAILABLE) errors.push(error);
    };

    /** Leases on one node of `pool` and reports on the next, turn by turn; with `dieWith`, hands its leases over and stops. */
    const worker = async (name: string, pool: ChildCoordinator[], dieWith?: (held: LeasedAttempt[]) => boolean) => {
      for (let turn = 0; !stop; turn++) {
        const choices = pool.filter((node) => running.alive().includes(node));
        if (choices.length === 0) return;
        const leaser = choices[turn % choices.length]!;
        const reporter = choices[(turn + 1) % choices.length]!;
        let attempts: LeasedAttempt[];
        try {
          attempts = await lease(leaser, task, { workerId: name, max: 4, waitMs: 300, leaseMs: 1500 });
        } catch (error) {
          unexpected(error);
          continue;
        }
        if (attempts.length === 0) continue;
        if (dieWith?.(attempts)) return; // this worker dies with its node: its leases are never reported
        await sleep(10);
        try {
          const { receipts } = await reporter.workers.reportOutcomes({
            outcomes: attempts.map((x) => ({ leaseToken: x.leaseToken, outcome: { case: "result", value: json(name) } })),
          });
          receipts.forEach((receipt, i) => {
            if (receipt.accepted) succeededAttempt.set(attempts[i]!.executionId, attempts[i]!.attempt);
          });
        } catch (error) {
          // Unacknowledged: the lease expires and the execution is retried.
          unexpected(error);
        }
      }
    };
    let armed = false;
    let handOver!: (held: LeasedAttempt[]) => void;
    const heldOnA = new Promise<LeasedAttempt[]>((resolve) => (handOver = resolve));
    const workers = [
      worker("on-b-and-c", [b, c]),
      worker("on-c-and-b", [c, b]),
      worker("on-a", [a], (held) => armed && (handOver(held), true)),
    ];

    const submitter = async () => {
      for (let i = 0; acknowledged.length < N; i++) {
        const node = nodes[i % 3]!;
        if (!running.alive().includes(node)) continue;
        try {
          acknowledged.push((await submit(node, task, { retryPolicy: { limit: 3 } })).id);
        } catch (error) {
          unexpected(error);
          refusedSubmits++;
        }
        await sleep(15); // paced, so that Submits still flow when A dies
      }
    };
    const submitting = [submitter(), submitter()];
    await until(() => acknowledged.length >= N / 4 && succeededAttempt.size >= 3, 10_000, "work under way");
    armed = true;
    const held = await Promise.race([heldOnA, sleep(10_000).then(() => Promise.reject(new Error("the worker on A leased nothing")))]);
    const killedAt = performance.now();
    const acknowledgedBeforeKill = acknowledged.length;
    a.child.kill("SIGKILL");
    expect(await a.exited).toEqual({ code: null, signal: "SIGKILL" });
    await Promise.all(submitting);

    const ended = async () => (await Promise.all(acknowledged.map((id) => get(b, id)))).every((e) => isTerminal(e.state));
    await until(ended, 15_000, "every acknowledged execution to end");
    const settledMs = round(performance.now() - killedAt);
    stop = true;
    await Promise.all(workers);
    expect(errors).toEqual([]);

    let abandoned = 0;
    for (const id of acknowledged) {
      const e = await get(c, id);
      expect(e.state, `execution ${id}`).toBe(E.SUCCEEDED);
      const numbers = e.attempts.map((x) => x.number);
      expect(numbers).toEqual(numbers.map((_, i) => i + 1));
      expect(e.attempts.filter((x) => x.state === A.SUCCEEDED)).toHaveLength(1);
      expect(e.attempts.at(-1)!.state).toBe(A.SUCCEEDED);
      abandoned += e.attempts.filter((x) => x.state === A.ABANDONED).length;
    }
    // The leases A granted to the worker that died with it were abandoned, then retried to success.
    for (const lost of held) {
      const e = await get(b, lost.executionId);
      expect(e.attempts.find((x) => x.number === lost.attempt)?.state, `attempt ${lost.attempt} of ${lost.executionId}`).toBe(A.ABANDONED);
      expect(e.state).toBe(E.SUCCEEDED);
    }
    // Every result a node accepted is the one that stands.
    for (const [id, attempt] of succeededAttempt) {
      const e = await get(b, id);
      expect(e.attempts.find((x) => x.state === A.SUCCEEDED)?.number, `accepted result of ${id}`).toBe(attempt);
    }
    const [{ n }] = (await queryRows<{ n: number }>(db, "SELECT count(*)::int AS n FROM executions WHERE task = $1", [task])) as [{ n: number }];
    expect(n).toBeGreaterThanOrEqual(acknowledged.length);
    console.log(
      `[cluster] kill -9 mid-run: ${acknowledged.length} acknowledged, ${acknowledgedBeforeKill} before the kill (${refusedSubmits} Submits failed on the dead node), ` +
        `${held.length} leases died with it, ${abandoned} attempts abandoned in all, all ended ${settledMs} ms after the kill`,
    );
  });

  test("while PostgreSQL is down every call fails UNAVAILABLE and health says NOT_SERVING; once it is back the nodes recover by themselves, lose nothing acknowledged, and work flows again", async () => {
    const server = await startPostgres();
    servers.push(server);
    const db = await server.createDatabase("cluster_outage");
    const started = await startCluster(db, 3);
    clusters.push(started);
    const nodes = started.nodes;
    const [a, b, c] = nodes as [ChildCoordinator, ChildCoordinator, ChildCoordinator];

    // Acknowledged before the outage: pending work, a running lease, a retry waiting, a finished execution.
    const pending: string[] = [];
    for (let i = 0; i < 6; i++) pending.push((await submit(nodes[i % 3]!, "outage-pending")).id);
    const running = (await submit(a, "outage-running")).id;
    const [held] = await lease(b, "outage-running", { leaseMs: 60_000 });
    const retrying = (await submit(c, "outage-retry", { retryPolicy: { limit: 1, backoffMin: seconds(1), backoffMax: seconds(1) } })).id;
    const [firstTry] = await leaseNow(c, ["outage-retry"]);
    expect((await fail(a, firstTry!)).willRetry).toBe(true);
    const done = (await submit(b, "outage-done")).id;
    const [doneAttempt] = await leaseNow(c, ["outage-done"]);
    expect((await succeed(a, doneAttempt!, "before")).accepted).toBe(true);
    const before = new Map<string, Execution>();
    for (const id of [...pending, running, retrying, done]) before.set(id, await get(b, id));
    const healths = () => Promise.all(nodes.map((node) => healthOf(node.address)));
    expect(await healths()).toEqual(["SERVING", "SERVING", "SERVING"]);

    await server.stopServer();
    const stoppedAt = performance.now();
    await until(async () => (await healths()).every((h) => h === "NOT_SERVING"), 5000, "every node to report NOT_SERVING");
    const notServingMs = round(performance.now() - stoppedAt);
    for (const service of ["reprise.v1.ExecutionService", "reprise.v1.WorkerService"]) {
      expect(await Promise.all(nodes.map((node) => healthOf(node.address, service)))).toEqual(["NOT_SERVING", "NOT_SERVING", "NOT_SERVING"] satisfies HealthStatus[]);
    }

    const callsWhileDown = async (node: ChildCoordinator) => ({
      submit: await codeOf(submit(node, "outage-new")),
      getExecution: await codeOf(get(node, running)),
      listExecutions: await codeOf(node.executions.listExecutions({})),
      cancelExecution: await codeOf(node.executions.cancelExecution({ executionId: pending[0]! })),
      watchExecution: await streamCodeOf(node.executions.watchExecution({ executionId: running })),
      declareTasks: await codeOf(node.workers.declareTasks({ workerId: "w", tasks: [{ name: "outage-pending", retryPolicy: { limit: 5 } }] })),
      leaseAttempts: await codeOf(lease(node, "outage-pending")),
      longPoll: await codeOf(lease(node, "outage-pending", { waitMs: 500 })),
      heartbeat: await codeOf(node.workers.heartbeat({ leaseTokens: [held!.leaseToken] })),
      reportOutcomes: await codeOf(succeed(node, held!)),
    });
    const unavailable = Object.fromEntries(Object.keys(await callsWhileDown(a)).map((rpc) => [rpc, status.UNAVAILABLE]));
    for (const node of nodes) expect(await callsWhileDown(node), `calls on ${node.address} while the database is down`).toEqual(unavailable);
    await sleep(Math.max(0, 3000 - (performance.now() - stoppedAt)));
    for (const node of nodes) expect(await callsWhileDown(node), `calls on ${node.address} after 3 s down`).toEqual(unavailable);
    expect(await healths()).toEqual(["NOT_SERVING", "NOT_SERVING", "NOT_SERVING"]);

    await server.startServer();
    const restartedAt = performance.now();
    await until(async () => (await healths()).every((h) => h === "SERVING"), 15_000, "every node to report SERVING again");
    const servingMs = round(performance.now() - restartedAt);
    console.log(`[cluster] PostgreSQL stopped: NOT_SERVING on all nodes after ${notServingMs} ms; started again: SERVING after ${servingMs} ms`);

    // Nothing acknowledged was lost, and every node agrees.
    for (const node of nodes) {
      for (const [id, was] of before) {
        const now = await get(node, id);
        expect([now.state, now.attempts.length], `${id} on ${node.address}`).toEqual([was.state, was.attempts.length]);
      }
    }
    // The lease granted before the outage is still current: heartbeat on C, report on A.
    expect(await c.workers.heartbeat({ leaseTokens: [held!.leaseToken] })).toMatchObject({ cancelRequested: [], lost: [] });
    expect((await succeed(a, held!)).accepted).toBe(true);
    // The pending work and the retry run, leased on one node and reported on another.
    const leased = await lease(c, "outage-pending", { max: 10, waitMs: 2000 });
    expect(leased.map((x) => x.executionId).sort()).toEqual([...pending].sort());
    const { receipts } = await b.workers.reportOutcomes({ outcomes: leased.map((x) => ({ leaseToken: x.leaseToken, outcome: { case: "result", value: json("after") } })) });
    expect(receipts.every((r) => r.accepted)).toBe(true);
    const [retry] = await lease(a, "outage-retry", { waitMs: 2000 });
    expect([retry?.executionId, retry?.attempt]).toEqual([retrying, 2]);
    expect((await succeed(b, retry!)).accepted).toBe(true);
    // New work flows: submitted on A, long-polled on C, reported on B.
    const poll = lease(c, "outage-after", { waitMs: 5000 });
    await sleep(100);
    const fresh = await submit(a, "outage-after");
    const [freshAttempt] = await poll;
    expect(freshAttempt?.executionId).toBe(fresh.id);
    expect((await succeed(b, freshAttempt!)).accepted).toBe(true);
    for (const id of [...pending, running, retrying, done, fresh.id]) expect((await get(a, id)).state, id).toBe(E.SUCCEEDED);
  });

  test("while PostgreSQL stops answering without closing a connection (a network partition), calls fail UNAVAILABLE within --db-timeout and health says NOT_SERVING; once it answers again the nodes recover, listen on new connections, and lose nothing", async () => {
    const direct = await testDatabase("cluster_silent");
    const link = await startSilentLink(Number(new URL(direct).port));
    links.push(link);
    const started = await startCluster(link.url(direct), 2, ["--db-timeout", "1s"]);
    clusters.push(started);
    const [a, b] = started.nodes as [ChildCoordinator, ChildCoordinator];
    const kept = (await submit(a, "silent")).id;
    const healths = () => Promise.all([a, b].map((node) => healthOf(node.address)));
    expect(await healths()).toEqual(["SERVING", "SERVING"]);

    link.silence();
    const silencedAt = performance.now();
    // More calls at once than a node's pool has connections (10): those that
    // wait for a connection and those that wait for an answer alike fail.
    const deadline = () => ({ deadline: new Date(Date.now() + 20_000) });
    const calls = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const sent = performance.now();
        const code = await codeOf(a.executions.submit({ task: "silent-new" }, deadline()));
        return { code, ms: performance.now() - sent };
      }),
    );
    expect(calls.map((call) => call.code)).toEqual(Array(16).fill(status.UNAVAILABLE));
    expect(Math.max(...calls.map((call) => call.ms))).toBeLessThan(5000);
    expect(await codeOf(b.executions.getExecution({ executionId: kept }, deadline()))).toBe(status.UNAVAILABLE);
    await until(async () => (await healths()).every((h) => h === "NOT_SERVING"), 5000, "both nodes to report NOT_SERVING");
    const notServingMs = round(performance.now() - silencedAt);

    link.heal();
    const healedAt = performance.now();
    await until(async () => (await healths()).every((h) => h === "SERVING"), 10_000, "both nodes to report SERVING again");
    const servingMs = round(performance.now() - healedAt);
    console.log(
      `[cluster] PostgreSQL silent: calls UNAVAILABLE after at most ${round(Math.max(...calls.map((call) => call.ms)))} ms, NOT_SERVING after ${notServingMs} ms; ` +
        `answering again: SERVING after ${servingMs} ms`,
    );
    expect((await get(b, kept)).state).toBe(E.PENDING);
    // The LISTEN connections of before went dead with the partition: each node listens on a new one.
    await until(async () => {
      const listening = await queryRows<{ started: Date }>(direct, "SELECT backend_start AS started FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'reprise-listen'");
      return listening.length === 2 && listening.every((row) => row.started.getTime() >= Date.now() - (performance.now() - healedAt) - 1000);
    }, 5000, "both nodes to LISTEN on new connections");
    // So work submitted on one node wakes a long-poll on the other through NOTIFY, as before the partition.
    const poll = lease(b, "silent-after", { waitMs: 5000 });
    await sleep(100);
    const fresh = await submit(a, "silent-after");
    const [leased] = await poll;
    expect(leased?.executionId).toBe(fresh.id);
  });
});
