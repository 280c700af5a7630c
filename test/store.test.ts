// The SQLite store's group commit and guards, below the services.
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, test } from "vitest";
import { SqliteStore } from "../server/store/sqlite/sqlite-store.js";
import { ExecutionStateNumber } from "../server/store/store.js";
import { tempDir } from "./helpers.js";

const newExecution = (id: string) => ({
  id,
  task: "t",
  state: ExecutionStateNumber.pending,
  arguments: { data: new Uint8Array([1]), contentType: "" },
  retryPolicy: null,
  nextAttemptAt: 0,
  createdAt: 0,
  idempotencyKey: null,
  labels: {},
});

describe("group commit", () => {
  test("writes that arrive in one event-loop turn share one transaction", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      // Launched in one turn, none awaited before the next is launched.
      const writes = Array.from({ length: 100 }, (_, i) => store.write(async (tx) => tx.executionInsert([newExecution(`e${i}`)])));
      expect(store.commits).toBe(0);
      const records = await Promise.all(writes);
      expect(store.commits).toBe(1);
      expect(new Set(records.map(([r]) => r?.seq)).size).toBe(100);
      await store.write(async (tx) => tx.executionInsert([newExecution("next-turn")]));
      expect(store.commits).toBe(2);
    } finally {
      await store.close();
    }
  });

  test("a change that throws rolls back alone; the rest of its batch commits", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    try {
      const a = store.write(async (tx) => tx.executionInsert([newExecution("a")]));
      const b = store.write(async (tx) => {
        await tx.executionInsert([newExecution("b")]);
        throw new Error("boom");
      });
      const c = store.write(async (tx) => tx.executionInsert([newExecution("c")]));
      // The failed change is told at once, without waiting for the batch.
      await expect(b).rejects.toThrow("boom");
      expect(store.commits).toBe(0);
      await Promise.all([a, c]);
      expect(store.commits).toBe(1);
    } finally {
      await store.close();
    }
    const reopened = new SqliteStore({ path });
    try {
      const ids = await reopened.read(async (tx) => Promise.all(["a", "b", "c"].map(async (id) => (await tx.executionGet(id))?.id)));
      expect(ids).toEqual(["a", undefined, "c"]);
    } finally {
      await reopened.close();
    }
  });

  test("effects registered with afterCommit run only after the commit", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      const events: string[] = [];
      const written = store.write(async (tx) => {
        await tx.executionInsert([newExecution("a")]);
        tx.afterCommit(() => events.push(`effect after ${store.commits} commits`));
      });
      // A later change of the same batch: the first one has run, its batch has not committed.
      const seenInBatch = store.write(async () => [...events]);
      expect(await seenInBatch).toEqual([]);
      await written;
      expect(events).toEqual(["effect after 1 commits"]);
    } finally {
      await store.close();
    }
  });

  test("effects queued by a change that throws never run; those of the rest of its batch do", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "db") });
    try {
      const events: string[] = [];
      const a = store.write(async (tx) => tx.afterCommit(() => events.push("a")));
      const b = store.write(async (tx) => {
        tx.afterCommit(() => events.push("b"));
        throw new Error("boom");
      });
      const c = store.write(async (tx) => {
        await tx.executionInsert([newExecution("c")]);
        tx.afterCommit(() => events.push("c"));
      });
      await expect(b).rejects.toThrow("boom");
      await Promise.all([a, c]);
      expect(store.commits).toBe(1);
      expect(events).toEqual(["a", "c"]);
    } finally {
      await store.close();
    }
  });

  test("WAL checkpoints run on a thread of their own, not inside the commits that the replies wait for", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    try {
      // The writer's own automatic checkpoint is only a backstop, far above SQLite's default of 1000 pages.
      expect(store.pragma("wal_autocheckpoint")).toBe(4000);
      const pagesInFile = () => statSync(path).size / 4096;
      const before = pagesInFile();
      for (let i = 0; i < 200 && store.checkpoints < 2; i++) {
        await store.write(async (tx) => tx.executionInsert([{ ...newExecution(`e${i}`), arguments: { data: new Uint8Array(2000), contentType: "" } }]));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(store.checkpoints).toBeGreaterThanOrEqual(2);
      // Pages moved from the WAL into the database file while the writer kept committing.
      expect(pagesInFile()).toBeGreaterThan(before);
    } finally {
      await store.close();
    }
  });

  test("a closed store leaves no -wal or -shm file behind: the checkpoint thread closes last and removes them", async () => {
    // Closing the two connections in the wrong order left them behind after a
    // busy spell (the thread still checkpointing): 19 times in 20 with this load.
    for (let i = 0; i < 5; i++) {
      const path = join(tempDir(), "db");
      const store = new SqliteStore({ path });
      for (let batch = 0; batch < 200; batch++) {
        await store.write(async (tx) => {
          for (let j = 0; j < 100; j++) await tx.executionInsert([newExecution(`e${batch}-${j}`)]);
        });
      }
      await store.close();
      expect([existsSync(`${path}-wal`), existsSync(`${path}-shm`)]).toEqual([false, false]);
    }
  });

  test("a retry bucket kept before bookings were remembered keeps its level and position, with nothing booked after it", async () => {
    const path = join(tempDir(), "db");
    const old = new Database(path);
    const dir = "server/store/sqlite/migrations";
    old.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT");
    for (const name of readdirSync(dir).sort().filter((file) => file < "0008")) {
      old.exec(readFileSync(join(dir, name), "utf8"));
      old.prepare("INSERT INTO schema_migrations VALUES (?, ?, 0)").run(Number(name.slice(0, 4)), name);
    }
    old.prepare("INSERT INTO retry_buckets (task, tokens, at) VALUES ('kept', 0.5, 1234), ('full', NULL, NULL)").run();
    old.close();
    const store = new SqliteStore({ path });
    try {
      expect(await store.read(async (tx) => tx.retryBucketGet("kept"))).toEqual({ tokens: 0.5, at: 1234, step: 0, runs: [] });
      expect(await store.read(async (tx) => tx.retryBucketGet("full"))).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  test("migrations are applied once and recorded, so reopening a database keeps its data", async () => {
    const path = join(tempDir(), "db");
    const store = new SqliteStore({ path });
    // Not awaited: closing commits what is pending.
    const written = store.write(async (tx) => tx.executionInsert([newExecution("kept")]));
    await store.close();
    expect((await written)[0]?.id).toBe("kept");
    const again = new SqliteStore({ path });
    await again.close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.prepare("SELECT version, name FROM schema_migrations ORDER BY version").all()).toEqual([
        { version: 1, name: "0001_init.sql" },
        { version: 2, name: "0002_lighter_indexes.sql" },
        { version: 3, name: "0003_history_indexes.sql" },
        { version: 4, name: "0004_workers.sql" },
        { version: 5, name: "0005_retry_control.sql" },
        { version: 6, name: "0006_failure_minutes.sql" },
        { version: 7, name: "0007_execution_labels.sql" },
        { version: 8, name: "0008_retry_bookings.sql" },
      ]);
      expect(db.prepare("SELECT id FROM executions").all()).toEqual([{ id: "kept" }]);
    } finally {
      db.close();
    }
  });
});
