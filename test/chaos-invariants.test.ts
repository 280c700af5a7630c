// The chaos checks themselves must catch what they look for.
import { join } from "node:path";
import Database from "better-sqlite3";
import { toBinary, create } from "@bufbuild/protobuf";
import { ExecutionState, RetryPolicySchema } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { SqliteStore } from "../server/store/sqlite/sqlite-store.js";
import { checkInvariants } from "./chaos/invariants.js";
import { seconds, tempDir } from "./helpers.js";

async function database(): Promise<string> {
  const path = join(tempDir(), "broken.db");
  await new SqliteStore({ path }).close();
  return path;
}

function insert(path: string, task: string, state: number, attempts: { state: number; started: number; finished: number | null; scheduled?: number; leaseExpires?: number; policy?: Uint8Array }[]) {
  const db = new Database(path);
  try {
    const { seq } = db
      .prepare("INSERT INTO executions (id, task, state, arguments, arguments_type, created_at, labels, attempt_count) VALUES (?, ?, ?, x'', '', 0, '{}', ?) RETURNING seq")
      .get(`${task}-${state}-${attempts.length}`, task, state, attempts.length) as { seq: number };
    attempts.forEach((a, i) =>
      db
        .prepare(
          "INSERT INTO attempts (execution_seq, number, state, worker_id, scheduled_at, started_at, finished_at, lease_secret, lease_ms, lease_expires_at, retry_policy) VALUES (?, ?, ?, 'w', ?, ?, ?, x'00', 1000, ?, ?)",
        )
        .run(seq, i + 1, a.state, a.scheduled ?? a.started, a.started, a.finished, a.leaseExpires ?? a.started + 1000, a.policy ? Buffer.from(a.policy) : null),
    );
  } finally {
    db.close();
  }
}

const policy = (limit: number, min: number, max: number) => toBinary(RetryPolicySchema, create(RetryPolicySchema, { limit, backoffMin: seconds(min), backoffMax: seconds(max) }));

describe("chaos invariants", () => {
  test("a clean history has no violations", async () => {
    const path = await database();
    insert(path, "limited", ExecutionState.SUCCEEDED, [
      { state: 3, started: 0, finished: 10, policy: policy(3, 0.05, 0.2) },
      { state: 2, started: 60, scheduled: 60, finished: 70 },
    ]);
    expect(checkInvariants(path, { acknowledged: new Set(["limited-3-2"]), waited: new Map([["limited-3-2", ExecutionState.SUCCEEDED]]) }).violations).toEqual([]);
  });

  test("the checks catch an at-most-once task run twice, overlapping attempts, a wrong delay, a stale outcome, a lost execution and a waiter that disagrees", async () => {
    const path = await database();
    insert(path, "at_most_once", ExecutionState.FAILED, [
      { state: 4, started: 0, finished: 1000 },
      { state: 3, started: 1000, finished: 1010 },
    ]);
    insert(path, "limited", ExecutionState.SUCCEEDED, [
      { state: 3, started: 0, finished: 100, policy: policy(3, 0.05, 0.2) },
      { state: 2, started: 50, scheduled: 50, finished: 5000, leaseExpires: 1050 },
    ]);
    insert(path, "unlimited", ExecutionState.PENDING, []);
    const { violations } = checkInvariants(path, {
      acknowledged: new Set(["never-stored"]),
      waited: new Map([["limited-3-2", ExecutionState.FAILED]]),
    });
    const text = violations.join("\n");
    expect(text).toContain("acknowledged execution never-stored is missing");
    expect(text).toContain("at_most_once at_most_once-4-2: 2 attempts, more than 1");
    expect(text).toContain("attempt 2 started before attempt 1 ended");
    expect(text).toContain("not as its policy says");
    expect(text).toContain("accepted an outcome after its lease or timeout ran out");
    expect(text).toContain("still PENDING after the drain");
    expect(text).toContain("followed attempt 1, whose fate no policy decided");
    expect(text).toContain("waiter of limited-3-2 saw FAILED but the database says SUCCEEDED");
  });
});
