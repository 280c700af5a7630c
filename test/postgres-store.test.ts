// The PostgreSQL store's own connections: an error on one of them never ends
// the process, whoever holds it at that moment.
import type pg from "pg";
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
