// A coordinator that has run for a week must be as sharp as a fresh one: the
// counts that metrics read are kept, not counted; the expiry sweep and the
// filtered lists walk indexes; retention deletes what is old in small batches;
// and every statement reports how long it held the event loop.
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, test } from "vitest";
import { EventLoopHolds, WARN_HOLD_MS } from "../server/operator/holds.js";
import type { LogFields, Logger } from "../server/operator/log.js";
import { silentLogger } from "../server/operator/log.js";
import { SqliteStore, UNINDEXED_LIST_WINDOW } from "../server/store/sqlite/sqlite-store.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../server/store/store.js";
import type { ExecutionRecord } from "../server/store/store.js";
import { FakeClock, startTestCoordinator, tempDir } from "./helpers.js";
import { stateOf, submit } from "./wire-helpers.js";
import { ExecutionState } from "@reprise/client/wire";

const SECRET = new Uint8Array(16);

function insert(store: SqliteStore, id: string, task: string, fields: { createdAt?: number; nextAttemptAt?: number; idempotencyKey?: string } = {}): ExecutionRecord {
  return store.executionInsert({
    id,
    task,
    state: E.pending,
    arguments: { data: new Uint8Array([1]), contentType: "" },
    retryPolicy: null,
    nextAttemptAt: fields.nextAttemptAt ?? 0,
    createdAt: fields.createdAt ?? 0,
    idempotencyKey: fields.idempotencyKey ?? null,
    labels: {},
  });
}

function start(store: SqliteStore, record: ExecutionRecord, number: number, at = 0, timeoutAt: number | null = null, leaseMs = 30_000): number {
  return store.attemptStart({
    executionSeq: record.seq,
    task: record.task,
    number,
    workerId: "w",
    scheduledAt: at,
    startedAt: at,
    leaseSecret: SECRET,
    leaseMs,
    leaseExpiresAt: at + leaseMs,
    timeoutAt,
  })!;
}

function finish(store: SqliteStore, record: ExecutionRecord, attemptId: number, state: number, at = 0): void {
  const attemptState = { [E.succeeded]: A.succeeded, [E.failed]: A.failed, [E.cancelled]: A.cancelled }[state]!;
  store.attemptFinish({ id: attemptId, leaseSecret: SECRET, state: attemptState, finishedAt: at, failure: null, retryPolicy: null });
  store.executionFinish({ seq: record.seq, task: record.task, from: "running", state, finishedAt: at });
}

/** The counts as a full count of the rows would give them, read on a connection of its own. */
function countedFromRows(path: string): Record<string, number> {
  const db = new Database(path, { readonly: true });
  try {
    const rows = db.prepare("SELECT task, state, count(*) AS count FROM executions GROUP BY task, state").all() as { task: string; state: number; count: number }[];
    return Object.fromEntries(rows.map((r) => [`${r.task}/${r.state}`, r.count]));
  } finally {
    db.close();
  }
}

const kept = (store: SqliteStore) => Object.fromEntries(store.executionCountByTaskAndState().map((r) => [`${r.task}/${r.state}`, r.count]));

