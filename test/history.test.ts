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
import { SqliteStore } from "../server/store/sqlite/sqlite-store.js";
import { UNINDEXED_LIST_WINDOW } from "../server/store/list-page.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../server/store/store.js";
import type { ExecutionRecord, Tx } from "../server/store/store.js";
import { FakeClock, startTestCoordinator, tempDir } from "./helpers.js";
import { stateOf } from "./wire-helpers.js";
import { ExecutionState } from "@reprise/wire";

const SECRET = new Uint8Array(16);

async function insert(
  tx: Tx,
  id: string,
  task: string,
  fields: { createdAt?: number; nextAttemptAt?: number; idempotencyKey?: string; labels?: Record<string, string> } = {},
): Promise<ExecutionRecord> {
  const record = (await tx.executionInsert([{
    id,
    task,
    state: E.pending,
    arguments: { data: new Uint8Array([1]), contentType: "" },
    retryPolicy: null,
    nextAttemptAt: fields.nextAttemptAt ?? 0,
    createdAt: fields.createdAt ?? 0,
    idempotencyKey: fields.idempotencyKey ?? null,
    labels: fields.labels ?? {},
  }]))[0];
  if (!record) throw new Error(`execution ${id} was not inserted`);
  return record;
}

/** Leases the oldest due PENDING execution of `task` at `at`, as the coordinator does; returns it and its new attempt's id. */
async function claim(tx: Tx, task: string, at = 0, timeoutAt: number | null = null, leaseMs = 30_000): Promise<{ seq: number; attemptId: number } | undefined> {
  const [due] = await tx.executionClaimDue({ tasks: [task], now: at, limit: 1 });
  if (!due) return undefined;
  const [attemptId] = await tx.attemptInsert([
    {
      executionSeq: due.seq,
      number: due.attemptCount + 1,
      workerId: "w",
      scheduledAt: due.nextAttemptAt,
      startedAt: at,
      leaseSecret: SECRET,
      leaseMs,
      leaseExpiresAt: at + leaseMs,
      timeoutAt,
    },
  ]);
  return { seq: due.seq, attemptId: attemptId! };
}

/** Starts an attempt of `record`, which must be the oldest due PENDING execution of its task at `at`. */
async function start(tx: Tx, record: ExecutionRecord, at = 0, timeoutAt: number | null = null, leaseMs = 30_000): Promise<number> {
  const claimed = await claim(tx, record.task, at, timeoutAt, leaseMs);
  if (claimed?.seq !== record.seq) throw new Error(`claimed execution ${claimed?.seq}, not ${record.seq}`);
  return claimed.attemptId;
}

