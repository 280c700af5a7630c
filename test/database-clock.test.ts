// One clock for every node of a cluster: each node decides on the database's
// clock, whatever its own says.
import { describe, expect, inject, test } from "vitest";
import { DatabaseClock } from "../server/store/postgres/clock.js";
import { PostgresStore } from "../server/store/postgres/postgres-store.js";
import { testDatabase } from "./postgres-server.js";

describe("the database clock", () => {
  test("a node whose own clock is 5 s off still reads the database's time, within the round trip", async () => {
    // The "database" here is 5 s ahead of this machine, and answers after 2 ms.
    const clock = new DatabaseClock(async () => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      return Date.now() + 5000;
    });
    await clock.start(() => {});
    try {
      expect(Math.abs(clock.offset - 5000)).toBeLessThan(20);
      expect(Math.abs(clock.now() - (Date.now() + 5000))).toBeLessThan(20);
    } finally {
      clock.stop();
    }
  });

  test.skipIf(!inject("postgresUrl"))("each node measures its offset from PostgreSQL's clock through its store, and two nodes on one database agree", async () => {
    const url = await testDatabase("clock");
    const [a, b] = [await PostgresStore.open({ url }), await PostgresStore.open({ url })];
    try {
      // The private server runs on this machine: its clock is this machine's, so the offsets are near 0 and agree.
      expect(Math.abs(a.clock.now() - b.clock.now())).toBeLessThan(20);
      expect(Math.abs(a.clock.offset)).toBeLessThan(20);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