describe("execution counts for metrics", () => {
  test("counts by task and state always equal a count of the rows, through every change, rollback and deletion", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    try {
      // A seeded walk through every kind of change the coordinator makes.
      let seed = 7;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const open: { record: ExecutionRecord; attemptId: number | null; attempts: number }[] = [];
      for (let turn = 0; turn < 40; turn++) {
        for (let step = 0; step < 25; step++) {
          const roll = random();
          const pick = open.length > 0 ? open[Math.floor(random() * open.length)]! : undefined;
          if (roll < 0.3 || !pick) {
            open.push({ record: store.write(() => insert(store, `e${turn}-${step}`, `t${step % 3}`)), attemptId: null, attempts: 0 });
          } else if (pick.attemptId === null && roll < 0.55) {
            pick.attemptId = store.write(() => start(store, pick.record, ++pick.attempts));
          } else if (pick.attemptId === null && roll < 0.6) {
            store.write(() => store.executionFinish({ seq: pick.record.seq, task: pick.record.task, from: "open", state: E.cancelled, finishedAt: 0 }));
            open.splice(open.indexOf(pick), 1);
          } else if (pick.attemptId !== null && roll < 0.7) {
            const attemptId = pick.attemptId;
            store.write(() => {
              store.attemptFinish({ id: attemptId, leaseSecret: SECRET, state: A.failed, finishedAt: 0, failure: null, retryPolicy: null });
              store.executionSetRetry({ seq: pick.record.seq, task: pick.record.task, nextAttemptAt: 0 });
            });
            pick.attemptId = null;
          } else if (pick.attemptId !== null && roll < 0.75) {
            store.write(() => store.attemptReturn({ id: pick.attemptId!, leaseSecret: SECRET }));
            pick.attemptId = null;
            pick.attempts--;
          } else if (pick.attemptId !== null && roll < 0.8) {
            // A change that throws after it changed a state: it rolls back alone, counts included.
            expect(() =>
              store.write(() => {
                finish(store, pick.record, pick.attemptId!, E.succeeded);
                throw new Error("planned");
              }),
            ).toThrow("planned");
          } else if (pick.attemptId !== null) {
            finish(store, pick.record, pick.attemptId, roll < 0.9 ? E.succeeded : E.failed);
            open.splice(open.indexOf(pick), 1);
          }
        }
        await store.committed();
        expect(kept(store)).toEqual(countedFromRows(path));
        if (turn % 10 === 9) {
          store.write(() => store.executionDeleteFinished({ finishedBefore: 1, fromSeq: 0, limit: 50 }));
          await store.committed();
          expect(kept(store)).toEqual(countedFromRows(path));
        }
      }
      expect(Object.keys(countedFromRows(path)).length).toBeGreaterThan(6);
    } finally {
      await store.close();
    }
  });

  test("the migration that keeps counts starts them from the executions already in the database", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    store.write(() => {
      for (let i = 0; i < 30; i++) {
        const record = insert(store, `e${i}`, `t${i % 2}`);
        if (i % 3 !== 0) finish(store, record, start(store, record, 1), i % 3 === 1 ? E.succeeded : E.failed);
      }
    });
    await store.close();
    // The database as it was before migration 0003.
    const db = new Database(path);
    db.exec(`DROP TABLE execution_counts; DROP INDEX executions_state; DROP INDEX executions_task_state;
             DELETE FROM schema_migrations WHERE version = 3;`);
    db.close();
    const reopened = new SqliteStore({ path });
    try {
      expect(kept(reopened)).toEqual(countedFromRows(path));
      expect(kept(reopened)).toEqual({ [`t0/${E.pending}`]: 5, [`t1/${E.pending}`]: 5, [`t0/${E.succeeded}`]: 5, [`t1/${E.succeeded}`]: 5, [`t0/${E.failed}`]: 5, [`t1/${E.failed}`]: 5 });
    } finally {
      await reopened.close();
    }
  });

  test("counts include the changes of the batch that has not committed yet", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      store.write(() => insert(store, "a", "t"));
      expect(kept(store)).toEqual({ [`t/${E.pending}`]: 1 });
      await store.committed();
      const record = store.executionGetBySeq(1)!;
      store.write(() => start(store, record, 1));
      expect(kept(store)).toEqual({ [`t/${E.running}`]: 1 });
    } finally {
      await store.close();
    }
  });

  test("PENDING counts split into due and delayed without counting the delayed ones", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      store.write(() => {
        for (let i = 0; i < 10; i++) insert(store, `due${i}`, "t", { nextAttemptAt: 100 });
        for (let i = 0; i < 7; i++) insert(store, `later${i}`, "t", { nextAttemptAt: 5000 });
      });
      await store.committed();
      expect(store.executionCountPending(1000)).toEqual({ due: 10, delayed: 7 });
      expect(store.executionCountPending(5000)).toEqual({ due: 17, delayed: 0 });
    } finally {
      await store.close();
    }
  });
});