async function finish(tx: Tx, record: { seq: number; task: string }, attemptId: number, state: number, at = 0): Promise<void> {
  const attemptState = { [E.succeeded]: A.succeeded, [E.failed]: A.failed, [E.cancelled]: A.cancelled }[state]!;
  expect(await tx.attemptFinish({ id: attemptId, leaseSecret: SECRET, state: attemptState, finishedAt: at, failure: null, retryPolicy: null, decision: null })).toBe(true);
  expect(await tx.executionFinish({ seq: record.seq, task: record.task, from: "running", state, finishedAt: at })).toBe(true);
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

/** The counts as the store keeps them, as `tx` sees them. */
const countsIn = async (tx: Tx) => Object.fromEntries((await tx.executionCountByTaskAndState()).map((r) => [`${r.task}/${r.state}`, r.count]));
/** The counts as the store keeps them, once what is written has committed. */
const kept = (store: SqliteStore) => store.read(countsIn);

describe("execution counts for metrics", () => {
  test("counts by task and state always equal a count of the rows, through every change, rollback and deletion", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    try {
      // A seeded walk through every kind of change the coordinator makes.
      let seed = 7;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const open: { record: ExecutionRecord; attemptId: number | null }[] = [];
      let planned = 0;
      for (let turn = 0; turn < 40; turn++) {
        const plannedBefore = planned;
        // Every step a change of its own, all launched in one turn: one batch, one change at a time.
        const steps = Array.from({ length: 25 }, (_, step) =>
          store.write(async (tx) => {
            const roll = random();
            const pick = open.length > 0 ? open[Math.floor(random() * open.length)]! : undefined;
            if (roll < 0.3 || !pick) {
              open.push({ record: await insert(tx, `e${turn}-${step}`, `t${step % 3}`), attemptId: null });
            } else if (pick.attemptId === null && roll < 0.55) {
              // Leasing takes the oldest due execution of the task, which may be another than the one picked.
              const claimed = await claim(tx, pick.record.task);
              if (!claimed) throw new Error(`nothing due for ${pick.record.task}`);
              const entry = open.find((o) => o.record.seq === claimed.seq)!;
              expect(entry.attemptId).toBeNull();
              entry.attemptId = claimed.attemptId;
            } else if (pick.attemptId === null && roll < 0.6) {
              expect(await tx.executionFinish({ seq: pick.record.seq, task: pick.record.task, from: "open", state: E.cancelled, finishedAt: 0 })).toBe(true);
              open.splice(open.indexOf(pick), 1);
            } else if (pick.attemptId !== null && roll < 0.7) {
              expect(await tx.attemptFinish({ id: pick.attemptId, leaseSecret: SECRET, state: A.failed, finishedAt: 0, failure: null, retryPolicy: null, decision: null })).toBe(true);
              expect(await tx.executionSetRetry({ seq: pick.record.seq, task: pick.record.task, nextAttemptAt: 0, runFailures: 0 })).toBe(true);
              pick.attemptId = null;
            } else if (pick.attemptId !== null && roll < 0.75) {
              expect(await tx.attemptReturn({ id: pick.attemptId, leaseSecret: SECRET })).toBe(true);
              pick.attemptId = null;
            } else if (pick.attemptId !== null && roll < 0.8) {
              // A change that throws after it changed a state: it rolls back alone, counts included.
              await finish(tx, pick.record, pick.attemptId, E.succeeded);
              planned++;
              throw new Error("planned");
            } else if (pick.attemptId !== null) {
              await finish(tx, pick.record, pick.attemptId, roll < 0.9 ? E.succeeded : E.failed);
              open.splice(open.indexOf(pick), 1);
            }
          }),
        );
        const settled = await Promise.allSettled(steps);
        const rejected = settled.flatMap((s) => (s.status === "rejected" ? [String(s.reason)] : []));
        expect(rejected).toEqual(Array(planned - plannedBefore).fill("Error: planned"));
        expect(await kept(store)).toEqual(countedFromRows(path));
        if (turn % 10 === 9) {
          await store.write(async (tx) => tx.executionDeleteFinished({ finishedBefore: 1, fromSeq: 0, limit: 50 }));
          expect(await kept(store)).toEqual(countedFromRows(path));
        }
      }
      expect(planned).toBeGreaterThan(0);
      expect(Object.keys(countedFromRows(path)).length).toBeGreaterThan(6);
    } finally {
      await store.close();
    }
  });

  test("the migration that keeps counts starts them from the executions already in the database", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    await store.write(async (tx) => {
      for (let i = 0; i < 30; i++) {
        // Those that stay PENDING come due later, so that leasing passes them over.
        const record = await insert(tx, `e${i}`, `t${i % 2}`, { nextAttemptAt: i % 3 === 0 ? 1 : 0 });
        if (i % 3 !== 0) await finish(tx, record, await start(tx, record), i % 3 === 1 ? E.succeeded : E.failed);
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
      expect(await kept(reopened)).toEqual(countedFromRows(path));
      expect(await kept(reopened)).toEqual({ [`t0/${E.pending}`]: 5, [`t1/${E.pending}`]: 5, [`t0/${E.succeeded}`]: 5, [`t1/${E.succeeded}`]: 5, [`t0/${E.failed}`]: 5, [`t1/${E.failed}`]: 5 });
    } finally {
      await reopened.close();
    }
  });

  test("the migration that indexes labels indexes the labelled executions already in the database, and lists by label find them", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    const seqs = await store.write(async (tx) => {
      const made: number[] = [];
      for (let i = 0; i < 10; i++) made.push((await insert(tx, `e${i}`, "t", { labels: i % 2 === 0 ? { env: "prod", n: String(i) } : {} })).seq);
      return made;
    });
    await store.close();
    // The database as it was before migration 0007.
    const db = new Database(path);
    db.exec("DROP TABLE execution_labels; DELETE FROM schema_migrations WHERE version = 7;");
    db.close();
    const reopened = new SqliteStore({ path });
    try {
      const listed = await reopened.read(async (tx) => tx.executionList({ labels: { env: "prod" }, limit: 100 }));
      expect(listed.records.map((r) => r.seq)).toEqual([seqs[8], seqs[6], seqs[4], seqs[2], seqs[0]]);
      const one = await reopened.read(async (tx) => tx.executionList({ labels: { n: "4" }, limit: 100 }));
      expect(one.records.map((r) => r.id)).toEqual(["e4"]);
    } finally {
      await reopened.close();
    }
  });

  test("counts include the changes of the batch that has not committed yet", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      // A later change of the same batch sees the counts of the earlier ones, before they commit.
      const inserted = store.write(async (tx) => insert(tx, "a", "t"));
      const afterInsert = store.write(async (tx) => ({ commits: store.commits, counts: await countsIn(tx) }));
      expect(await afterInsert).toEqual({ commits: 0, counts: { [`t/${E.pending}`]: 1 } });
      const record = await inserted;
      expect(store.commits).toBe(1);
      const started = store.write(async (tx) => start(tx, record));
      const afterStart = store.write(async (tx) => ({ commits: store.commits, counts: await countsIn(tx) }));
      expect(await afterStart).toEqual({ commits: 1, counts: { [`t/${E.running}`]: 1 } });
      await started;
      expect(await kept(store)).toEqual({ [`t/${E.running}`]: 1 });
    } finally {
      await store.close();
    }
  });

  test("PENDING counts split into due and delayed without counting the delayed ones", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      await store.write(async (tx) => {
        for (let i = 0; i < 10; i++) await insert(tx, `due${i}`, "t", { nextAttemptAt: 100 });
        for (let i = 0; i < 7; i++) await insert(tx, `later${i}`, "t", { nextAttemptAt: 5000 });
      });
      expect(await store.read(async (tx) => tx.executionCountPending(1000))).toEqual({ due: 10, delayed: 7 });
      expect(await store.read(async (tx) => tx.executionCountPending(5000))).toEqual({ due: 17, delayed: 0 });
    } finally {
      await store.close();
    }
  });
});

