// The private PostgreSQL server the tests run against (test/postgres-server.ts).
// These tests run when the run has one: see test/postgres-global-setup.ts.
import { readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { startPostgres, testDatabase } from "./postgres-server.js";
import type { PostgresServer } from "./postgres-server.js";

const isRoot = process.getuid?.() === 0;

async function query<Row extends pg.QueryResultRow>(url: string, sql: string): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<Row>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Real uid of a process, from /proc/<pid>/status. */
function processUid(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("Uid:"));
  return Number(line?.split(/\s+/)[1]);
}

describe.skipIf(!inject("postgresUrl"))("private PostgreSQL for tests", () => {
  // A server of this file's own: the restart test stops it, which the run's shared server must not.
  let server: PostgresServer;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(() => server?.close());

  test("a private PostgreSQL runs as an ordinary user, not root", async () => {
    const client = new pg.Client({ connectionString: server.url() });
    await client.connect();
    try {
      const { rows } = await client.query<{ data_directory: string; backend: number; user: string }>(
        "SELECT current_setting('data_directory') AS data_directory, pg_backend_pid() AS backend, current_user AS user",
      );
      const row = rows[0]!;
      expect(row.user).toBe("reprise");
      expect(row.data_directory.startsWith(tmpdir())).toBe(true);
      // As root: the postmaster, this connection's backend and the data all belong to another user.
      // Otherwise they are ours.
      const expectOwner = (uid: number) => (isRoot ? expect(uid).not.toBe(0) : expect(uid).toBe(process.getuid!()));
      expectOwner(processUid(server.pid()));
      expectOwner(processUid(row.backend));
      expectOwner(statSync(row.data_directory).uid);
    } finally {
      await client.end();
    }
  });

  test("each test database is created fresh and separate", async () => {
    const [first, second] = await Promise.all([testDatabase("fresh"), testDatabase("fresh")]);
    expect(first).not.toBe(second);
    const userTables = "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'";
    expect(await query(first!, userTables)).toEqual([{ n: 0 }]);
    await query(first!, "CREATE TABLE only_in_first (id int)");
    expect(await query(second!, userTables)).toEqual([{ n: 0 }]);
    expect(await query(second!, "SELECT to_regclass('only_in_first') AS t")).toEqual([{ t: null }]);
  });

  test("the server can be stopped and started again on the same port, keeping its data", async () => {
    const url = await server.createDatabase("restart");
    await query(url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the restart')");
    const pidBefore = server.pid();

    await server.stopServer();
    await expect(query(url, "SELECT 1")).rejects.toThrow(/ECONNREFUSED/);
    expect(() => server.pid()).toThrow();

    await server.startServer();
    expect(server.pid()).not.toBe(pidBefore);
    expect(await query(url, "SELECT v FROM kept")).toEqual([{ v: "before the restart" }]);
  });
});
