// The PostgreSQL store's own connections: an error on one of them never ends
// the process, whoever holds it at that moment. And its migrations, over data
// an earlier version left.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { describe, expect, inject, test } from "vitest";
import { PostgresStore } from "../server/store/postgres/postgres-store.js";
import { testDatabase } from "./postgres-server.js";

describe.skipIf(!inject("postgresUrl"))("the PostgreSQL store's connections", () => {
  test("an error on a pooled connection that nobody listens to (the server's goodbye read with the connection's first answer) does not end the process, and the store carries on", async () => {
    const store = await PostgresStore.open({ url: await testDatabase("connections") });
    try {
      // A connection checked out and not yet given a listener by its holder:
      // the moment in which a restart's 57P01 arrived and ended a node.
      const pool = (store as unknown as { pool: pg.Pool }).pool;
      const client = await pool.connect();
      const goodbye = Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" });
      expect(() => client.emit("error", goodbye)).not.toThrow();
      client.release(goodbye);
      expect(await store.read(async (tx) => tx.taskList())).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe.skipIf(!inject("postgresUrl"))("the PostgreSQL store's migrations", () => {
  test("a retry bucket kept before bookings were remembered keeps its level and position, with nothing booked after it", async () => {
    const url = await testDatabase("bucket_migration");
    const old = new pg.Client({ connectionString: url });
    await old.connect();
    try {
      const dir = "server/store/postgres/migrations";
      await old.query("CREATE SCHEMA reprise");
      await old.query("CREATE TABLE reprise.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
      for (const name of readdirSync(dir).sort().filter((file) => file < "0005")) {
        await old.query(readFileSync(join(dir, name), "utf8"));
        await old.query("INSERT INTO reprise.schema_migrations (version, name) VALUES ($1, $2)", [Number(name.slice(0, 4)), name]);
      }
      await old.query("INSERT INTO reprise.retry_buckets (task, tokens, at) VALUES ('kept', 0.5, 1234), ('full', NULL, NULL)");
    } finally {
      await old.end();
    }
    const store = await PostgresStore.open({ url });
    try {
      expect(await store.read(async (tx) => tx.retryBucketGet("kept"))).toEqual({ tokens: 0.5, at: 1234, step: 0, runs: [] });
      expect(await store.read(async (tx) => tx.retryBucketGet("full"))).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