describe("the expiry sweep", () => {
  test("lists each attempt past its lease or its timeout exactly once, and no attempt that is neither", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      const ids = store.write(() => ({
        leaseGone: start(store, insert(store, "a", "t"), 1, 0, null, 1000),
        timedOut: start(store, insert(store, "b", "t"), 1, 0, 500, 30_000),
        both: start(store, insert(store, "c", "t"), 1, 0, 800, 900),
        live: start(store, insert(store, "d", "t"), 1, 0, 60_000, 30_000),
      }));
      await store.committed();
      expect(store.attemptListExpired({ now: 1000, limit: 10 }).sort()).toEqual([ids.leaseGone, ids.timedOut, ids.both].sort());
      expect(store.attemptListExpired({ now: 1000, limit: 2 })).toHaveLength(2);
      expect(store.attemptListExpired({ now: 499, limit: 10 })).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe("lists filtered by state", () => {
  /** Every page of a filtered list, following nextBeforeSeq to the end. */
  function pages(store: SqliteStore, filter: { task?: string; state?: number }, limit: number) {
    const result: { seqs: number[] }[] = [];
    let beforeSeq: number | undefined;
    for (let guard = 0; guard < 1000; guard++) {
      const page = store.executionList({ ...filter, beforeSeq, limit });
      result.push({ seqs: page.records.map((r) => r.seq) });
      if (page.nextBeforeSeq === null) return result;
      beforeSeq = page.nextBeforeSeq;
    }
    throw new Error("paging did not end");
  }

  test("a list of SUCCEEDED walks a bounded window per page, and paging still returns every match once, newest first", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      // Old successes, then more than a window of recent failures with a few successes among them.
      const succeeded: number[] = [];
      store.write(() => {
        for (let i = 0; i < 2.5 * UNINDEXED_LIST_WINDOW; i++) {
          const record = insert(store, `e${i}`, i % 2 === 0 ? "a" : "b");
          const ok = i < 300 || i % 5000 === 0;
          finish(store, record, start(store, record, 1), ok ? E.succeeded : E.failed);
          if (ok) succeeded.push(record.seq);
        }
      });
      await store.committed();
      const all = pages(store, { state: E.succeeded }, 100);
      expect(all.flatMap((p) => p.seqs)).toEqual([...succeeded].reverse());
      expect(all.some((p) => p.seqs.length < 100 && p !== all[all.length - 1])).toBe(true);
      const ofTask = pages(store, { task: "a", state: E.succeeded }, 100).flatMap((p) => p.seqs);
      expect(ofTask).toEqual([...succeeded].reverse().filter((seq) => store.executionGetBySeq(seq)!.task === "a"));
    } finally {
      await store.close();
    }
  });

  test("lists of every other state page through their index in full pages, newest first", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      const expected = new Map<string, number[]>();
      store.write(() => {
        for (let i = 0; i < 1000; i++) {
          const task = `t${i % 3}`;
          const record = insert(store, `e${i}`, task);
          const state = [E.pending, E.running, E.succeeded, E.failed, E.cancelled][i % 5]!;
          if (state === E.running || state === E.succeeded || state === E.failed) {
            const attemptId = start(store, record, 1);
            if (state !== E.running) finish(store, record, attemptId, state);
          } else if (state === E.cancelled) {
            store.executionFinish({ seq: record.seq, task, from: "open", state, finishedAt: 0 });
          }
          for (const key of [`${state}`, `${task}/${state}`]) expected.set(key, [record.seq, ...(expected.get(key) ?? [])]);
        }
      });
      await store.committed();
      for (const state of [E.pending, E.running, E.failed, E.cancelled]) {
        const listed = pages(store, { state }, 30);
        expect(listed.flatMap((p) => p.seqs)).toEqual(expected.get(`${state}`));
        expect(listed.slice(0, -1).every((p) => p.seqs.length === 30)).toBe(true);
        expect(pages(store, { task: "t1", state }, 30).flatMap((p) => p.seqs)).toEqual(expected.get(`t1/${state}`));
      }
    } finally {
      await store.close();
    }
  });
});

describe("retention in the store", () => {
  test("deletes executions that finished before the cutoff with their attempts, and nothing else, however old", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    try {
      const seqs = store.write(() => {
        const old = insert(store, "old", "t", { createdAt: 0 });
        finish(store, old, start(store, old, 1), E.failed, 100);
        const oldPending = insert(store, "old-pending", "t", { createdAt: 0, nextAttemptAt: 10_000 });
        const oldRunning = insert(store, "old-running", "t", { createdAt: 0 });
        start(store, oldRunning, 1);
        const lateFinish = insert(store, "late-finish", "t", { createdAt: 0 });
        finish(store, lateFinish, start(store, lateFinish, 1), E.succeeded, 5000);
        const young = insert(store, "young", "t", { createdAt: 2000 });
        return { old: old.seq, oldPending: oldPending.seq, oldRunning: oldRunning.seq, lateFinish: lateFinish.seq, young: young.seq };
      });
      await store.committed();
      const step = store.write(() => store.executionDeleteFinished({ finishedBefore: 1000, fromSeq: 0, limit: 100 }));
      await store.committed();
      expect(step).toEqual({ deleted: 1, nextSeq: null });
      expect(store.executionGetBySeq(seqs.old)).toBeUndefined();
      expect(store.attemptList(seqs.old)).toEqual([]);
      for (const seq of [seqs.oldPending, seqs.oldRunning, seqs.lateFinish, seqs.young]) expect(store.executionGetBySeq(seq)).toBeDefined();
      expect(store.attemptList(seqs.lateFinish)).toHaveLength(1);
      expect(kept(store)).toEqual(countedFromRows(path));
    } finally {
      await store.close();
    }
  });

  test("walks at most its batch size per step and says where the next step starts", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      store.write(() => {
        for (let i = 0; i < 25; i++) {
          const record = insert(store, `e${i}`, "t");
          finish(store, record, start(store, record, 1), E.succeeded, 10);
        }
      });
      await store.committed();
      const steps: { deleted: number; nextSeq: number | null }[] = [];
      let fromSeq: number | null = 0;
      while (fromSeq !== null) {
        const step = store.write(() => store.executionDeleteFinished({ finishedBefore: 1000, fromSeq: fromSeq!, limit: 10 }));
        steps.push(step);
        fromSeq = step.nextSeq;
      }
      expect(steps.map((s) => s.deleted)).toEqual([10, 10, 5]);
    } finally {
      await store.close();
    }
  });
});

