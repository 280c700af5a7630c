// The coordinator's own part of W3, without gRPC and without other processes:
// in one process, a worker's LeaseAttempts waits, and a Submit comes every
// `gap` ms. Each Submit is timed to the moment the waiting lease is answered,
// and every SQLite statement and COMMIT on that path is timed by the store's
// hold meter, so the table splits the path into SQLite and the rest (the
// coordinator's JavaScript, promises, timers, garbage collection).
//
// W3 submits one execution every 20 ms to an idle coordinator. This measures
// what that costs the coordinator alone, back to back and after a gap: on a
// shared virtual machine the same code runs several times slower after the
// process has slept (bench/ANALYSIS.md, "The coordinator's part of W3").
//
//   node bench/src/cold-path.mjs [--gaps 0,1,20] [--count 300] [--spin] [--results FILE] [--smoke]
//
// --spin waits out each gap in a busy loop instead of sleeping. The report goes
// to bench/COLD-PATH.md (not written by --smoke unless --results is given).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { median, percentile, progress, sleep } from "./common.mjs";
import { benchDir, repriseRoot } from "./paths.mjs";


function usage(message) {
  process.stderr.write(`cold-path: ${message}\n`);
  process.exit(2);
}

let flags;
try {
  ({ values: flags } = parseArgs({
    options: {
      gaps: { type: "string" },
      count: { type: "string" },
      spin: { type: "boolean", default: false },
      results: { type: "string" },
      smoke: { type: "boolean", default: false },
    },
  }));
} catch (error) {
  usage(error.message);
}
const gaps = (flags.gaps ?? (flags.smoke ? "0,1" : "0,1,20")).split(",").map(Number);
const count = Number(flags.count ?? (flags.smoke ? 20 : 300));
/** Executions run through before measuring, so that every path is compiled and the tables have a history. */
const WARM_UP = flags.smoke ? 200 : 5_000;
if (gaps.some((gap) => !Number.isFinite(gap) || gap < 0)) usage(`--gaps: must be milliseconds ≥ 0, separated by commas; got ${flags.gaps}`);
if (!Number.isSafeInteger(count) || count < 1) usage(`--count: must be a whole number ≥ 1; got ${flags.count}`);

const load = (path) => import(pathToFileURL(join(repriseRoot, path)).href);
const { Coordinator } = await load("dist/server/coordinator/coordinator.js");
const { SqliteStore } = await load("dist/server/store/sqlite/sqlite-store.js");

/** While a submit is timed: its statements' times and runs, by name. */
let window = null;
const holds = {
  observer: (name) => (ms) => {
    if (!window) return;
    const seen = window.get(name);
    if (seen) {
      seen.ms += ms;
      seen.runs++;
    } else window.set(name, { ms, runs: 1 });
  },
};

const dir = mkdtempSync(join(tmpdir(), "reprise-cold-path-"));
const store = new SqliteStore({ path: join(dir, "reprise.db"), holds });
const coordinator = new Coordinator({ store });
coordinator.start();

const task = "cold-path";
const payload = { data: new TextEncoder().encode('{"i":1}'), contentType: "application/json" };
const submit = () => coordinator.submit({ task, arguments: payload, retryPolicy: null, idempotencyKey: null, delayMs: 0, labels: {} });
const lease = (waitMs) =>
  coordinator.lease({ workerId: "cold-path-worker", tasks: [task], maxAttempts: 64, leaseMs: 30_000, waitMs }, new AbortController().signal);
const succeed = (attempts) =>
  coordinator.report(
    attempts.map((attempt) => ({
      $typeName: "reprise.v1.Outcome",
      leaseToken: attempt.leaseToken,
      outcome: { case: "result", value: { $typeName: "reprise.v1.Payload", data: new Uint8Array(), contentType: "" } },
    })),
  );

async function waitOut(ms) {
  if (!flags.spin) return sleep(ms);
  const until = performance.now() + ms;
  while (performance.now() < until);
  // One turn of the event loop, as a sleep would give.
  await new Promise((resolve) => setImmediate(resolve));
}

