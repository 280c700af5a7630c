// Reprise on the PostgreSQL store, on the server bench/run.sh starts for
// graphile-worker (the same server and settings). Every repetition gets a
// fresh database, CREATE DATABASE reprise_<n>, dropped once the repetition
// ends, and `nodes` coordinators (`reprise serve --db postgres://…/reprise_<n>`)
// on it, which together are one coordinator (a cluster).
//
//   reprise-pg    one node; the harness and the worker (@reprise/client, as
//                 for Reprise on SQLite) both talk to it.
//   reprise-pg3   three nodes A, B, C: the harness submits and confirms on A;
//                 the worker declares its task and long-polls LeaseAttempts on
//                 B and sends ReportOutcomes to C (worker.mjs,
//                 startRepriseAcrossNodes), so that every execution crosses
//                 nodes twice: submitted on A, leased on B, ended on C.
import pg from "pg";
import { RepriseSystem, startCoordinator } from "./reprise.mjs";

/** Database names are numbered across both systems: the server is this run's own. */
let databases = 0;

export class ReprisePgSystem extends RepriseSystem {
  constructor({ workDir, pgUrl, nodes = 1 }) {
    super({ workDir });
    if (!pgUrl) throw new Error("BENCH_PG_URL is not set: run bench/run.sh");
    this.pgUrl = pgUrl;
    this.nodes = nodes;
    this.name = nodes === 1 ? "reprise-pg" : `reprise-pg${nodes}`;
    this.label = nodes === 1 ? "Reprise on PostgreSQL" : `Reprise on PostgreSQL, ${nodes} nodes`;
    this.cluster = [];
  }

  /** Runs one statement on the server's `postgres` database, on a connection of its own. */
  async admin(sql) {
    const client = new pg.Client({ connectionString: this.pgUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  }

  /** A fresh database and `nodes` coordinators on it, started one after the other (the first applies the migrations). */
  async prepare() {
    const database = `reprise_${++databases}`;
    await this.admin(`CREATE DATABASE ${database}`);
    this.database = database;
    const url = new URL(this.pgUrl);
    url.pathname = `/${database}`;
    this.db = url.href;
    try {
      for (let i = 0; i < this.nodes; i++) this.cluster.push(await startCoordinator({ db: this.db }));
    } catch (error) {
      // withWorker calls finish() only once prepare() has succeeded.
      await this.finish().catch(() => undefined);
      throw error;
    }
    this.coordinator = this.cluster[0];
    this.connect();
  }

  workerConfig() {
    const [a, b, c] = this.cluster;
    if (this.nodes === 1) return { address: a.address, queue: "bench", quiet: false };
    // Leases from B, reports to C; the harness submits on A (this.client).
    return { leaseAddress: b.address, reportAddress: c.address, queue: "bench" };
  }

  /** Stops every node, then drops the repetition's database. */
  async finish() {
    if (this.coordinator) {
      this.lastStartToServingMs = this.coordinator.startToServingMs;
      this.lastPeak = this.coordinator.memory().peakRssMiB;
    }
    this.disconnect();
    const cluster = this.cluster;
    this.cluster = [];
    this.coordinator = undefined;
    await Promise.all(cluster.map((node) => node.stop()));
    if (this.database) {
      const database = this.database;
      this.database = undefined;
      // FORCE: a node killed after its SIGTERM grace may have left a connection behind.
      await this.admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    }
  }
}