describe("the expiry sweep", () => {
  test("lists each attempt past its lease or its timeout exactly once, and no attempt that is neither", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      const ids = await store.write(async (tx) => ({
        leaseGone: await start(tx, await insert(tx, "a", "t"), 0, null, 1000),
        timedOut: await start(tx, await insert(tx, "b", "t"), 0, 500, 30_000),
        both: await start(tx, await insert(tx, "c", "t"), 0, 800, 900),
        live: await start(tx, await insert(tx, "d", "t"), 0, 60_000, 30_000),
      }));
      const expired = (now: number, limit: number) => store.read(async (tx) => tx.attemptListExpired({ now, limit }));
      expect((await expired(1000, 10)).sort()).toEqual([ids.leaseGone, ids.timedOut, ids.both].sort());
      expect(await expired(1000, 2)).toHaveLength(2);
      expect(await expired(499, 10)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe("lists filtered by state", () => {
  /** Every page of a filtered list, following nextBeforeSeq to the end. */
  async function pages(store: SqliteStore, filter: { task?: string; state?: number }, limit: number) {
    const result: { seqs: number[] }[] = [];
    let beforeSeq: number | undefined;
    for (let guard = 0; guard < 1000; guard++) {
      const page = await store.read(async (tx) => tx.executionList({ ...filter, beforeSeq, limit }));
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
      const succeeded: { seq: number; task: string }[] = [];
      await store.write(async (tx) => {
        for (let i = 0; i < 2.5 * UNINDEXED_LIST_WINDOW; i++) {
          const record = await insert(tx, `e${i}`, i % 2 === 0 ? "a" : "b");
          const ok = i < 300 || i % 5000 === 0;
          await finish(tx, record, await start(tx, record), ok ? E.succeeded : E.failed);
          if (ok) succeeded.push(record);
        }
      });
      const all = await pages(store, { state: E.succeeded }, 100);
      expect(all.flatMap((p) => p.seqs)).toEqual(succeeded.map((r) => r.seq).reverse());
      expect(all.some((p) => p.seqs.length < 100 && p !== all[all.length - 1])).toBe(true);
      const ofTask = (await pages(store, { task: "a", state: E.succeeded }, 100)).flatMap((p) => p.seqs);
      expect(ofTask).toEqual(succeeded.filter((r) => r.task === "a").map((r) => r.seq).reverse());
    } finally {
      await store.close();
    }
  });

  test("lists of every other state page through their index in full pages, newest first", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      const expected = new Map<string, number[]>();
      await store.write(async (tx) => {
        for (let i = 0; i < 1000; i++) {
          const task = `t${i % 3}`;
          const state = [E.pending, E.running, E.succeeded, E.failed, E.cancelled][i % 5]!;
          // Those that stay PENDING come due later, so that leasing passes them over.
          const record = await insert(tx, `e${i}`, task, { nextAttemptAt: state === E.pending ? 1 : 0 });
          if (state === E.running || state === E.succeeded || state === E.failed) {
            const attemptId = await start(tx, record);
            if (state !== E.running) await finish(tx, record, attemptId, state);
          } else if (state === E.cancelled) {
            expect(await tx.executionFinish({ seq: record.seq, task, from: "open", state, finishedAt: 0 })).toBe(true);
          }
          for (const key of [`${state}`, `${task}/${state}`]) expected.set(key, [record.seq, ...(expected.get(key) ?? [])]);
        }
      });
      for (const state of [E.pending, E.running, E.failed, E.cancelled]) {
        const listed = await pages(store, { state }, 30);
        expect(listed.flatMap((p) => p.seqs)).toEqual(expected.get(`${state}`));
        expect(listed.slice(0, -1).every((p) => p.seqs.length === 30)).toBe(true);
        expect((await pages(store, { task: "t1", state }, 30)).flatMap((p) => p.seqs)).toEqual(expected.get(`t1/${state}`));
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
      const seqs = await store.write(async (tx) => {
        const old = await insert(tx, "old", "t", { createdAt: 0 });
        await finish(tx, old, await start(tx, old), E.failed, 100);
        const oldPending = await insert(tx, "old-pending", "t", { createdAt: 0, nextAttemptAt: 10_000 });
        const oldRunning = await insert(tx, "old-running", "t", { createdAt: 0 });
        await start(tx, oldRunning);
        const lateFinish = await insert(tx, "late-finish", "t", { createdAt: 0 });
        await finish(tx, lateFinish, await start(tx, lateFinish), E.succeeded, 5000);
        const young = await insert(tx, "young", "t", { createdAt: 2000 });
        return { old: old.seq, oldPending: oldPending.seq, oldRunning: oldRunning.seq, lateFinish: lateFinish.seq, young: young.seq };
      });
      const step = await store.write(async (tx) => tx.executionDeleteFinished({ finishedBefore: 1000, fromSeq: 0, limit: 100 }));
      expect(step).toEqual({ deleted: 1, nextSeq: null });
      await store.read(async (tx) => {
        expect(await tx.executionGetBySeq(seqs.old)).toBeUndefined();
        expect(await tx.attemptList(seqs.old)).toEqual([]);
        for (const seq of [seqs.oldPending, seqs.oldRunning, seqs.lateFinish, seqs.young]) expect(await tx.executionGetBySeq(seq)).toBeDefined();
        expect(await tx.attemptList(seqs.lateFinish)).toHaveLength(1);
      });
      expect(await kept(store)).toEqual(countedFromRows(path));
    } finally {
      await store.close();
    }
  });

  test("walks at most its batch size per step and says where the next step starts", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      await store.write(async (tx) => {
        for (let i = 0; i < 25; i++) {
          const record = await insert(tx, `e${i}`, "t");
          await finish(tx, record, await start(tx, record), E.succeeded, 10);
        }
      });
      const steps: { deleted: number; nextSeq: number | null }[] = [];
      let fromSeq: number | null = 0;
      while (fromSeq !== null) {
        const from: number = fromSeq;
        const step = await store.write(async (tx) => tx.executionDeleteFinished({ finishedBefore: 1000, fromSeq: from, limit: 10 }));
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
      await store.write(async (tx) => insert(tx, "e", "t"));
      await store.read(async (tx) => tx.executionList({ state: E.pending, limit: 10 }));
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

  test("expired leases are ended one slice of 500 per timer tick, so that no tick holds the loop for all of them", async () => {
    // Marks, at every timer that fires, how many attempts have been ended so far; the fake
    // clock lets each tick finish before it fires the next timer.
    let ended = () => 0;
    const marks: number[] = [];
    const clock = new (class extends FakeClock {
      override setTimeout(callback: () => void, delayMs: number) {
        return super.setTimeout(() => {
          marks.push(ended());
          callback();
        }, delayMs);
      }
    })();
    const c = await startTestCoordinator({ clock });
    try {
      ended = () => c.server.holds.get().values.find((v) => v.metricName.endsWith("_count") && v.labels.operation === "attemptFinish")?.value ?? 0;
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const { results } = await c.executions.submitBatch({ submissions: Array.from({ length: 600 }, () => ({ task: "t" })) });
        ids.push(...results.map((r) => r.execution!.id));
        const { attempts } = await c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], maxAttempts: 600, leaseDuration: { seconds: 10n } });
        expect(attempts).toHaveLength(600);
      }
      const before = ended();
      marks.length = 0;
      await clock.advance(10_000);
      marks.push(ended());
      // What each timer that fired set off, up to the next one.
      const perTick = marks.slice(1).map((mark, i) => mark - marks[i]!);
      expect(marks[0]).toBe(before);
      expect(perTick.reduce((a, b) => a + b, 0)).toBe(1200);
      expect(Math.max(...perTick)).toBeLessThanOrEqual(500);
      expect(perTick.filter((n) => n > 0).length).toBeGreaterThanOrEqual(3);
      for (const id of [ids[0]!, ids[599]!, ids[1199]!]) expect(await stateOf(c, id)).toBe(ExecutionState.ABANDONED);
    } finally {
      await c.close();
    }
  });
});