describe("event-loop holds", () => {
  function capturingLogger(): Logger & { warnings: { message: string; fields?: LogFields }[] } {
    const warnings: { message: string; fields?: LogFields }[] = [];
    return { ...silentLogger, warn: (message, fields) => warnings.push({ message, fields }), warnings };
  }

  test("every statement and commit of the store is measured under its own name", async () => {
    const holds = new EventLoopHolds(silentLogger);
    const store = new SqliteStore({ path: join(tempDir(), "db"), holds });
    try {
      store.write(() => insert(store, "e", "t"));
      await store.committed();
      store.executionList({ state: E.pending, limit: 10 });
      const observed = holds.get().values.filter((v) => v.metricName.endsWith("_count") && v.value > 0).map((v) => v.labels.operation);
      expect(observed).toEqual(expect.arrayContaining(["begin", "executionInsert", "countAdd", "commit", "executionListByState"]));
    } finally {
      await store.close();
    }
  });

  test(`a hold over ${WARN_HOLD_MS} ms is logged at warn, naming the statement; shorter ones are not`, () => {
    const log = capturingLogger();
    const holds = new EventLoopHolds(log);
    holds.observer("executionListByState")(WARN_HOLD_MS + 1);
    holds.observer("attemptGet")(WARN_HOLD_MS - 1);
    expect(log.warnings).toEqual([{ message: "the event loop was held", fields: { operation: "executionListByState", held_ms: WARN_HOLD_MS + 1 } }]);
  });

  test("the histogram counts each hold in its bucket, cumulatively, as Prometheus expects", () => {
    const holds = new EventLoopHolds(silentLogger);
    const observe = holds.observer("commit");
    for (const ms of [0.05, 3, 3, 30]) observe(ms);
    const bucket = (le: number | string) => holds.get().values.find((v) => v.metricName.endsWith("_bucket") && v.labels.le === le)!.value;
    expect([bucket(0.0001), bucket(0.005), bucket(0.02), bucket(0.05), bucket("+Inf")]).toEqual([1, 3, 3, 4, 4]);
  });

  test("each RPC's synchronous part is measured under the call's name", async () => {
    const c = await startTestCoordinator();
    try {
      await submit(c, "t");
      await c.executions.listExecutions({ state: ExecutionState.PENDING });
      await c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], maxAttempts: 1 });
      const counted = (operation: string) =>
        c.server.holds.get().values.find((v) => v.metricName.endsWith("_count") && v.labels.operation === operation)?.value ?? 0;
      expect([counted("submit"), counted("list"), counted("lease")]).toEqual([1, 1, 1]);
    } finally {
      await c.close();
    }
  });

  test("expired leases are ended one slice of 500 per timer tick, so that no tick holds the loop for all of them", async () => {
    const clock = new FakeClock();
    const c = await startTestCoordinator({ clock });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const { results } = await c.executions.submitBatch({ submissions: Array.from({ length: 600 }, () => ({ task: "t" })) });
        ids.push(...results.map((r) => r.execution!.id));
        const { attempts } = await c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], maxAttempts: 600, leaseDuration: { seconds: 10n } });
        expect(attempts).toHaveLength(600);
      }
      const ticks = () => c.server.holds.get().values.find((v) => v.metricName.endsWith("_count") && v.labels.operation === "timer")!.value;
      const before = ticks();
      clock.advance(10_000);
      expect(ticks() - before).toBeGreaterThanOrEqual(3);
      for (const id of [ids[0]!, ids[599]!, ids[1199]!]) expect(await stateOf(c, id)).toBe(ExecutionState.ABANDONED);
    } finally {
      await c.close();
    }
  });
});
