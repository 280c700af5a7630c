// `reprise backup`: an online, consistent copy while the coordinator serves.
import { execFile } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { ExecutionState } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { tempDir, until } from "./helpers.js";
import { CLI, spawnCoordinator } from "./process-helpers.js";

const run = promisify(execFile);

describe("backup", () => {
  test("reprise backup copies the database while the coordinator serves, saying what each step did, and a coordinator started on the copy carries on", async () => {
    const dir = tempDir();
    const db = join(dir, "reprise.db");
    const copy = join(dir, "copy.db");
    const c = await spawnCoordinator(db);
    let before: string[] = [];
    try {
      for (let i = 0; i < 200; i++) await c.executions.submit({ task: "t", idempotencyKey: `k${i}` });
      before = (await c.executions.listExecutions({ pageSize: 1000 })).executions.map((e) => e.id);
      let stop = false;
      const busy = (async () => {
        for (let i = 0; i < 5000 && !stop; i++) await c.executions.submit({ task: "during_backup" });
      })();
      const { stderr } = await run(process.execPath, [CLI, "backup", "--db", db, copy]);
      stop = true;
      await busy;
      // Each step says what it did, so that a long copy of a large file is not silent.
      expect(stderr).toMatch(/^reprise: backing up \S+ \(\d+\.\d MiB\) to \S+\nreprise: copied \d+ pages \(\d+\.\d MiB\) in \d+ ms; checking the copy's integrity\nreprise: integrity check ok; \d+ ms in all\n$/);
      // The copy is one file, with no -wal or -shm beside it.
      expect([existsSync(`${copy}-wal`), existsSync(`${copy}-shm`)]).toEqual([false, false]);
    } finally {
      c.closeClients();
      c.child.kill("SIGTERM");
      await c.exited;
    }
    const restored = await spawnCoordinator(copy);
    try {
      for (const id of before) expect((await restored.executions.getExecution({ executionId: id })).execution?.id).toBe(id);
      const { attempts } = await restored.workers.leaseAttempts({ workerId: "w", tasks: ["t"], maxAttempts: 1000 });
      expect(attempts).toHaveLength(200);
      const { receipts } = await restored.workers.reportOutcomes({
        outcomes: attempts.map((a) => ({ leaseToken: a.leaseToken, outcome: { case: "result" as const, value: {} } })),
      });
      expect(receipts.every((r) => r.accepted)).toBe(true);
      await until(async () => (await restored.executions.getExecution({ executionId: before[0]! })).execution!.state === ExecutionState.SUCCEEDED);
    } finally {
      restored.closeClients();
      restored.child.kill("SIGTERM");
      await restored.exited;
    }
  });

  test("reprise backup refuses to overwrite an existing file, in one line with exit code 2", async () => {
    const dir = tempDir();
    const c = await spawnCoordinator(join(dir, "reprise.db"));
    c.closeClients();
    c.child.kill("SIGTERM");
    await c.exited;
    const error = await run(process.execPath, [CLI, "backup", "--db", join(dir, "reprise.db"), join(dir, "reprise.db")]).catch((e: { code: number; stderr: string }) => e);
    expect(error).toMatchObject({ code: 2, stderr: `reprise: backup: ${join(dir, "reprise.db")} already exists; choose a new file\n` });
  });

  test("reprise backup of a file that is not a SQLite database says so in one line, with exit code 2, and writes nothing", async () => {
    const dir = tempDir();
    const source = join(dir, "notes.txt");
    writeFileSync(source, "these are notes, not a database\n".repeat(20));
    const error = await run(process.execPath, [CLI, "backup", "--db", source, join(dir, "copy.db")]).catch((e: { code: number; stderr: string }) => e);
    expect(error).toMatchObject({ code: 2 });
    expect((error as { stderr: string }).stderr.split("\n").slice(-2)).toEqual([`reprise: --db: ${source} is not a SQLite database`, ""]);
    expect(existsSync(join(dir, "copy.db"))).toBe(false);
  });
});
