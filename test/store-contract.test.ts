// The Store contract of server/store/store.ts, held against every store with
// the same tests (as River's riverdrivertest does for its drivers): what each
// Tx method reads and writes, the guards on every state change, and what a
// change promises about commit, rollback and effects. A store-specific
// behaviour that store.ts leaves open is named in store-contract-helpers.ts.
import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";
// The window of a SUCCEEDED list page: 10,000 seqs in both stores (the PostgreSQL store keeps its own copy).
import { LABEL_LIST_WINDOW, UNINDEXED_LIST_WINDOW } from "../server/store/list-page.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../server/store/store.js";
import type { Store, Tx } from "../server/store/store.js";
import {
  SECRET,
  WRONG_SECRET,
  countRows,
  finish,
  insert,
  keptCounts,
  lease,
  newAttempt,
  newExecution,
  pages,
  postgresKind,
  sleep,
  sqliteKind,
  start,
} from "./store-contract-helpers.js";
import type { OpenStore, StoreKind } from "./store-contract-helpers.js";

const ids = (records: { id: string }[]) => records.map((r) => r.id);
const seqs = (records: { seq: number }[]) => records.map((r) => r.seq);

describe.each([
  ["SQLite", sqliteKind],
  ["PostgreSQL", postgresKind],
] as [string, StoreKind][])("the %s store", (_name, kind) => {
  // Without a PostgreSQL server for the run, its tests are skipped.
  const it = kind.available ? test : test.skip;
  let opened: OpenStore;
  let store: Store;
  /** The ids of the executions as another connection sees them: only what is committed. */
  const committedIds = async () => ids(await opened.committedExecutions());

  beforeEach(async () => {
    if (!kind.available) return;
    opened = await kind.open();
    store = opened.store;
  });
  afterEach(async () => {
    if (kind.available) await opened.close();
  });
  afterAll(async () => {
    await kind.dispose?.();
  });

  describe("executions", () => {
    it("executionInsert returns the PENDING record under a new seq, larger than any before, at version 1 with no attempts", async () => {
      const [a, b] = await store.write(async (tx) => [
        await insert(tx, "a", "t", { nextAttemptAt: 10, createdAt: 5, idempotencyKey: "key-a", labels: { k: "v" }, retryPolicy: Buffer.from([9, 9]) }),
        await insert(tx, "b", "t"),
      ]);
      const c = await store.write(async (tx) => insert(tx, "c", "u"));
      expect(a).toEqual({
        seq: a.seq,
        id: "a",
        task: "t",
        state: E.pending,
        version: 1,
        arguments: { data: Buffer.from([1]), contentType: "" },
        retryPolicy: Buffer.from([9, 9]),
        result: null,
        failure: null,
        nextAttemptAt: 10,
        createdAt: 5,
        finishedAt: null,
        idempotencyKey: "key-a",
        labels: { k: "v" },
        attemptCount: 0,
        runFailures: 0,
        runScheduledAt: 10,
      });
      expect(b.seq).toBeGreaterThan(a.seq);
      expect(c.seq).toBeGreaterThan(b.seq);
    });

    it("executionGet, executionGetBySeq and executionGetByIdempotencyKey return the record as inserted, and undefined for what does not exist", async () => {
      const record = await store.write(async (tx) =>
        insert(tx, "a", "t", { idempotencyKey: "key", labels: { x: "1", y: "2" }, arguments: { data: Buffer.from("args"), contentType: "application/json" } }),
      );
      for (const read of [store.read.bind(store), store.write.bind(store)]) {
        await read(async (tx: Tx) => {
          expect(await tx.executionGet("a")).toEqual(record);
          expect(await tx.executionGetBySeq(record.seq)).toEqual(record);
          expect(await tx.executionGetByIdempotencyKey("key")).toEqual(record);
          expect(await tx.executionGet("nope")).toBeUndefined();
          expect(await tx.executionGetBySeq(record.seq + 1000)).toBeUndefined();
          expect(await tx.executionGetByIdempotencyKey("nope")).toBeUndefined();
        });
      }
      // A change reads what it has just written.
      await store.write(async (tx) => {
        const b = await insert(tx, "b", "t");
        expect(await tx.executionGet("b")).toEqual(b);
      });
    });

    it("executionVersions gives the version of each execution that exists, one more after each change, and nothing for a seq that does not", async () => {
      const [a, b] = await store.write(async (tx) => [await insert(tx, "va", "t"), await insert(tx, "vb", "t")]);
      const versions = async () => (await store.read(async (tx) => tx.executionVersions([a.seq, b.seq, b.seq + 1000]))).sort((x, y) => x.seq - y.seq);
      expect(await versions()).toEqual([{ seq: a.seq, version: a.version }, { seq: b.seq, version: b.version }]);
      await store.write(async (tx) => tx.executionFinish({ seq: b.seq, task: "t", from: "open", state: E.cancelled, finishedAt: 0 }));
      expect(await versions()).toEqual([{ seq: a.seq, version: a.version }, { seq: b.seq, version: b.version + 1 }]);
      expect(await store.read(async (tx) => tx.executionVersions([]))).toEqual([]);
    });

    it("executionInsert inserts a batch in one call and returns its records in the order given, under seqs that grow in that order", async () => {
      const before = await store.write(async (tx) => insert(tx, "before", "t"));
      const batch = [newExecution("b1", "t", { nextAttemptAt: 3 }), newExecution("b2", "u", { idempotencyKey: "k2", labels: { n: "2" } }), newExecution("b3", "t")];
      const records = await store.write(async (tx) => tx.executionInsert(batch));
      expect(ids(records.map((r) => r!))).toEqual(["b1", "b2", "b3"]);
      expect(records.map((r) => r!.seq)).toEqual([...records.map((r) => r!.seq)].sort((x, y) => x - y));
      expect(records[0]!.seq).toBeGreaterThan(before.seq);
      expect(new Set(records.map((r) => r!.seq)).size).toBe(3);
      await store.read(async (tx) => {
        for (const record of records) expect(await tx.executionGetBySeq(record!.seq)).toEqual(record);
      });
      expect(await store.write(async (tx) => tx.executionInsert([]))).toEqual([]);
      expect(await store.read(keptCounts)).toEqual({ [`t/${E.pending}`]: 3, [`u/${E.pending}`]: 1 });
    });

    it(`an idempotency key names at most one execution: inserting it again ${kind.duplicateKey === "undefined" ? "gives undefined in its place" : "throws and rolls its change back"}`, async () => {
      const first = await store.write(async (tx) => insert(tx, "first", "t", { idempotencyKey: "k" }));
      const again = store.write(async (tx) => tx.executionInsert([newExecution("bystander", "t"), newExecution("second", "t", { idempotencyKey: "k" })]));
      if (kind.duplicateKey === "undefined") {
        const [bystander, second] = await again;
        expect(bystander?.id).toBe("bystander");
        expect(second).toBeUndefined();
      } else {
        await expect(again).rejects.toThrow();
      }
      await store.read(async (tx) => {
        expect(await tx.executionGetByIdempotencyKey("k")).toEqual(first);
        expect(await tx.executionGet("second")).toBeUndefined();
      });
      expect(await committedIds()).toEqual(kind.duplicateKey === "undefined" ? ["first", "bystander"] : ["first"]);
      // Counted once, and the bystander only where it was inserted.
      expect(await store.read(keptCounts)).toEqual({ [`t/${E.pending}`]: kind.duplicateKey === "undefined" ? 2 : 1 });

      // Two changes at once with one new key: one execution.
      const racing = await Promise.allSettled(
        ["r1", "r2"].map((id) =>
          store.write(async (tx) => {
            const [record] = await tx.executionInsert([newExecution(id, "race", { idempotencyKey: "k2" })]);
            await sleep(20);
            return record;
          }),
        ),
      );
      const won = racing.flatMap((r) => (r.status === "fulfilled" && r.value !== undefined ? [r.value.id] : []));
      expect(won).toHaveLength(1);
      const lost = racing.find((r) => r.status === "rejected" || r.value === undefined)!;
      if (kind.duplicateKey === "undefined") expect(lost).toEqual({ status: "fulfilled", value: undefined });
      else expect(lost.status).toBe("rejected");
      expect(await store.read(async (tx) => (await tx.executionGetByIdempotencyKey("k2"))?.id)).toBe(won[0]);
      expect(await store.read(async (tx) => (await tx.executionList({ task: "race", limit: 10 })).records.length)).toBe(1);

      // Executions without a key never collide.
      await store.write(async (tx) => tx.executionInsert([newExecution("n1", "t"), newExecution("n2", "t")]));
      expect(await committedIds()).toEqual(expect.arrayContaining(["n1", "n2"]));
    });
  });

  describe("claiming due executions", () => {
    it("executionClaimDue claims only PENDING executions of the given tasks that are due at now", async () => {
      await store.write(async (tx) => {
        await start(tx, await insert(tx, "running", "t", { nextAttemptAt: 0 }));
        const cancelled = await insert(tx, "cancelled", "t", { nextAttemptAt: 0 });
        expect(await tx.executionFinish({ seq: cancelled.seq, task: "t", from: "open", state: E.cancelled, finishedAt: 0 })).toBe(true);
        await insert(tx, "due", "t", { nextAttemptAt: 100 });
        await insert(tx, "due-now", "t", { nextAttemptAt: 150 });
        await insert(tx, "later", "t", { nextAttemptAt: 151 });
        await insert(tx, "other-task", "u", { nextAttemptAt: 0 });
      });
      const claimed = await store.write(async (tx) => tx.executionClaimDue({ tasks: ["t"], now: 150, limit: 10 }));
      expect(ids(claimed)).toEqual(["due", "due-now"]);
      await store.read(async (tx) => {
        for (const id of ["later", "other-task"]) expect((await tx.executionGet(id))!.state).toBe(E.pending);
        expect((await tx.executionGet("cancelled"))!.state).toBe(E.cancelled);
      });
      expect(await store.write(async (tx) => tx.executionClaimDue({ tasks: ["t", "v"], now: 150, limit: 10 }))).toEqual([]);
      expect(await store.write(async (tx) => tx.executionClaimDue({ tasks: [], now: 1e12, limit: 10 }))).toEqual([]);
    });

    it("executionClaimDue takes the oldest due first, across tasks and by seq among equals, and at most limit", async () => {
      await store.write(async (tx) => {
        await insert(tx, "a300", "a", { nextAttemptAt: 300 });
        await insert(tx, "b100", "b", { nextAttemptAt: 100 });
        await insert(tx, "a200", "a", { nextAttemptAt: 200 });
        await insert(tx, "b200", "b", { nextAttemptAt: 200 });
        await insert(tx, "c50", "c", { nextAttemptAt: 50 });
      });
      const claimed = await store.write(async (tx) => tx.executionClaimDue({ tasks: ["a", "b"], now: 1000, limit: 3 }));
      expect(ids(claimed)).toEqual(["b100", "a200", "b200"]);
      expect(await store.read(async (tx) => (await tx.executionGet("a300"))!.state)).toBe(E.pending);
    });

    it("executionClaimDue returns what it claimed oldest due first, even when fewer than limit are due", async () => {
      await store.write(async (tx) => {
        await insert(tx, "a300", "a", { nextAttemptAt: 300 });
        await insert(tx, "b100", "b", { nextAttemptAt: 100 });
        await insert(tx, "a200", "a", { nextAttemptAt: 200 });
        await insert(tx, "b250", "b", { nextAttemptAt: 250 });
      });
      const claimed = await store.write(async (tx) => tx.executionClaimDue({ tasks: ["a", "b"], now: 1000, limit: 10 }));
      expect(claimed.map((d) => [d.id, d.nextAttemptAt])).toEqual([
        ["b100", 100],
        ["a200", 200],
        ["b250", 250],
        ["a300", 300],
      ]);
    });

    it("executionClaimDue moves each claimed execution to RUNNING, bumps its attempt count and version, and reports the count before the new attempt", async () => {
      const record = await store.write(async (tx) =>
        insert(tx, "e", "t", { nextAttemptAt: 40, labels: { k: "v" }, arguments: { data: Buffer.from("in"), contentType: "text/plain" } }),
      );
      const first = await store.write(async (tx) => lease(tx, "t", { at: 50 }));
      expect(first!.due).toEqual({
        seq: record.seq,
        id: "e",
        task: "t",
        arguments: { data: Buffer.from("in"), contentType: "text/plain" },
        labels: { k: "v" },
        attemptCount: 0,
        nextAttemptAt: 40,
      });
      const running = await store.read(async (tx) => tx.executionGet("e"));
      expect(running).toMatchObject({ state: E.running, attemptCount: 1, nextAttemptAt: null, version: 2 });

      await store.write(async (tx) => {
        expect(await tx.attemptFinish({ id: first!.attemptId, leaseSecret: SECRET, state: A.failed, finishedAt: 60, failure: null, retryPolicy: null, decision: null })).toBe(true);
        expect(await tx.executionSetRetry({ seq: record.seq, task: "t", nextAttemptAt: 70, runFailures: 0 })).toBe(true);
      });
      const second = await store.write(async (tx) => lease(tx, "t", { at: 70 }));
      expect(second!.due).toMatchObject({ id: "e", attemptCount: 1, nextAttemptAt: 70 });
      expect(await store.read(async (tx) => tx.executionGet("e"))).toMatchObject({ state: E.running, attemptCount: 2 });
      expect((await store.read(async (tx) => tx.attemptList(record.seq))).map((a) => a.number)).toEqual([1, 2]);
    });

    it("an execution claimed once is not claimed again", async () => {
      await store.write(async (tx) => insert(tx, "e", "t"));
      expect(ids(await store.write(async (tx) => tx.executionClaimDue({ tasks: ["t"], now: 0, limit: 5 })))).toEqual(["e"]);
      expect(await store.write(async (tx) => tx.executionClaimDue({ tasks: ["t"], now: 1e12, limit: 5 }))).toEqual([]);
      // Within one change too.
      await store.write(async (tx) => insert(tx, "f", "t"));
      await store.write(async (tx) => {
        expect(ids(await tx.executionClaimDue({ tasks: ["t"], now: 0, limit: 5 }))).toEqual(["f"]);
        expect(await tx.executionClaimDue({ tasks: ["t"], now: 0, limit: 5 })).toEqual([]);
      });
    });

    it("changes that claim at the same moment never claim the same execution", async () => {
      await store.write(async (tx) => {
        for (let i = 0; i < 20; i++) await insert(tx, `e${i}`, "t");
      });
      const claimer = () =>
        store.write(async (tx) => {
          const due = await tx.executionClaimDue({ tasks: ["t"], now: 0, limit: 6 });
          await tx.attemptInsert(due.map((d) => newAttempt(d)));
          // Holds its claim a while, so that the others claim meanwhile where changes run at the same time.
          await sleep(30);
          return ids(due);
        });
      const claims = await Promise.all([claimer(), claimer(), claimer(), claimer()]);
      const all = claims.flat();
      expect(new Set(all).size).toBe(all.length);
      expect(all.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `e${i}`).sort());
      expect(claims.every((claim) => claim.length <= 6)).toBe(true);
      await store.read(async (tx) => {
        for (let i = 0; i < 20; i++) {
          const record = (await tx.executionGet(`e${i}`))!;
          expect(record).toMatchObject({ state: E.running, attemptCount: 1 });
          expect(await tx.attemptList(record.seq)).toHaveLength(1);
        }
      });
    });
  });

  describe("attempts", () => {
    it("attemptInsert returns the new attempts' ids in the order given; attemptGet returns them with their executions in the order asked, undefined for an unknown id", async () => {
      await store.write(async (tx) => {
        for (const id of ["x", "y", "z"]) await insert(tx, id, "t", { retryPolicy: id === "y" ? Buffer.from([7]) : null });
      });
      const { due, attemptIds } = await store.write(async (tx) => {
        const claimed = await tx.executionClaimDue({ tasks: ["t"], now: 0, limit: 3 });
        // Given in an order other than the claim's.
        const given = [claimed[2]!, claimed[0]!, claimed[1]!];
        const inserted = await tx.attemptInsert(given.map((d, i) => newAttempt(d, { at: 5, leaseMs: 1000 + i, workerId: `w${i}`, timeoutAt: i === 0 ? 99 : null })));
        expect(await tx.attemptInsert([])).toEqual([]);
        return { due: given, attemptIds: inserted };
      });
      expect(attemptIds).toHaveLength(3);
      expect(new Set(attemptIds).size).toBe(3);
      const unknown = Math.max(...attemptIds) + 1000;
      const refs = await store.read(async (tx) => tx.attemptGet([attemptIds[1]!, unknown, attemptIds[0]!, attemptIds[2]!]));
      expect(refs[1]).toBeUndefined();
      const expected = (i: number) => ({
        id: attemptIds[i],
        executionSeq: due[i]!.seq,
        number: 1,
        state: A.running,
        workerId: `w${i}`,
        scheduledAt: 0,
        startedAt: 5,
        leaseSecret: SECRET,
        leaseMs: 1000 + i,
        leaseExpiresAt: 1005 + i,
        timeoutAt: i === 0 ? 99 : null,
        execution: { seq: due[i]!.seq, id: due[i]!.id, task: "t", retryPolicy: due[i]!.id === "y" ? Buffer.from([7]) : null },
      });
      // toMatchObject: an AttemptRef leaves the outcome fields out, and a store may carry them along.
      expect(refs[0]).toMatchObject(expected(1));
      expect(refs[2]).toMatchObject(expected(0));
      expect(refs[3]).toMatchObject(expected(2));
      // A change reads them too (PostgreSQL locks them there).
      expect(await store.write(async (tx) => tx.attemptGet([attemptIds[2]!]))).toMatchObject([expected(2)]);
      expect(await store.read(async (tx) => tx.attemptGet([]))).toEqual([]);
    });

    it("attemptList lists an execution's attempts by number with their outcomes; attemptGetRunning finds the RUNNING one only", async () => {
      const failure = { type: "Boom", message: "it broke", stackTrace: "at x", nonRetryable: false, retryAfterMs: 250 };
      const record = await store.write(async (tx) => insert(tx, "e", "t"));
      const first = await store.write(async (tx) => start(tx, record, { at: 1 }));
      await store.write(async (tx) => {
        expect(await tx.attemptFinish({ id: first, leaseSecret: SECRET, state: A.failed, finishedAt: 2, failure, retryPolicy: Buffer.from([3]), decision: null })).toBe(true);
        expect(await tx.executionSetRetry({ seq: record.seq, task: "t", nextAttemptAt: 3, runFailures: 0 })).toBe(true);
      });
      const second = await store.write(async (tx) => start(tx, record, { at: 3 }));
      const list = await store.read(async (tx) => tx.attemptList(record.seq));
      expect(list.map((a) => [a.id, a.number, a.state])).toEqual([
        [first, 1, A.failed],
        [second, 2, A.running],
      ]);
      expect(list[0]).toMatchObject({ finishedAt: 2, failure, retryPolicy: Buffer.from([3]), scheduledAt: 0, startedAt: 1 });
      expect(list[1]).toMatchObject({ finishedAt: null, failure: null, retryPolicy: null, scheduledAt: 3, startedAt: 3 });
      expect(await store.read(async (tx) => tx.attemptGetRunning(record.seq))).toEqual(list[1]);

      await store.write(async (tx) => finish(tx, record, second, E.succeeded, 4));
      expect(await store.read(async (tx) => tx.attemptGetRunning(record.seq))).toBeUndefined();
      const never = await store.write(async (tx) => insert(tx, "never", "t", { nextAttemptAt: 1e12 }));
      await store.read(async (tx) => {
        expect(await tx.attemptList(never.seq)).toEqual([]);
        expect(await tx.attemptGetRunning(never.seq)).toBeUndefined();
      });
    });

    it("attemptExtendLease applies only to RUNNING attempts with their own lease secret, and returns how many applied", async () => {
      const [live, other, done] = await store.write(async (tx) => {
        const made = [];
        for (const id of ["live", "other", "done"]) made.push({ record: await insert(tx, id, "t"), attemptId: 0 });
        for (const m of made) m.attemptId = await start(tx, m.record, { leaseMs: 100 });
        await finish(tx, made[2]!.record, made[2]!.attemptId, E.succeeded);
        return made;
      });
      const applied = await store.write(async (tx) =>
        tx.attemptExtendLease([
          { id: live!.attemptId, leaseSecret: SECRET, leaseExpiresAt: 5000 },
          { id: other!.attemptId, leaseSecret: WRONG_SECRET, leaseExpiresAt: 5000 },
          { id: done!.attemptId, leaseSecret: SECRET, leaseExpiresAt: 5000 },
          { id: done!.attemptId + 1000, leaseSecret: SECRET, leaseExpiresAt: 5000 },
        ]),
      );
      expect(applied).toBe(1);
      const refs = await store.read(async (tx) => tx.attemptGet([live!.attemptId, other!.attemptId, done!.attemptId]));
      expect(refs.map((r) => r!.leaseExpiresAt)).toEqual([5000, 100, 100]);
      expect(await store.write(async (tx) => tx.attemptExtendLease([]))).toBe(0);
    });

    it("attemptFinish ends a RUNNING attempt with its own lease secret only: a wrong secret, or a second finish, does not apply", async () => {
      const record = await store.write(async (tx) => insert(tx, "e", "t"));
      const attemptId = await store.write(async (tx) => start(tx, record));
      const ending = { id: attemptId, state: A.succeeded, finishedAt: 9, failure: null, retryPolicy: null, decision: null };
      expect(await store.write(async (tx) => tx.attemptFinish({ ...ending, leaseSecret: WRONG_SECRET }))).toBe(false);
      expect((await store.read(async (tx) => tx.attemptGet([attemptId])))[0]!.state).toBe(A.running);
      expect(await store.write(async (tx) => tx.attemptFinish({ ...ending, leaseSecret: SECRET }))).toBe(true);
      expect(await store.write(async (tx) => tx.attemptFinish({ ...ending, leaseSecret: SECRET, state: A.failed, finishedAt: 10 }))).toBe(false);
      expect(await store.write(async (tx) => tx.attemptFinish({ ...ending, id: attemptId + 1000, leaseSecret: SECRET }))).toBe(false);
      expect((await store.read(async (tx) => tx.attemptList(record.seq)))[0]).toMatchObject({ state: A.succeeded, finishedAt: 9 });
    });

    it("executionSetRetry moves only a RUNNING execution back to PENDING, due at nextAttemptAt", async () => {
      const record = await store.write(async (tx) => insert(tx, "e", "t"));
      expect(await store.write(async (tx) => tx.executionSetRetry({ seq: record.seq, task: "t", nextAttemptAt: 50, runFailures: 0 }))).toBe(false);
      const attemptId = await store.write(async (tx) => start(tx, record));
      await store.write(async (tx) => {
        expect(await tx.attemptFinish({ id: attemptId, leaseSecret: SECRET, state: A.failed, finishedAt: 1, failure: null, retryPolicy: null, decision: null })).toBe(true);
        expect(await tx.executionSetRetry({ seq: record.seq, task: "t", nextAttemptAt: 50, runFailures: 0 })).toBe(true);
        expect(await tx.executionSetRetry({ seq: record.seq, task: "t", nextAttemptAt: 60, runFailures: 0 })).toBe(false);
      });
      expect(await store.read(async (tx) => tx.executionGet("e"))).toMatchObject({ state: E.pending, nextAttemptAt: 50, attemptCount: 1, version: 3 });
      // Not due before nextAttemptAt; due from then on.
      expect(await store.write(async (tx) => tx.executionClaimDue({ tasks: ["t"], now: 49, limit: 1 }))).toEqual([]);
      expect(ids(await store.write(async (tx) => tx.executionClaimDue({ tasks: ["t"], now: 50, limit: 1 })))).toEqual(["e"]);
      expect(await store.write(async (tx) => tx.executionSetRetry({ seq: record.seq + 1000, task: "t", nextAttemptAt: 1, runFailures: 0 }))).toBe(false);
    });

    it('executionFinish from "running" applies to a RUNNING execution only; from "open" to a PENDING one too; neither to a finished one', async () => {
      const failure = { type: "Fatal", message: "no", stackTrace: "", nonRetryable: true, retryAfterMs: 0 };
      const [pending, running] = await store.write(async (tx) => [await insert(tx, "pending", "t"), await insert(tx, "running", "t", { nextAttemptAt: 1 })]);
      await store.write(async (tx) => start(tx, pending));
      // "pending" is RUNNING now; "running" stays PENDING until it is started.
      const finishing = { task: "t", finishedAt: 20 };
      await store.write(async (tx) => {
        expect(await tx.executionFinish({ ...finishing, seq: running.seq, from: "running", state: E.failed, failure })).toBe(false);
        expect(await tx.executionFinish({ ...finishing, seq: pending.seq, from: "running", state: E.succeeded, result: { data: Buffer.from("ok"), contentType: "text/plain" } })).toBe(true);
        expect(await tx.executionFinish({ ...finishing, seq: running.seq, from: "open", state: E.failed, failure })).toBe(true);
      });
      await store.read(async (tx) => {
        expect(await tx.executionGet("pending")).toMatchObject({ state: E.succeeded, finishedAt: 20, nextAttemptAt: null, result: { data: Buffer.from("ok"), contentType: "text/plain" }, failure: null, version: 3 });
        expect(await tx.executionGet("running")).toMatchObject({ state: E.failed, finishedAt: 20, nextAttemptAt: null, result: null, failure, version: 2 });
      });
      await store.write(async (tx) => {
        for (const seq of [pending.seq, running.seq, running.seq + 1000]) {
          for (const from of ["running", "open"] as const) expect(await tx.executionFinish({ ...finishing, seq, from, state: E.cancelled })).toBe(false);
        }
      });
      expect((await store.read(async (tx) => tx.executionGet("pending")))!.state).toBe(E.succeeded);
    });

    it("attemptReturn deletes an undelivered attempt and makes its execution PENDING again, due at the attempt's scheduled time, with its attempt count restored", async () => {
      const record = await store.write(async (tx) => insert(tx, "e", "t", { nextAttemptAt: 30 }));
      const attemptId = await store.write(async (tx) => start(tx, record, { at: 40 }));
      expect(await store.write(async (tx) => tx.attemptReturn({ id: attemptId, leaseSecret: WRONG_SECRET }))).toBe(false);
      expect(await store.read(async (tx) => tx.executionGet("e"))).toMatchObject({ state: E.running, attemptCount: 1 });
      expect(await store.write(async (tx) => tx.attemptReturn({ id: attemptId, leaseSecret: SECRET }))).toBe(true);
      await store.read(async (tx) => {
        expect(await tx.executionGet("e")).toMatchObject({ state: E.pending, nextAttemptAt: 30, attemptCount: 0, version: 3 });
        expect(await tx.attemptList(record.seq)).toEqual([]);
        expect(await tx.attemptGet([attemptId])).toEqual([undefined]);
      });
      expect(await store.write(async (tx) => tx.attemptReturn({ id: attemptId, leaseSecret: SECRET }))).toBe(false);
      // Leased again, it is the first attempt again; once finished, it cannot be returned.
      const again = await store.write(async (tx) => lease(tx, "t", { at: 50 }));
      expect(again!.due).toMatchObject({ id: "e", attemptCount: 0, nextAttemptAt: 30 });
      await store.write(async (tx) => finish(tx, record, again!.attemptId, E.succeeded, 60));
      expect(await store.write(async (tx) => tx.attemptReturn({ id: again!.attemptId, leaseSecret: SECRET }))).toBe(false);
      expect(await store.read(async (tx) => tx.executionGet("e"))).toMatchObject({ state: E.succeeded, attemptCount: 1 });
    });

    it("attemptGet with skipLocked leaves out an attempt that another change holds rather than waiting for it", async () => {
      const attemptId = await store.write(async (tx) => start(tx, await insert(tx, "e", "t")));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let holding!: () => void;
      const held = new Promise<void>((resolve) => (holding = resolve));
      let holderDone = false;
      const holder = store.write(async (tx) => {
          expect((await tx.attemptGet([attemptId]))[0]?.id).toBe(attemptId);
          holding();
          // Where changes run one at a time, the other change cannot start before this one ends.
          await Promise.race([released, sleep(kind.concurrentChanges ? 5000 : 20)]);
          holderDone = true;
        });
      await held;
      const [skipped] = await store.write(async (tx) => tx.attemptGet([attemptId], { skipLocked: true }));
      const whileHeld = !holderDone;
      release();
      await holder;
      // Left out exactly when the other change still held it.
      expect(skipped === undefined).toBe(whileHeld);
      if (kind.concurrentChanges) expect(whileHeld).toBe(true);
      expect((await store.write(async (tx) => tx.attemptGet([attemptId], { skipLocked: true })))[0]?.id).toBe(attemptId);
    });
  });

  describe("deadlines", () => {
    it("attemptListExpired lists each RUNNING attempt past its lease or its timeout once, and none that is neither or has ended", async () => {
      const attempts = await store.write(async (tx) => ({
        leaseGone: await start(tx, await insert(tx, "a", "t"), { leaseMs: 1000 }),
        timedOut: await start(tx, await insert(tx, "b", "t"), { timeoutAt: 500 }),
        both: await start(tx, await insert(tx, "c", "t"), { timeoutAt: 800, leaseMs: 900 }),
        live: await start(tx, await insert(tx, "d", "t"), { timeoutAt: 60_000 }),
        ended: await start(tx, await insert(tx, "e", "t"), { timeoutAt: 10, leaseMs: 10 }),
      }));
      await store.write(async (tx) => finish(tx, (await tx.executionGet("e"))!, attempts.ended, E.failed));
      const expired = (now: number, limit: number) => store.read(async (tx) => tx.attemptListExpired({ now, limit }));
      expect((await expired(1000, 10)).sort((x, y) => x - y)).toEqual([attempts.leaseGone, attempts.timedOut, attempts.both].sort((x, y) => x - y));
      expect(await expired(1000, 2)).toHaveLength(2);
      expect(await expired(499, 10)).toEqual([]);
      expect(await expired(500, 10)).toEqual([attempts.timedOut]);
    });

    it("attemptListExpired lists attempts past their lease earliest lease first, and those past their timeout earliest timeout first, at most limit", async () => {
      const leases = await store.write(async (tx) => {
        const made: Record<string, number> = {};
        for (const ms of [300, 100, 200]) made[ms] = await start(tx, await insert(tx, `lease${ms}`, "t"), { leaseMs: ms });
        return made;
      });
      expect(await store.read(async (tx) => tx.attemptListExpired({ now: 1000, limit: 10 }))).toEqual([leases[100], leases[200], leases[300]]);
      expect(await store.read(async (tx) => tx.attemptListExpired({ now: 1000, limit: 2 }))).toEqual([leases[100], leases[200]]);
      await store.write(async (tx) => {
        for (const ms of [100, 200, 300]) await finish(tx, (await tx.executionGet(`lease${ms}`))!, leases[ms]!, E.failed);
      });
      const timeouts = await store.write(async (tx) => {
        const made: Record<string, number> = {};
        for (const ms of [250, 150, 350]) made[ms] = await start(tx, await insert(tx, `timeout${ms}`, "t"), { timeoutAt: ms, leaseMs: 10_000 });
        return made;
      });
      expect(await store.read(async (tx) => tx.attemptListExpired({ now: 1000, limit: 10 }))).toEqual([timeouts[150], timeouts[250], timeouts[350]]);
      expect(await store.read(async (tx) => tx.attemptListExpired({ now: 300, limit: 1 }))).toEqual([timeouts[150]]);
    });

    it("nextDeadline is the earliest of a future PENDING start, a RUNNING attempt's lease expiry and its timeout; null when nothing is due", async () => {
      const next = (now: number) => store.read(async (tx) => tx.nextDeadline(now));
      expect(await next(100)).toBeNull();
      await store.write(async (tx) => {
        await insert(tx, "future", "later", { nextAttemptAt: 500 });
        await insert(tx, "due-now", "idle", { nextAttemptAt: 50 });
      });
      // A start that is already due is no future deadline.
      expect(await next(100)).toBe(500);
      const leased = await store.write(async (tx) => start(tx, await insert(tx, "leased", "t"), { leaseMs: 300 }));
      expect(await next(100)).toBe(300);
      const timed = await store.write(async (tx) => start(tx, await insert(tx, "timed", "t"), { leaseMs: 1000, timeoutAt: 200 }));
      expect(await next(100)).toBe(200);
      await store.write(async (tx) => finish(tx, (await tx.executionGet("timed"))!, timed, E.succeeded));
      expect(await next(100)).toBe(300);
      await store.write(async (tx) => finish(tx, (await tx.executionGet("leased"))!, leased, E.succeeded));
      expect(await next(100)).toBe(500);
      expect(await next(500)).toBeNull();
    });
  });

  describe("lists", () => {
    /** 15 executions over tasks a, b, c and five states; returns their seqs by "task/state". */
    async function mixed(): Promise<{ all: number[]; by: Map<string, number[]> }> {
      const all: number[] = [];
      const by = new Map<string, number[]>();
      await store.write(async (tx) => {
        for (let i = 0; i < 15; i++) {
          const task = ["a", "b", "c"][i % 3]!;
          const state = [E.pending, E.running, E.succeeded, E.failed, E.cancelled][i % 5]!;
          // Those that stay PENDING come due later, so that leasing passes them over.
          const record = await insert(tx, `e${i}`, task, { nextAttemptAt: state === E.pending ? 1 : 0 });
          if (state === E.running || state === E.succeeded || state === E.failed) {
            const attemptId = await start(tx, record);
            if (state !== E.running) await finish(tx, record, attemptId, state);
          } else if (state === E.cancelled) {
            expect(await tx.executionFinish({ seq: record.seq, task, from: "open", state, finishedAt: 0 })).toBe(true);
          }
          all.unshift(record.seq);
          for (const key of [task, `/${state}`, `${task}/${state}`]) by.set(key, [record.seq, ...(by.get(key) ?? [])]);
        }
      });
      return { all, by };
    }

    it("executionList lists newest first, and beforeSeq pages through every execution once, in full pages", async () => {
      const { all } = await mixed();
      const first = await store.read(async (tx) => tx.executionList({ limit: 4 }));
      expect(seqs(first.records)).toEqual(all.slice(0, 4));
      expect(first.nextBeforeSeq).toBe(all[3]);
      const listed = await pages(store, {}, 4);
      expect(listed.map((p) => p.length)).toEqual([4, 4, 4, 3]);
      expect(seqs(listed.flat())).toEqual(all);
      // The last page says so, even when it is full.
      expect(await store.read(async (tx) => tx.executionList({ beforeSeq: all[11], limit: 3 }))).toMatchObject({ nextBeforeSeq: null });
      expect(await store.read(async (tx) => tx.executionList({ beforeSeq: all[14], limit: 3 }))).toEqual({ records: [], nextBeforeSeq: null });
    });

    it("executionList filters by task, by state, and by both, newest first, and pages each filter to its end", async () => {
      const { by } = await mixed();
      for (const task of ["a", "b", "c"]) expect(seqs((await pages(store, { task }, 2)).flat())).toEqual(by.get(task));
      for (const state of [E.pending, E.running, E.succeeded, E.failed, E.cancelled]) {
        expect(seqs((await pages(store, { state }, 2)).flat())).toEqual(by.get(`/${state}`));
        for (const task of ["a", "b", "c"]) expect(seqs((await pages(store, { task, state }, 1)).flat())).toEqual(by.get(`${task}/${state}`) ?? []);
      }
      expect(await store.read(async (tx) => tx.executionList({ task: "none", limit: 5 }))).toEqual({ records: [], nextBeforeSeq: null });
      expect(await store.read(async (tx) => tx.executionList({ state: E.timedOut, limit: 5 }))).toEqual({ records: [], nextBeforeSeq: null });
    });

    it("a list of SUCCEEDED may come back short while nextBeforeSeq says more follow, and paging still returns every match once, newest first", async () => {
      // Successes, then more than a window of other executions, then successes again.
      const succeeded: { seq: number; task: string }[] = [];
      await store.write(async (tx) => {
        const group = async (from: number) => {
          for (let i = from; i < from + 30; i++) {
            const record = await insert(tx, `s${i}`, i % 2 === 0 ? "a" : "b");
            if (i % 3 === 0) {
              expect(await tx.executionFinish({ seq: record.seq, task: record.task, from: "open", state: E.succeeded, finishedAt: 0 })).toBe(true);
              succeeded.unshift(record);
            }
          }
        };
        await group(0);
        await tx.executionInsert(Array.from({ length: UNINDEXED_LIST_WINDOW }, (_, i) => newExecution(`filler${i}`, "filler")));
        await group(30);
      });
      const listed = await pages(store, { state: E.succeeded }, 4);
      expect(seqs(listed.flat())).toEqual(seqs(succeeded));
      expect(listed.every((page) => page.length <= 4)).toBe(true);
      // What makes this test: a short page that is not the last.
      expect(listed.slice(0, -1).some((page) => page.length < 4)).toBe(true);
      const ofTask = (await pages(store, { task: "a", state: E.succeeded }, 3)).flat();
      expect(seqs(ofTask)).toEqual(seqs(succeeded.filter((r) => r.task === "a")));
    });
  });

  describe("lists by label", () => {
    /** 30 executions with labels env (prod or test) and, for some, team, in every state; the seqs of each filter, newest first. */
    async function labelled() {
      const by = new Map<string, number[]>();
      await store.write(async (tx) => {
        for (let i = 0; i < 30; i++) {
          const labels: Record<string, string> = { env: i % 2 === 0 ? "prod" : "test" };
          if (i % 3 === 0) labels.team = "pay";
          if (i % 5 === 0) labels.x = "";
          const task = i % 4 === 0 ? "a" : "b";
          const record = await insert(tx, `l${i}`, task, { labels, nextAttemptAt: 1 });
          const state = i % 6 === 0 ? E.cancelled : E.pending;
          if (state === E.cancelled) expect(await tx.executionFinish({ seq: record.seq, task, from: "open", state, finishedAt: 0 })).toBe(true);
          const keys = [`env=${labels.env}`, ...(labels.team ? [`env=${labels.env},team=pay`, `team=pay`, `team=pay/${task}`, `team=pay/${task}/${state}`] : []), ...(labels.x === "" ? ["x="] : [])];
          keys.push(`env=${labels.env}/${state}`);
          for (const key of keys) by.set(key, [record.seq, ...(by.get(key) ?? [])]);
        }
        await insert(tx, "unlabelled", "a", { nextAttemptAt: 1 });
      });
      return by;
    }

    it("executionList by labels lists only executions carrying every label with the same value, newest first, with task and state too, and pages each filter to its end", async () => {
      const by = await labelled();
      const list = async (filter: Parameters<typeof pages>[1], limit: number) => seqs((await pages(store, filter, limit)).flat());
      expect(await list({ labels: { env: "prod" } }, 4)).toEqual(by.get("env=prod"));
      expect(await list({ labels: { env: "test" } }, 100)).toEqual(by.get("env=test"));
      expect(await list({ labels: { team: "pay" } }, 2)).toEqual(by.get("team=pay"));
      expect(await list({ labels: { team: "pay", env: "prod" } }, 1)).toEqual(by.get("env=prod,team=pay"));
      expect(await list({ labels: { x: "" } }, 3)).toEqual(by.get("x="));
      for (const task of ["a", "b"]) {
        expect(await list({ labels: { team: "pay" }, task }, 2)).toEqual(by.get(`team=pay/${task}`) ?? []);
        for (const state of [E.pending, E.cancelled]) expect(await list({ labels: { team: "pay" }, task, state }, 2)).toEqual(by.get(`team=pay/${task}/${state}`) ?? []);
      }
      expect(await list({ labels: { env: "prod" }, state: E.cancelled }, 2)).toEqual(by.get(`env=prod/${E.cancelled}`));
      expect(await list({ labels: { env: "staging" } }, 5)).toEqual([]);
      expect(await list({ labels: { env: "prod", team: "ops" } }, 5)).toEqual([]);
      // A label's value is matched whole: no prefix matches.
      expect(await list({ labels: { env: "pro" } }, 5)).toEqual([]);
    });

    it("a list by label walks at most a window of its first label's executions per page: a page may come back short while more follow, and paging returns every match once", async () => {
      const wanted: number[] = [];
      await store.write(async (tx) => {
        const group = async (from: number) => {
          for (let i = from; i < from + 10; i++) wanted.unshift((await insert(tx, `w${i}`, "t", { labels: { env: "prod", team: "pay" } })).seq);
        };
        await group(0);
        await tx.executionInsert(Array.from({ length: LABEL_LIST_WINDOW }, (_, i) => newExecution(`other${i}`, "t", { labels: { env: "prod", team: "ops" } })));
        await group(10);
      });
      // "env" comes first in key order: its index is walked, and team is checked on each execution.
      const listed = await pages(store, { labels: { team: "pay", env: "prod" } }, 4);
      expect(seqs(listed.flat())).toEqual(wanted);
      expect(listed.slice(0, -1).some((page) => page.length < 4)).toBe(true);
    });

    it("the label index holds one row per label of each labelled execution, none for the unlabelled, and retention deletes an execution's rows with it", async () => {
      const made = await store.write(async (tx) => {
        const old = await insert(tx, "old", "t", { createdAt: 0, labels: { env: "prod", team: "pay" } });
        await finish(tx, old, await start(tx, old), E.failed, 100);
        const kept = await insert(tx, "kept", "t", { createdAt: 0, labels: { env: "prod" }, nextAttemptAt: 1e12 });
        await insert(tx, "plain", "t", { createdAt: 0, nextAttemptAt: 1e12 });
        return { old, kept };
      });
      expect(await opened.committedLabels()).toEqual([`env=prod ${made.kept.seq}`, `env=prod ${made.old.seq}`, `team=pay ${made.old.seq}`].sort());
      expect(await store.write(async (tx) => tx.executionDeleteFinished({ finishedBefore: 1000, fromSeq: 0, limit: 100 }))).toEqual({ deleted: 1, nextSeq: null });
      expect(await opened.committedLabels()).toEqual([`env=prod ${made.kept.seq}`]);
      expect(seqs((await pages(store, { labels: { env: "prod" } }, 10)).flat())).toEqual([made.kept.seq]);
    });
  });

  describe("counts", () => {
    it("executionCountByTaskAndState equals a count of the rows after every kind of change, a rolled-back one included", async () => {
      const agree = async () => {
        const kept = await store.read(keptCounts);
        expect(kept).toEqual(countRows(await opened.committedExecutions()));
        // And the rows as the store lists them.
        expect(kept).toEqual(countRows((await pages(store, {}, 100)).flat()));
        return kept;
      };
      expect(await agree()).toEqual({});
      await store.write(async (tx) => {
        for (let i = 0; i < 6; i++) await insert(tx, `e${i}`, i < 4 ? "a" : "b", { nextAttemptAt: i === 3 ? 10_000 : 0 });
      });
      await agree();
      const leased = await store.write(async (tx) => ({ a1: (await lease(tx, "a"))!, a2: (await lease(tx, "a"))!, b1: (await lease(tx, "b"))! }));
      await agree();
      await store.write(async (tx) => {
        await finish(tx, leased.a1.due, leased.a1.attemptId, E.succeeded);
        expect(await tx.attemptFinish({ id: leased.a2.attemptId, leaseSecret: SECRET, state: A.failed, finishedAt: 0, failure: null, retryPolicy: null, decision: null })).toBe(true);
        expect(await tx.executionSetRetry({ seq: leased.a2.due.seq, task: "a", nextAttemptAt: 5, runFailures: 0 })).toBe(true);
        const pendingB = (await tx.executionList({ task: "b", state: E.pending, limit: 1 })).records[0]!;
        expect(await tx.executionFinish({ seq: pendingB.seq, task: "b", from: "open", state: E.cancelled, finishedAt: 0 })).toBe(true);
      });
      const before = await agree();
      await expect(
        store.write(async (tx) => {
          await finish(tx, leased.b1.due, leased.b1.attemptId, E.failed);
          await insert(tx, "gone", "c");
          throw new Error("planned");
        }),
      ).rejects.toThrow("planned");
      expect(await agree()).toEqual(before);
      expect(await store.write(async (tx) => tx.attemptReturn({ id: leased.b1.attemptId, leaseSecret: SECRET }))).toBe(true);
      await agree();
      const retried = (await store.write(async (tx) => lease(tx, "a", { at: 5 })))!;
      await store.write(async (tx) => finish(tx, retried.due, retried.attemptId, E.timedOut, 6));
      await agree();
      expect(await store.write(async (tx) => tx.executionDeleteFinished({ finishedBefore: 1, fromSeq: 0, limit: 100 }))).toMatchObject({ deleted: 2 });
      expect(await agree()).toEqual({ [`a/${E.pending}`]: 2, [`a/${E.timedOut}`]: 1, [`b/${E.pending}`]: 1 });
    });

    it("executionCountPending splits PENDING executions into due at now and delayed", async () => {
      await store.write(async (tx) => {
        for (let i = 0; i < 3; i++) await insert(tx, `due${i}`, i === 0 ? "t" : "u", { nextAttemptAt: 100 });
        for (let i = 0; i < 2; i++) await insert(tx, `later${i}`, "t", { nextAttemptAt: 5000 });
        await start(tx, await insert(tx, "running", "v", { nextAttemptAt: 0 }));
      });
      const pending = (now: number) => store.read(async (tx) => tx.executionCountPending(now));
      expect(await pending(1000)).toEqual({ due: 3, delayed: 2 });
      expect(await pending(5000)).toEqual({ due: 5, delayed: 0 });
      expect(await pending(99)).toEqual({ due: 0, delayed: 5 });
    });
  });

  describe("commits, rollbacks and effects", () => {
    it("a change that throws after writing leaves no trace, and its afterCommit effects never run; a change beside it commits", async () => {
      const record = await store.write(async (tx) => insert(tx, "kept", "t"));
      const countsBefore = await store.read(keptCounts);
      const effects: string[] = [];
      const failed = store.write(async (tx) => {
        tx.afterCommit(() => effects.push("failed"));
        await insert(tx, "gone", "t");
        await start(tx, record);
        await tx.taskUpsert({ name: "t", retryPolicy: null, timeoutMs: 5, retryBudget: null, workerId: "w", declaredAt: 1 });
        await tx.workerSeen({ workerId: "w", tasks: ["t"], at: 1 });
        throw new Error("planned");
      });
      const beside = store.write(async (tx) => {
        tx.afterCommit(() => effects.push("beside"));
        await insert(tx, "beside", "t", { nextAttemptAt: 1e12 });
      });
      await expect(failed).rejects.toThrow("planned");
      await beside;
      expect(effects).toEqual(["beside"]);
      expect(await committedIds()).toEqual(["kept", "beside"]);
      await store.read(async (tx) => {
        expect(await tx.executionGet("gone")).toBeUndefined();
        expect(await tx.executionGet("kept")).toEqual(record);
        expect(await tx.attemptList(record.seq)).toEqual([]);
        expect(await tx.taskGet("t")).toBeUndefined();
        expect(await tx.workerList({ seenSince: 0, limit: 10 })).toEqual([]);
        expect(await keptCounts(tx)).toEqual({ ...countsBefore, [`t/${E.pending}`]: 2 });
      });
    });

    it("afterCommit effects run after the change's body, once it has committed, where another connection sees it", async () => {
      const events: string[] = [];
      let seenByEffect: Promise<string[]> | undefined;
      const value = await store.write(async (tx) => {
        await insert(tx, "a", "t");
        tx.afterCommit(() => {
          events.push("effect");
          seenByEffect = committedIds();
        });
        await sleep(5);
        events.push("body done");
        return "value";
      });
      expect(value).toBe("value");
      expect(events).toEqual(["body done", "effect"]);
      expect(await seenByEffect).toEqual(["a"]);
    });

    it("a write settles only once its change has committed: another connection sees it when the promise resolves", async () => {
      const writes = ["a", "b", "c"].map((id) => store.write(async (tx) => insert(tx, id, "t")).then(() => committedIds()));
      const seen = await Promise.all(writes);
      seen.forEach((ids, i) => expect(ids).toEqual(expect.arrayContaining([["a", "b", "c"][i]])));
      // A rejected change settles after its rollback: nothing of it is seen.
      const failed = await store
        .write(async (tx) => {
          await insert(tx, "y", "t");
          throw new Error("planned");
        })
        .catch(() => committedIds());
      expect(failed).not.toContain("y");
    });

    it("a read answers only with what is committed by the time it settles", async () => {
      const written = store.write(async (tx) => insert(tx, "a", "t"));
      const read = store.read(async (tx) => (await tx.executionGet("a"))?.id).then(async (id) => ({ id, committed: await committedIds() }));
      const { id, committed } = await read;
      if (id !== undefined) expect(committed).toContain("a");
      await written;
      expect(await store.read(async (tx) => (await tx.executionGet("a"))?.id)).toBe("a");
    });

    it("the effects of a change run once, for its run that committed, even when it ran again (PostgreSQL, after a deadlock)", async () => {
      const runs: Record<string, number> = { xy: 0, yx: 0 };
      const effects: string[] = [];
      const firstHeld = new Set<string>();
      let bothHeld!: () => void;
      const both = new Promise<void>((resolve) => (bothHeld = resolve));
      const declare = (tx: Tx, name: string) => tx.taskUpsert({ name, retryPolicy: null, timeoutMs: null, retryBudget: null, workerId: "w", declaredAt: 0 });
      // Each change declares two tasks in the opposite order of the other: where changes run at the
      // same time, each waits for the row the other holds, and the database breaks the deadlock.
      const change = (order: "xy" | "yx") =>
        store.write(async (tx) => {
          const run = ++runs[order]!;
          await declare(tx, order[0]!);
          firstHeld.add(order);
          if (firstHeld.size === 2) bothHeld();
          // Where changes run one at a time, the other change cannot start before this one ends.
          await Promise.race([both, sleep(kind.concurrentChanges ? 5000 : 20)]);
          await declare(tx, order[1]!);
          tx.afterCommit(() => effects.push(`${order} run ${run}`));
          return run;
        });
      const [xy, yx] = await Promise.all([change("xy"), change("yx")]);
      expect(effects.sort()).toEqual([`xy run ${xy}`, `yx run ${yx}`]);
      expect([xy, yx]).toEqual([runs.xy, runs.yx]);
      if (kind.concurrentChanges) expect(runs.xy! + runs.yx!).toBeGreaterThan(2);
      expect(await store.read(async (tx) => [(await tx.taskGet("x"))?.name, (await tx.taskGet("y"))?.name])).toEqual(["x", "y"]);
    });
  });

  describe("retention", () => {
    it("executionDeleteFinished deletes only executions that finished before the cutoff, with their attempts", async () => {
      const made = await store.write(async (tx) => {
        const old = await insert(tx, "old", "t", { createdAt: 0 });
        await finish(tx, old, await start(tx, old), E.failed, 100);
        const oldCancelled = await insert(tx, "old-cancelled", "t", { createdAt: 0 });
        expect(await tx.executionFinish({ seq: oldCancelled.seq, task: "t", from: "open", state: E.cancelled, finishedAt: 999 })).toBe(true);
        const oldPending = await insert(tx, "old-pending", "t", { createdAt: 0, nextAttemptAt: 10_000 });
        const oldRunning = await insert(tx, "old-running", "t", { createdAt: 0 });
        await start(tx, oldRunning);
        const lateFinish = await insert(tx, "late-finish", "t", { createdAt: 0 });
        await finish(tx, lateFinish, await start(tx, lateFinish), E.succeeded, 1000);
        const young = await insert(tx, "young", "t", { createdAt: 2000 });
        return { old, oldCancelled, oldPending, oldRunning, lateFinish, young };
      });
      const step = await store.write(async (tx) => tx.executionDeleteFinished({ finishedBefore: 1000, fromSeq: 0, limit: 100 }));
      expect(step).toEqual({ deleted: 2, nextSeq: null });
      await store.read(async (tx) => {
        expect(await tx.executionGetBySeq(made.old.seq)).toBeUndefined();
        expect(await tx.executionGetBySeq(made.oldCancelled.seq)).toBeUndefined();
        expect(await tx.attemptList(made.old.seq)).toEqual([]);
        for (const kept of [made.oldPending, made.oldRunning, made.lateFinish, made.young]) expect(await tx.executionGetBySeq(kept.seq)).toBeDefined();
        expect(await tx.attemptList(made.lateFinish.seq)).toHaveLength(1);
        expect(await tx.attemptList(made.oldRunning.seq)).toHaveLength(1);
      });
      expect(await committedIds()).toEqual(["old-pending", "old-running", "late-finish", "young"]);
    });

    it("executionDeleteFinished walks at most limit executions per step, says where the next step starts, and stops at the first created at or after the cutoff", async () => {
      await store.write(async (tx) => {
        for (let i = 0; i < 25; i++) {
          // Every fifth stays PENDING (due later, so that leasing passes it over): walked, never deleted.
          const record = await insert(tx, `e${i}`, "t", { createdAt: 1, nextAttemptAt: i % 5 === 4 ? 1e12 : 0 });
          if (i % 5 !== 4) await finish(tx, record, await start(tx, record), E.succeeded, 10);
        }
        const young = await insert(tx, "young", "t", { createdAt: 1000 });
        await finish(tx, young, await start(tx, young), E.succeeded, 1000);
        for (let i = 0; i < 5; i++) {
          const late = await insert(tx, `late${i}`, "t", { createdAt: 5 });
          await finish(tx, late, await start(tx, late), E.succeeded, 10);
        }
      });
      const steps: { deleted: number; nextSeq: number | null }[] = [];
      let fromSeq: number | null = 0;
      while (fromSeq !== null && steps.length < 100) {
        const from: number = fromSeq;
        const step = await store.write(async (tx) => tx.executionDeleteFinished({ finishedBefore: 1000, fromSeq: from, limit: 10 }));
        steps.push(step);
        fromSeq = step.nextSeq;
      }
      // 10 walked, 8 of them deleted, per step; the third step meets "young" and stops there, before the "late" ones.
      expect(steps.map((s) => s.deleted)).toEqual([8, 8, 4]);
      expect(steps[1]!.nextSeq).toBeGreaterThan(steps[0]!.nextSeq!);
      expect(steps[2]!.nextSeq).toBeNull();
      expect(await committedIds()).toEqual(["e4", "e9", "e14", "e19", "e24", "young", "late0", "late1", "late2", "late3", "late4"]);
    });
  });

  describe("tasks", () => {
    it("taskGet returns what taskUpsert declared, and undefined for a task never declared", async () => {
      const task = { name: "t", retryPolicy: Buffer.from([1, 2, 3]), timeoutMs: 5000, retryBudget: { perSecond: 2.5, burst: 3 }, workerId: "w1", declaredAt: 10 };
      await store.write(async (tx) => {
        expect(await tx.taskGet("t")).toBeUndefined();
        await tx.taskUpsert(task);
        expect(await tx.taskGet("t")).toEqual(task);
      });
      expect(await store.read(async (tx) => tx.taskGet("t"))).toEqual(task);
      expect(await store.read(async (tx) => tx.taskGet("other"))).toBeUndefined();
      await store.write(async (tx) => tx.taskUpsert({ name: "bare", retryPolicy: null, timeoutMs: null, retryBudget: null, workerId: "w2", declaredAt: 11 }));
      expect(await store.read(async (tx) => tx.taskGet("bare"))).toEqual({ name: "bare", retryPolicy: null, timeoutMs: null, retryBudget: null, workerId: "w2", declaredAt: 11 });
    });

    it("a re-declaration replaces the previous one, and the next change sees it; one that rolls back leaves the previous one", async () => {
      const v1 = { name: "t", retryPolicy: Buffer.from([1]), timeoutMs: 100, retryBudget: null, workerId: "w1", declaredAt: 1 };
      const v2 = { name: "t", retryPolicy: null, timeoutMs: null, retryBudget: null, workerId: "w2", declaredAt: 2 };
      const v3 = { name: "t", retryPolicy: Buffer.from([3]), timeoutMs: 300, retryBudget: null, workerId: "w3", declaredAt: 3 };
      await store.write(async (tx) => tx.taskUpsert(v1));
      // Read once, so that a store that keeps declarations in memory has this one.
      expect(await store.write(async (tx) => tx.taskGet("t"))).toEqual(v1);
      const declared = store.write(async (tx) => tx.taskUpsert(v2));
      // One writer: launched together with the declaration, it runs after it.
      // Concurrent changes (PostgreSQL) are ordered only by waiting for the first.
      const seenNext = kind.concurrentChanges ? declared.then(() => store.write(async (tx) => tx.taskGet("t"))) : store.write(async (tx) => tx.taskGet("t"));
      await declared;
      expect(await seenNext).toEqual(v2);
      expect(await store.read(async (tx) => tx.taskGet("t"))).toEqual(v2);
      await expect(
        store.write(async (tx) => {
          await tx.taskUpsert(v3);
          expect(await tx.taskGet("t")).toEqual(v3);
          throw new Error("planned");
        }),
      ).rejects.toThrow("planned");
      expect(await store.write(async (tx) => tx.taskGet("t"))).toEqual(v2);
      expect(await store.read(async (tx) => tx.taskGet("t"))).toEqual(v2);
    });
  });

  describe("retry control", () => {
    it("executionRerun re-opens an execution only from the state it was read in: PENDING, due then, its run counted afresh, its failure and end cleared", async () => {
      const record = await store.write(async (tx) => insert(tx, "e", "t"));
      const attemptId = await store.write(async (tx) => start(tx, record, { at: 5 }));
      await store.write(async (tx) => finish(tx, record, attemptId, E.failed, 7));
      expect(await store.write(async (tx) => tx.executionRerun({ seq: record.seq, task: "t", from: E.cancelled, now: 50 }))).toBe(false);
      expect(await store.write(async (tx) => tx.executionRerun({ seq: record.seq, task: "t", from: E.failed, now: 50 }))).toBe(true);
      expect(await store.write(async (tx) => tx.executionRerun({ seq: record.seq, task: "t", from: E.failed, now: 51 }))).toBe(false);
      const rerun = await store.read(async (tx) => tx.executionGet("e"));
      expect(rerun).toMatchObject({ state: E.pending, nextAttemptAt: 50, finishedAt: null, failure: null, result: null, runFailures: 0, runScheduledAt: 50, attemptCount: 1 });
      const again = await store.write(async (tx) => lease(tx, "t", { at: 50 }));
      expect(again!.due).toMatchObject({ id: "e", attemptCount: 1 });
      const [ref] = await store.read(async (tx) => tx.attemptGet([again!.attemptId]));
      expect(ref!.execution).toMatchObject({ runFailures: 0, runScheduledAt: 50 });
      expect(await store.read(async (tx) => tx.executionCountByTaskAndState())).toEqual([{ task: "t", state: E.running, count: 1 }]);
    });

    it("executionSetRetry records the run's failures, and attemptFinish the rule that decided, its due time and the time it replaced", async () => {
      const record = await store.write(async (tx) => insert(tx, "e", "t"));
      const attemptId = await store.write(async (tx) => start(tx, record));
      const decision = { rule: 4, retryAt: 900, computedAt: 100 };
      await store.write(async (tx) => {
        expect(await tx.attemptFinish({ id: attemptId, leaseSecret: SECRET, state: A.failed, finishedAt: 10, failure: null, retryPolicy: null, decision })).toBe(true);
        expect(await tx.executionSetRetry({ seq: record.seq, task: "t", nextAttemptAt: 900, runFailures: 3 })).toBe(true);
      });
      expect((await store.read(async (tx) => tx.attemptList(record.seq)))[0]!.decision).toEqual(decision);
      expect(await store.read(async (tx) => tx.executionGet("e"))).toMatchObject({ state: E.pending, nextAttemptAt: 900, runFailures: 3 });
    });

    it("a retry bucket is absent until it is put, then reads back as put, its fractional time and booked runs included; declaring a task with a budget creates it full", async () => {
      expect(await store.read(async (tx) => tx.retryBucketGet("t"))).toBeUndefined();
      await store.write(async (tx) => tx.taskUpsert({ name: "t", retryPolicy: null, timeoutMs: null, retryBudget: { perSecond: 1, burst: 2 }, workerId: "w", declaredAt: 0 }));
      expect(await store.read(async (tx) => tx.retryBucketGet("t"))).toBeUndefined();
      const booked = { tokens: 0.25, at: 1234.5, step: 1000 / 3, runs: [[1567.8333333333333, 3], [9000, 1]] as [number, number][] };
      await store.write(async (tx) => tx.retryBucketPut("t", booked));
      expect(await store.read(async (tx) => tx.retryBucketGet("t"))).toEqual(booked);
      await store.write(async (tx) => tx.retryBucketPut("t", { tokens: 1.5, at: 2000, step: 500, runs: [] }));
      expect(await store.read(async (tx) => tx.retryBucketGet("t"))).toEqual({ tokens: 1.5, at: 2000, step: 0, runs: [] });
    });

    it("failure counts add up by task and type from the minute given, a change that rolls back counts nothing, and forgetting drops older minutes", async () => {
      await store.write(async (tx) => {
        tx.failureCounted({ task: "t", type: "A", at: 60_000, retried: true });
        tx.failureCounted({ task: "t", type: "A", at: 125_000, retried: false });
        tx.failureCounted({ task: "u", type: "B", at: 125_000, retried: true });
      });
      await expect(
        store.write(async (tx) => {
          tx.failureCounted({ task: "t", type: "A", at: 125_000, retried: true });
          throw new Error("planned");
        }),
      ).rejects.toThrow("planned");
      const sorted = (rows: { task: string; type: string; failures: number; retries: number }[]) => [...rows].sort((a, b) => (a.task + a.type < b.task + b.type ? -1 : 1));
      expect(sorted(await store.read(async (tx) => tx.failureStats(0)))).toEqual([
        { task: "t", type: "A", failures: 2, retries: 1 },
        { task: "u", type: "B", failures: 1, retries: 1 },
      ]);
      expect(sorted(await store.read(async (tx) => tx.failureStats(120_000)))).toEqual([
        { task: "t", type: "A", failures: 1, retries: 0 },
        { task: "u", type: "B", failures: 1, retries: 1 },
      ]);
      await store.write(async (tx) => tx.failureStatsForget(120_000));
      expect(sorted(await store.read(async (tx) => tx.failureStats(0)))).toEqual([
        { task: "t", type: "A", failures: 1, retries: 0 },
        { task: "u", type: "B", failures: 1, retries: 1 },
      ]);
    });

    it("changes that take from one retry bucket at the same time take turns: neither overwrites what the other took", async () => {
      await store.write(async (tx) => {
        await tx.taskUpsert({ name: "t", retryPolicy: null, timeoutMs: null, retryBudget: { perSecond: 1, burst: 100 }, workerId: "w", declaredAt: 0 });
        await tx.retryBucketPut("t", { tokens: 100, at: 0, step: 1000, runs: [] });
      });
      // Each change reads the bucket, waits, and writes back one token less.
      await Promise.all(Array.from({ length: 8 }, () => store.write(async (tx) => {
        const bucket = (await tx.retryBucketGet("t"))!;
        await sleep(kind.concurrentChanges ? 20 : 0);
        await tx.retryBucketPut("t", { ...bucket, tokens: bucket.tokens - 1 });
      })));
      expect((await store.read(async (tx) => tx.retryBucketGet("t")))!.tokens).toBe(92);
    });
  });

  describe("workers", () => {
    async function seen() {
      await store.write(async (tx) => {
        await tx.workerSeen({ workerId: "w1", tasks: ["b", "a"], at: 100 });
        await tx.workerSeen({ workerId: "w2", tasks: ["b"], at: 200 });
        await tx.workerSeen({ workerId: "w1", tasks: ["a"], at: 150 });
        await tx.workerSeen({ workerId: "w3", tasks: ["c"], at: 50 });
        // Seen earlier than already recorded: the later time stays.
        await tx.workerSeen({ workerId: "w1", tasks: ["a"], at: 120 });
      });
    }
    const list = (params: { task?: string; seenSince: number; limit: number }) => store.read(async (tx) => tx.workerList(params));

    it("workerSeen keeps each worker's tasks with the latest time seen; workerList lists workers seen since, most recent first, at most limit, tasks sorted", async () => {
      await seen();
      expect(await list({ seenSince: 0, limit: 10 })).toEqual([
        { id: "w2", tasks: ["b"], lastSeenAt: 200 },
        { id: "w1", tasks: ["a", "b"], lastSeenAt: 150 },
        { id: "w3", tasks: ["c"], lastSeenAt: 50 },
      ]);
      expect(await list({ seenSince: 100, limit: 10 })).toEqual([
        { id: "w2", tasks: ["b"], lastSeenAt: 200 },
        { id: "w1", tasks: ["a", "b"], lastSeenAt: 150 },
      ]);
      // A task not seen since is left out of the worker's tasks.
      expect(await list({ seenSince: 101, limit: 10 })).toEqual([
        { id: "w2", tasks: ["b"], lastSeenAt: 200 },
        { id: "w1", tasks: ["a"], lastSeenAt: 150 },
      ]);
      expect(await list({ seenSince: 0, limit: 2 })).toEqual([
        { id: "w2", tasks: ["b"], lastSeenAt: 200 },
        { id: "w1", tasks: ["a", "b"], lastSeenAt: 150 },
      ]);
      expect(await list({ seenSince: 201, limit: 10 })).toEqual([]);
    });

    it("workerList with a task lists only the workers of that task, each with all its tasks seen since", async () => {
      await seen();
      expect(await list({ task: "b", seenSince: 0, limit: 10 })).toEqual([
        { id: "w2", tasks: ["b"], lastSeenAt: 200 },
        { id: "w1", tasks: ["a", "b"], lastSeenAt: 150 },
      ]);
      expect(await list({ task: "a", seenSince: 0, limit: 10 })).toEqual([{ id: "w1", tasks: ["a", "b"], lastSeenAt: 150 }]);
      expect(await list({ task: "b", seenSince: 0, limit: 1 })).toEqual([{ id: "w2", tasks: ["b"], lastSeenAt: 200 }]);
      expect(await list({ task: "c", seenSince: 60, limit: 10 })).toEqual([]);
      expect(await list({ task: "none", seenSince: 0, limit: 10 })).toEqual([]);
    });

    it("workerForget forgets every worker's task last seen before the cutoff, and nothing seen at or after it", async () => {
      await seen();
      await store.write(async (tx) => tx.workerForget(150));
      expect(await list({ seenSince: 0, limit: 10 })).toEqual([
        { id: "w2", tasks: ["b"], lastSeenAt: 200 },
        { id: "w1", tasks: ["a"], lastSeenAt: 150 },
      ]);
      expect(await list({ task: "c", seenSince: 0, limit: 10 })).toEqual([]);
    });
  });
});
