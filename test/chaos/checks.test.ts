// The checks the cluster chaos run adds must catch what they look for, on
// rows and streams made up here (no store, no server).
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AttemptState, ExecutionSchema, ExecutionState } from "@reprise/wire";
import type { Execution } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../../server/store/store.js";
import { checkRows } from "./invariants.js";
import type { AttemptRow, ChaosRows, ExecutionRow } from "./invariants.js";
import type { RecordedWatch } from "./watches.js";

const execution = (id: string, state: number, attempts: number, finishedAt: number | null, key: string | null = `key-${id}`): ExecutionRow => ({
  seq: Number(id.replace(/\D/g, "")),
  id,
  task: "at_most_once",
  state,
  attempt_count: attempts,
  finished_at: finishedAt,
  idempotency_key: key,
});

const attempt = (seq: number, state: number, started: number, finished: number | null, leaseExpires = started + 1000): AttemptRow => ({
  execution_seq: seq,
  number: 1,
  state,
  worker_id: "w",
  started_at: started,
  scheduled_at: started,
  finished_at: finished,
  lease_expires_at: leaseExpires,
  timeout_at: null,
  retry_policy: null,
});

const snapshot = (id: string, state: ExecutionState, attempts: [AttemptState, number | null][], finishedAt?: number): Execution =>
  create(ExecutionSchema, {
    id,
    state,
    attempts: attempts.map(([attemptState, finished], i) => ({ number: i + 1, state: attemptState, finishedAt: finished === null ? undefined : timestampFromMs(finished) })),
    finishedAt: finishedAt === undefined ? undefined : timestampFromMs(finishedAt),
  });

const seen = (watches: RecordedWatch[] = [], submitted = new Map<string, string | null>()) => ({ acknowledged: new Set<string>(), waited: new Map(), submitted, watches });

describe("chaos checks for clusters", () => {
  test("a clean history, its counts, its submits and its watches have no violations", () => {
    const rows: ChaosRows = {
      executions: [execution("e1", E.succeeded, 1, 50)],
      attempts: [attempt(1, A.succeeded, 0, 50)],
      counts: [{ task: "at_most_once", state: E.succeeded, count: 1 }],
    };
    const watch: RecordedWatch = {
      id: "e1",
      streams: [
        { node: 1, snapshots: [snapshot("e1", ExecutionState.PENDING, []), snapshot("e1", ExecutionState.RUNNING, [[AttemptState.RUNNING, null]])], end: "UNAVAILABLE" },
        { node: 2, snapshots: [snapshot("e1", ExecutionState.SUCCEEDED, [[AttemptState.SUCCEEDED, 50]], 50)], end: "ok" },
      ],
    };
    expect(checkRows(rows, seen([watch], new Map([["key-e1", "e1"]]))).violations).toEqual([]);
  });

  test("they catch an early abandonment, a lease left running, two ends, a double submit, miscounts and watches that go back, end twice or never", () => {
    const rows: ChaosRows = {
      executions: [
        execution("e1", E.abandoned, 1, 500),
        execution("e2", E.cancelled, 1, 900),
        execution("e3", E.failed, 1, 700),
        execution("e4", E.succeeded, 1, 50, "key-e9"),
        execution("e5", E.succeeded, 1, 50, null),
      ],
      attempts: [attempt(1, A.abandoned, 0, 500), attempt(2, A.running, 0, null), attempt(3, A.failed, 0, 600), attempt(4, A.succeeded, 0, 50), attempt(5, A.succeeded, 0, 50)],
      counts: [{ task: "at_most_once", state: E.succeeded, count: 3 }],
    };
    const backwards: RecordedWatch = {
      id: "e3",
      streams: [
        {
          node: 0,
          snapshots: [
            snapshot("e3", ExecutionState.RUNNING, [[AttemptState.RUNNING, null]]),
            snapshot("e3", ExecutionState.PENDING, [[AttemptState.FAILED, 600]]),
            snapshot("e3", ExecutionState.PENDING, []),
            snapshot("e3", ExecutionState.FAILED, [[AttemptState.FAILED, 700]], 700),
          ],
          end: "ok",
        },
      ],
    };
    const twice: RecordedWatch = {
      id: "e4",
      streams: [
        { node: 0, snapshots: [snapshot("e4", ExecutionState.SUCCEEDED, [[AttemptState.SUCCEEDED, 50]], 50)], end: "INTERNAL" },
        { node: 1, snapshots: [snapshot("e4", ExecutionState.SUCCEEDED, [[AttemptState.SUCCEEDED, 50]], 50)], end: "ok" },
      ],
    };
    const never: RecordedWatch = { id: "e5", streams: [{ node: 2, snapshots: [snapshot("e5", ExecutionState.PENDING, [])], end: "ok" }, { node: 0, snapshots: [], end: "open" }] };
    const text = checkRows(rows, seen([backwards, twice, never], new Map([["key-e1", "e1"], ["key-e2", "e2"], ["key-e3", "e3"], ["key-e9", "e8"]]))).violations.join("\n");
    expect(text).toContain("at_most_once e1: attempt 1 (worker w) abandoned at 500, before its lease ran out at 1000");
    expect(text).toContain("at_most_once e2: ended CANCELLED with an attempt still RUNNING");
    expect(text).toContain("at_most_once e3: ended at 700 but its last attempt at 600");
    expect(text).toContain("submit key-e9 was acknowledged as e8, but the database holds e4 under its key");
    expect(text).toContain("at_most_once e5: no submit asked for it");
    expect(text).toContain("execution counts: at_most_once SUCCEEDED counted 3, but 2 rows");
    expect(text).toContain("execution counts: at_most_once FAILED counted 0, but 1 rows");
    expect(text).toContain("watch of e3 (streams on nodes 0:ok): went back from PENDING with 1 attempts to PENDING with 0");
    expect(text).toContain("watch of e3 (streams on nodes 0:ok): attempt 1 ended FAILED at 600, then showed nothing");
    expect(text).toContain("watch of e3 (streams on nodes 0:ok): attempt 1 ended FAILED at 600, then showed FAILED at 700");
    expect(text).toContain("watch of e4 (streams on nodes 0:INTERNAL 1:ok): saw the terminal state 2 times");
    expect(text).toContain("watch of e5 (streams on nodes 2:ok 0:open): saw the terminal state 0 times");
    expect(text).toContain("watch of e5 (streams on nodes 2:ok 0:open): a stream on node 2 ended without the terminal state");
  });

  test("an undelivered lease undone is not a watch going back", () => {
    const rows: ChaosRows = { executions: [execution("e1", E.succeeded, 1, 50)], attempts: [attempt(1, A.succeeded, 10, 50)] };
    const watch: RecordedWatch = {
      id: "e1",
      streams: [
        {
          node: 0,
          snapshots: [
            snapshot("e1", ExecutionState.RUNNING, [[AttemptState.RUNNING, null]]),
            snapshot("e1", ExecutionState.PENDING, []),
            snapshot("e1", ExecutionState.SUCCEEDED, [[AttemptState.SUCCEEDED, 50]], 50),
          ],
          end: "ok",
        },
      ],
    };
    expect(checkRows(rows, seen([watch], new Map([["key-e1", "e1"]]))).violations).toEqual([]);
  });
});