/** One gap: `count` Submits, each to a worker already waiting. */
async function measure(gap) {
  const totals = [];
  const sqlite = [];
  const byStatement = new Map();
  for (let i = 0; i < count; i++) {
    const waiting = lease(5_000);
    // The lease has found nothing and waits (its claim is one turn).
    await new Promise((resolve) => setImmediate(resolve));
    await waitOut(gap);
    window = new Map();
    const started = performance.now();
    const [, attempts] = await Promise.all([submit(), waiting]);
    totals.push(performance.now() - started);
    const observed = window;
    window = null;
    if (attempts.length !== 1) throw new Error(`the waiting lease got ${attempts.length} attempts, not 1`);
    let sum = 0;
    for (const [name, seen] of observed) {
      sum += seen.ms;
      (byStatement.get(name) ?? byStatement.set(name, []).get(name)).push(seen);
    }
    sqlite.push(sum);
    await succeed(attempts);
  }
  return { gap, totals, sqlite, byStatement };
}

const fmt = (ms) => (ms * 1000).toFixed(0);
try {
  progress(`cold path: ${WARM_UP} executions to warm up`);
  for (let done = 0; done < WARM_UP; done += 100) {
    await Promise.all(Array.from({ length: 100 }, submit));
    for (let leased = await lease(0); leased.length > 0; leased = await lease(0)) await succeed(leased);
  }
  const rows = [];
  for (const gap of gaps) {
    progress(`cold path: ${count} submits ${gap} ms apart${flags.spin ? " (busy wait)" : ""} ...`);
    const result = await measure(gap);
    rows.push(result);
    progress(
      `cold path: ${gap} ms apart: submit to lease p50 ${fmt(median(result.totals))} µs, p99 ${fmt(percentile(result.totals, 99))} µs, SQLite ${fmt(median(result.sqlite))} µs`,
    );
  }
  const names = [...new Set(rows.flatMap((row) => [...row.byStatement.keys()]))];
  const header = `| | ${rows.map((row) => `${row.gap} ms apart`).join(" | ")} |\n|---|${rows.map(() => "---:").join("|")}|`;
  const line = (label, value) => `| ${label} | ${rows.map(value).join(" | ")} |`;
  const table = [
    header,
    line("submit to lease, p50 µs", (row) => fmt(median(row.totals))),
    line("submit to lease, p99 µs", (row) => fmt(percentile(row.totals, 99))),
    line("SQLite statements and COMMIT, median of the sum µs", (row) => fmt(median(row.sqlite))),
    line("the rest (p50 less SQLite) µs", (row) => fmt(median(row.totals) - median(row.sqlite))),
    ...names.map((name) => line(`\`${name}\`, median µs (runs per submit)`, (row) => {
      const seen = row.byStatement.get(name) ?? [];
      if (seen.length === 0) return "–";
      const runs = seen.reduce((sum, s) => sum + s.runs, 0) / count;
      return `${fmt(median(seen.map((s) => s.ms)))} (${runs < 1 ? runs.toFixed(2) : runs.toFixed(1)})`;
    })),
  ].join("\n");
  console.log(table);
  if (!flags.smoke || flags.results) {
    const file = flags.results ?? join(benchDir, "COLD-PATH.md");
    const command = `node bench/src/cold-path.mjs ${process.argv.slice(2).join(" ")}`.trim();
    writeFileSync(
      file,
      `# The coordinator's part of W3, in one process\n\nGenerated by \`${command}\` on ${new Date().toISOString().slice(0, 10)}` +
        ` (Node ${process.versions.node}; load average ${(await import("node:os")).loadavg().map((l) => l.toFixed(2)).join(", ")} at the end).` +
        ` ${count} submits per column, each to a worker already waiting, after ${WARM_UP.toLocaleString("en")} executions` +
        `${flags.spin ? "; gaps waited out in a busy loop" : ""}. Statement times are the store's hold meter; a statement that runs more than once per submit is summed within the submit first, and the runs per submit are in brackets. See ANALYSIS.md.\n\n${table}\n`,
    );
    progress(`wrote ${file}`);
  }
} finally {
  await coordinator.shutdown();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
