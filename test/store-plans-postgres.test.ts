// The plan guard for the PostgreSQL store, as store-plans.test.ts is for
// SQLite: every statement the store runs is explained, as the generic plan
// that a named prepared statement gets, on a database with a history of
// 20,000 finished executions, and none may scan executions, attempts,
// execution_labels or worker_tasks from end to end.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { PostgresStore, statementTexts } from "../server/store/postgres/postgres-store.js";
import { testDatabase } from "./postgres-server.js";

/** Statements that may scan, each with its reason; none is on a path that RPCs or the timer take per execution. */
const ALLOWED_SCANS: Record<string, string> = {
  countByTaskAndState: "reads execution_counts and the count changes not yet folded: one row per task and state, plus at most 10 s of changes; only metrics scrapes",
  countFold: "moves every count change into execution_counts, every 10 s",
};

const HISTORY = 20_000;

describe.skipIf(!inject("postgresUrl"))("PostgreSQL statement plans", () => {
  let url: string;
  let client: pg.Client;

  beforeAll(async () => {
    url = await testDatabase("plans");
    // Opening the store applies the migrations.
    await (await PostgresStore.open({ url })).close();
    client = new pg.Client({ connectionString: url });
    await client.connect();
    // Mostly SUCCEEDED history, with a few of every other state, as a service that has run for a while has.
    await client.query(`
      INSERT INTO reprise.executions (id, task, state, arguments, arguments_type, next_attempt_at, created_at, finished_at, labels, attempt_count)
      SELECT 'e' || g, 't' || (g % 5),
        CASE WHEN g % 100 = 0 THEN 1 WHEN g % 103 = 0 THEN 2 WHEN g % 20 = 0 THEN 4 WHEN g % 41 = 0 THEN 7 ELSE 3 END,
        '\\x01', '', CASE WHEN g % 100 = 0 THEN g END, g, CASE WHEN g % 100 = 0 OR g % 103 = 0 THEN NULL ELSE g + 1 END, '{}',
        CASE WHEN g % 100 = 0 THEN 0 ELSE 1 END
      FROM generate_series(1, ${HISTORY}) g`);
    await client.query(`
      INSERT INTO reprise.attempts (execution_seq, number, state, worker_id, scheduled_at, started_at, finished_at, lease_secret, lease_ms,
        lease_expires_at, timeout_at)
      SELECT seq, 1, CASE WHEN state = 2 THEN 1 ELSE 2 END, 'w', created_at, created_at, finished_at, '\\x00', 30000, created_at + 30000,
        CASE WHEN seq % 3 = 0 THEN created_at + 60000 END
      FROM reprise.executions WHERE attempt_count = 1`);
    // Some carry labels, as a service's tenants or sources would.
    await client.query(`UPDATE reprise.executions SET labels = json_build_object('tenant', 't' || (seq % 50), 'source', CASE WHEN seq % 2 = 0 THEN 'api' ELSE 'cron' END)::text
      WHERE seq % 7 = 0`);
    await client.query(`INSERT INTO reprise.execution_labels (key, value, execution_seq)
      SELECT l.key, l.value, e.seq FROM reprise.executions e, json_each_text(e.labels::json) l WHERE e.labels <> '{}'`);
    await client.query(`INSERT INTO reprise.worker_tasks (worker_id, task, last_seen_at) SELECT 'w' || g, 't' || (g % 5), g FROM generate_series(1, 2000) g`);
    await client.query("ANALYZE");
    // What a named prepared statement gets after its first runs: the generic plan.
    await client.query("SET plan_cache_mode = force_generic_plan");
  });

  afterAll(async () => {
    await client?.end();
  });

  async function plan(name: string, sql: string): Promise<string> {
    await client.query(`PREPARE ${name} AS ${sql}`);
    try {
      const parameters = (await client.query("SELECT cardinality(parameter_types) AS n FROM pg_prepared_statements WHERE name = $1", [name.toLowerCase()]))
        .rows[0]!.n as number;
      const args = parameters === 0 ? "" : `(${Array.from({ length: parameters }, () => "NULL").join(", ")})`;
      // EXPLAIN without ANALYZE plans a write without running it.
      return (await client.query(`EXPLAIN EXECUTE ${name}${args}`)).rows.map((row: { "QUERY PLAN": string }) => row["QUERY PLAN"]).join("\n");
    } finally {
      await client.query(`DEALLOCATE ${name}`);
    }
  }

  test("no statement the PostgreSQL store runs scans executions, attempts, execution_labels or worker_tasks, except those allowed with a reason", async () => {
    const scans: string[] = [];
    for (const [name, sql] of statementTexts) {
      if (name === "notify" || name === "clock") continue;
      const text = await plan(`guard_${name}`, sql);
      const scanned = [...text.matchAll(/Seq Scan on (\w+)/g)].map((m) => m[1]!).filter((table) => ["executions", "attempts", "execution_labels", "worker_tasks"].includes(table));
      if (scanned.length > 0 && !(name in ALLOWED_SCANS)) scans.push(`${name}: ${scanned.join(", ")}\n${text}`);
    }
    expect(scans).toEqual([]);
  });

  test("the guard sees a scan when the index a statement needs is gone", async () => {
    await client.query("BEGIN");
    try {
      // Both partial indexes of PENDING executions: either serves the claim.
      await client.query("DROP INDEX reprise.executions_due, reprise.executions_next");
      await client.query("SET LOCAL enable_seqscan = on");
      const text = await plan("guard_probe", statementTexts.get("executionClaimDue")!);
      expect(text).toMatch(/Seq Scan on executions|Bitmap Heap Scan on executions/);
      expect(text).not.toMatch(/executions_due|executions_next/);
    } finally {
      await client.query("ROLLBACK");
    }
  });
});
