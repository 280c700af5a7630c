// The benchmark harness of issues 5, 11 and 13. bench/run.sh starts PostgreSQL
// and Redis (unless --smoke) and then runs this; it starts every Reprise
// coordinator and every worker process itself and stops them by PID.
//
//   node bench/src/main.mjs [--smoke] [--reps N]
//                           [--systems reprise,reprise-plain,reprise-floor,reprise-pg,reprise-pg3,graphile,bullmq,
//                                      reprise-py,celery,reprise-go,river]
//                           [--workloads W1,W2,W3,W4,W5,W6] [--pending N] [--history N]
//                           [--no-profile] [--results FILE]
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { killChildren, median, now, progress } from "./common.mjs";
import { HistorySystem, buildHistory, describeProbes, probeHistory, removeDatabase, serveHistory } from "./history.mjs";
import { profileRun } from "./profile.mjs";
import { clusterGoals, historyGoals, languageGoals, writeResults } from "./report.mjs";
import { LANGUAGE_SYSTEMS, LanguageSystem } from "./systems/language.mjs";
import { describeLoops } from "./scrape.mjs";
import { buildPendingRetries } from "./seed.mjs";
import { RepriseSystem } from "./systems/reprise.mjs";
import { describe, dispatchLatency, retryTimer, throughput } from "./workloads.mjs";
import { benchDir } from "./paths.mjs";

const { values: flags } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    reps: { type: "string" },
    systems: { type: "string" },
    workloads: { type: "string" },
    pending: { type: "string" },
    history: { type: "string" },
    "no-profile": { type: "boolean", default: false },
    results: { type: "string" },
  },
  strict: true,
});

const smoke = flags.smoke;
const sizes = smoke
  ? { W1: 2_000, W2: 1_000, W3: 30, W4: 20, W5: Number(flags.pending ?? 5_000), W6: 2_000, history: Number(flags.history ?? 2_000) }
  : { W1: 20_000, W2: 20_000, W3: 300, W4: 200, W5: Number(flags.pending ?? 1_000_000), W6: 20_000, history: Number(flags.history ?? 1_000_000) };
if (!Number.isSafeInteger(sizes.history) || sizes.history < 0) throw new Error(`--history must be a whole number ≥ 0, not ${flags.history}`);
// Scrapes are spaced out as a Prometheus server's would be (closer in the smoke run, to keep it short).
const probes = { scrapes: 20, calls: 20, scrapeGapMs: smoke ? 50 : 250, callGapMs: smoke ? 20 : 100 };
const reps = Number(flags.reps ?? (smoke ? 1 : 3));
const systemNames = (flags.systems ?? (smoke ? "reprise,reprise-plain,reprise-floor,reprise-py,celery,reprise-go,river" : "reprise,reprise-plain,reprise-floor,reprise-pg,reprise-pg3,graphile,bullmq,reprise-py,celery,reprise-go,river")).split(",");
const workloads = (flags.workloads ?? "W1,W2,W3,W4,W5,W6").split(",");
const workDir = process.env.BENCH_WORKDIR ?? join(benchDir, ".tmp", `run-${process.pid}`);
const timeoutMs = smoke ? 30_000 : 300_000;

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    progress(`${signal}: stopping every process this harness started`);
    killChildren("SIGKILL");
    process.exit(130);
  });
}
process.once("exit", () => killChildren("SIGKILL"));

async function makeSystems() {
  const systems = [];
  for (const name of systemNames) {
    if (name === "reprise") systems.push(new RepriseSystem({ workDir }));
    else if (name === "reprise-pg" || name === "reprise-pg3") {
      const { ReprisePgSystem } = await import("./systems/reprise-pg.mjs");
      systems.push(new ReprisePgSystem({ workDir, pgUrl: process.env.BENCH_PG_URL, nodes: name === "reprise-pg" ? 1 : 3 }));
    }
    else if (name === "reprise-plain") systems.push(new (await import("./systems/reprise-plain.mjs")).ReprisePlainSystem({ workDir }));
    else if (name === "reprise-floor") systems.push(new (await import("./systems/reprise-floor.mjs")).RepriseFloorSystem({ workDir }));
    else if (LANGUAGE_SYSTEMS.includes(name)) systems.push(new LanguageSystem({ name, workDir }));
    else if (name === "bullmq") systems.push(new (await import("./systems/bullmq.mjs")).BullmqSystem({ redisPort: Number(process.env.BENCH_REDIS_PORT) }));
    else if (name === "graphile") systems.push(new (await import("./systems/graphile.mjs")).GraphileSystem({ pgUrl: process.env.BENCH_PG_URL }));
    else throw new Error(`unknown system ${name}`);
  }
  return systems;
}

/** results[workload][system] = one result per repetition; failures[] = what did not complete. */
const results = {};
const extras = {};
const failures = [];

function record(workload, system, result) {
  ((results[workload] ??= {})[system] ??= []).push(result);
}

function describeResult(workload, system, result) {
  const text = "scrape" in result ? describeProbes(result) : describe(workload, system, result);
  return result.loop ? `${text}; ${describeLoop(result.loop)}` : text;
}

function describeLoop(loop) {
  return `event-loop ${describeLoops([loop])}`;
}

async function attempt(workload, system, rep, run) {
  const label = `${workload} ${system} rep ${rep}/${reps}`;
  progress(`${label} ...`);
  try {
    const result = await run();
    record(workload, system, result);
    progress(`${label}: ${describeResult(workload, system, result)}`);
    return result;
  } catch (error) {
    failures.push({ workload, system, rep, error: error?.message ?? String(error) });
    progress(`${label} FAILED: ${error?.stack ?? error}`);
    return undefined;
  }
}

async function main() {
  const began = now();
  mkdirSync(workDir, { recursive: true });
  const systems = await makeSystems();
  const has = (w) => workloads.includes(w);
  const reprise = systemNames.includes("reprise");
  progress(`bench: ${smoke ? "smoke" : "full"} run, ${reps} repetition(s), systems ${systemNames.join(", ")}, workloads ${workloads.join(", ")}`);

  let seed;
  if (has("W5") && reprise) {
    progress(`W5: building ${sizes.W5.toLocaleString("en")} executions that wait for a retry ...`);
    try {
      seed = await buildPendingRetries(workDir, sizes.W5);
      extras.seedSeconds = seed.seconds;
      progress(`W5: seeded in ${seed.seconds.toFixed(1)} s`);
    } catch (error) {
      failures.push({ workload: "W5", system: "reprise", rep: 0, error: error?.message ?? String(error) });
      progress(`W5 seed FAILED: ${error?.stack ?? error}`);
    }
  }

  // The history phase's coordinator: built once, then serving every repetition of the phase.
  let history;
  if (reprise && sizes.history > 0) {
    const count = sizes.history;
    progress(`history: building ${count.toLocaleString("en")} finished executions through the API ...`);
    try {
      const build = await buildHistory(workDir, count, { timeoutMs: timeoutMs + count });
      extras.history = { seconds: build.seconds, succeeded: build.succeeded, failed: build.failed, retried: build.retried, buildLoop: build.loop };
      progress(
        `history: built in ${build.seconds.toFixed(1)} s: ${build.succeeded.toLocaleString("en")} SUCCEEDED (${build.retried.toLocaleString("en")} on a retry), ` +
          `${build.failed.toLocaleString("en")} FAILED; while it grew: ${describeLoop(build.loop)}`,
      );
      const coordinator = await serveHistory(build.db);
      extras.history.startToServingMs = coordinator.startToServingMs;
      extras.history.rssMiB = coordinator.memory().rssMiB;
      progress(`history: restarted on it, SERVING after ${coordinator.startToServingMs.toFixed(0)} ms, RSS ${extras.history.rssMiB.toFixed(0)} MiB`);
      history = { db: build.db, coordinator, system: new HistorySystem({ workDir, coordinator }) };
    } catch (error) {
      failures.push({ workload: "history", system: "reprise", rep: 0, error: error?.message ?? String(error) });
      progress(`history build FAILED: ${error?.stack ?? error}`);
    }
  }
  const withLoop = async (run) => {
    const result = await run();
    const loop = history.system.lastLoop;
    if (loop?.error) throw loop.error;
    return { ...result, loop };
  };

  // Another language's rows run each workload whole in their own runner.
  const inRunner = (system, workload) => system instanceof LanguageSystem && (() => system.run(workload, { count: sizes[workload], timeoutMs }));
  // A system may run only some workloads (reprise-floor has no retries).
  const runs = (system, workload) => has(workload) && (system.workloads?.includes(workload) ?? true);
  for (let rep = 1; rep <= reps; rep++) {
    for (const system of systems) {
      if (runs(system, "W1")) await attempt("W1", system.name, rep, inRunner(system, "W1") || (() => throughput(system, "W1", { count: sizes.W1, timeoutMs })));
    }
    for (const system of systems) {
      if (runs(system, "W2")) await attempt("W2", system.name, rep, inRunner(system, "W2") || (() => throughput(system, "W2", { count: sizes.W2, mode: "failonce", timeoutMs })));
    }
    for (const system of systems) {
      if (runs(system, "W3")) await attempt("W3", system.name, rep, inRunner(system, "W3") || (() => dispatchLatency(system, { count: sizes.W3, timeoutMs })));
    }
    for (const system of systems) {
      if (runs(system, "W4")) await attempt("W4", system.name, rep, inRunner(system, "W4") || (() => retryTimer(system, { count: sizes.W4, timeoutMs })));
    }
    if (history) {
      const system = history.system;
      if (has("W3")) await attempt("W3 history", "reprise", rep, () => withLoop(() => dispatchLatency(system, { count: sizes.W3, timeoutMs })));
      if (has("W4")) await attempt("W4 history", "reprise", rep, () => withLoop(() => retryTimer(system, { count: sizes.W4, timeoutMs })));
      await attempt("history probes", "reprise", rep, () => probeHistory(system, { failed: extras.history.failed, ...probes, timeoutMs }));
    }
    if (has("W5") && seed) {
      const scaled = new RepriseSystem({ workDir, seedDb: seed.db });
      await attempt("W5", "reprise", rep, async () => {
        let idle;
        const result = await throughput(scaled, "W5", {
          count: sizes.W1,
          timeoutMs,
          onStarted: async () => {
            idle = scaled.coordinator.memory();
          },
        });
        return { ...result, startToServingMs: scaledStart(scaled), idleRssMiB: idle.rssMiB, peakRssMiB: scaled.lastPeak };
      });
      for (const suffix of ["", "-wal", "-shm"]) rmSync(scaled.db + suffix, { force: true });
    }
    if (has("W6") && reprise) {
      const full = new RepriseSystem({ workDir, durability: "full" });
      await attempt("W6", "reprise", rep, () => throughput(full, "W6", { count: sizes.W6, timeoutMs }));
    }
  }

  if (history) {
    await history.coordinator.stop();
    removeDatabase(history.db);
  }

  const profiles = [];
  if (reprise && !flags["no-profile"] && !smoke) {
    for (const [workload, mode] of [
      ["W1", "noop"],
      ["W2", "failonce"],
    ].filter(([w]) => has(w))) {
      progress(`profile: one more Reprise ${workload} with --cpu-prof on the coordinator and the worker ...`);
      try {
        const profile = await profileRun({ workDir, workload, mode, count: sizes[workload], timeoutMs });
        profiles.push(profile);
        progress(`profile: ${workload} ${profile.perSecond.toFixed(0)}/s under the profiler; summary in RESULTS.md`);
      } catch (error) {
        failures.push({ workload: `profile ${workload}`, system: "reprise", rep: 0, error: error?.message ?? String(error) });
        progress(`profile ${workload} FAILED: ${error?.stack ?? error}`);
      }
    }
  }

  for (const system of systems) await system.close?.();
  const table = printTable();
  const historyTable = printHistory(table.med);
  if (!smoke || flags.results) {
    const file = flags.results ?? join(benchDir, "RESULTS.md");
    await writeResults(file, { smoke, reps, sizes, systemNames, workloads, results, extras, failures, profiles, table, historyTable, seconds: (now() - began) / 1000 });
    progress(`wrote ${file}`);
  }
  if (failures.length > 0) {
    progress(`${failures.length} workload run(s) failed:`);
    for (const f of failures) progress(`  ${f.workload} ${f.system} rep ${f.rep}: ${f.error}`);
    return 1;
  }
  return 0;
}

function scaledStart(system) {
  return system.lastStartToServingMs;
}

/**
 * The medians table, printed and returned as markdown rows. One column per
 * system, then the ratio columns: Reprise (SQLite) against each competitor,
 * and each Reprise-on-PostgreSQL system against graphile-worker, which runs on
 * the same PostgreSQL server. Throughput ratios are the Reprise system's over
 * the other's, latency ratios the other's over the Reprise system's: above 1×
 * means Reprise is better either way.
 */
function printTable() {
  const med = (w, s, key) => median((results[w]?.[s] ?? []).map((r) => r[key]));
  const has = (s) => systemNames.includes(s);
  const pairs = [
    ...(has("reprise") ? systemNames.filter((s) => s === "graphile" || s === "bullmq").map((o) => ["reprise", o]) : []),
    ...(has("graphile") ? systemNames.filter((s) => s.startsWith("reprise-pg")).map((p) => [p, "graphile"]) : []),
    ...[
      ["reprise-plain", "bullmq"],
      ["reprise-floor", "bullmq"],
      ["reprise-plain", "reprise-floor"],
      ["reprise-py", "celery"],
      ["reprise-go", "river"],
    ].filter(([a, b]) => has(a) && has(b)),
  ];
  const label = {
    reprise: "Reprise",
    "reprise-plain": "Reprise, plain client",
    "reprise-floor": "gRPC floor",
    "reprise-pg": "Reprise on PG",
    "reprise-pg3": "Reprise on PG, 3 nodes",
    "reprise-py": "Reprise, Python",
    "reprise-go": "Reprise, Go",
    graphile: "graphile-worker",
    bullmq: "BullMQ",
    celery: "Celery",
    river: "River",
  };
  const fmt = (v, digits = 0) => (Number.isFinite(v) ? v.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "–");
  const rows = [];
  const header = ["workload", "metric", ...systemNames.map((s) => label[s] ?? s), ...pairs.map(([a, b]) => `${label[a]} / ${label[b]}`)];
  const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : "–");
  for (const [w, metric] of [
    ["W1", "executions/s"],
    ["W2", "executions/s"],
  ]) {
    const values = systemNames.map((s) => med(w, s, "perSecond"));
    rows.push([w, metric, ...values.map((v) => fmt(v)), ...pairs.map(([a, b]) => ratio(med(w, a, "perSecond"), med(w, b, "perSecond")))]);
  }
  const metricName = { p99Steady: "p99 after the first 5", first: "first sample" };
  for (const [w, keys] of [
    ["W3", ["p50", "p95", "p99", "p99Steady", "first", "max"]],
    ["W4", ["p50", "p99", "max"]],
  ]) {
    for (const key of keys) {
      const values = systemNames.map((s) => med(w, s, key));
      // For latencies the ratio is the other system's over Reprise's: above 1 means Reprise is faster.
      rows.push([w, `${metricName[key] ?? key} ms`, ...values.map((v) => fmt(v, 2)), ...pairs.map(([a, b]) => ratio(med(w, b, key), med(w, a, key)))]);
    }
  }
  // W5 and W6 are Reprise on SQLite only: one value in its column.
  const only = (w, metric, v) => {
    const row = Array(header.length).fill("");
    row[0] = w;
    row[1] = metric;
    if (systemNames.includes("reprise")) row[2 + systemNames.indexOf("reprise")] = v;
    return row;
  };
  if (results.W5) {
    rows.push(only("W5", "W1 with pending, executions/s", fmt(med("W5", "reprise", "perSecond"))));
    rows.push(only("W5", "W1 with pending / W1 empty", ratio(med("W5", "reprise", "perSecond"), med("W1", "reprise", "perSecond"))));
    rows.push(only("W5", "start to SERVING, ms", fmt(med("W5", "reprise", "startToServingMs"))));
    rows.push(only("W5", "RSS after start, MiB", fmt(med("W5", "reprise", "idleRssMiB"))));
    rows.push(only("W5", "peak RSS during W1, MiB", fmt(med("W5", "reprise", "peakRssMiB"))));
  }
  if (results.W6) {
    rows.push(only("W6", "durability full, executions/s", fmt(med("W6", "reprise", "perSecond"))));
    rows.push(only("W6", "full / normal", ratio(med("W6", "reprise", "perSecond"), med("W1", "reprise", "perSecond"))));
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? "").length)));
  const line = (cells) => cells.map((c, i) => String(c ?? "").padEnd(widths[i])).join("  ");
  const cluster = clusterGoals(med, systemNames);
  const languages = languageGoals(med, systemNames);
  process.stderr.write(
    `\nMedians of ${reps} repetition(s):\n${line(header)}\n${widths.map((w) => "-".repeat(w)).join("  ")}\n${rows.map(line).join("\n")}\n\n` +
      (cluster.length > 0 ? `Goals of issue 13 (Reprise on PostgreSQL):\n${cluster.map((g) => `  ${g.goal}: ${g.shown}${g.ok === null ? "" : g.ok ? " (met)" : " (missed)"}`).join("\n")}\n\n` : "") +
      (languages.length > 0 ? `Goals of issue 16 (every language against its peer):\n${languages.map((g) => `  ${g.goal}: ${g.shown}${g.ok === null ? "" : g.ok ? " (met)" : " (missed)"}`).join("\n")}\n\n` : ""),
  );
  return { header, rows, med };
}

/**
 * The history phase beside the fresh figures, printed and returned as markdown
 * rows: medians over repetitions, except the event-loop rows, which show the
 * worst repetition (a goal that no hold exceed 20 ms is about the worst).
 */
function printHistory(med) {
  const runs = (w) => results[w]?.reprise ?? [];
  if (!extras.history || ["W3 history", "W4 history", "history probes"].every((w) => runs(w).length === 0)) return undefined;
  const fmt = (v, digits = 2) => (Number.isFinite(v) ? v.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "–");
  const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : "–");
  const size = sizes.history.toLocaleString("en");
  const header = ["measure", "fresh coordinator", `after ${size} finished`, "after / fresh"];
  const rows = [];
  for (const [w, keys] of [
    ["W3", ["p50", "p95", "p99", "max"]],
    ["W4", ["p50", "p99", "max"]],
  ]) {
    if (runs(`${w} history`).length === 0) continue;
    for (const key of keys) {
      const fresh = med(w, "reprise", key);
      const after = med(`${w} history`, "reprise", key);
      rows.push([`${w} ${key} ms`, fmt(fresh), fmt(after), ratio(after, fresh)]);
    }
  }
  const probeRuns = runs("history probes");
  const probe = (kind) => {
    const medianMs = median(probeRuns.map((r) => r[kind]?.median));
    const maxMs = median(probeRuns.map((r) => r[kind]?.max));
    return Number.isFinite(medianMs) ? `${fmt(medianMs, 1)} / ${fmt(maxMs, 1)}` : "–";
  };
  if (probeRuns.length > 0) {
    const of = `median / max of ${probes.calls}`;
    rows.push([`GET /metrics ms, median / max of ${probes.scrapes}`, "–", probe("scrape"), ""]);
    rows.push([`ListExecutions FAILED, page_size 50, ms, ${of}`, "–", probe("failedFirst"), ""]);
    rows.push([`ListExecutions FAILED, its second page, ms, ${of}`, "–", probe("failedSecond"), ""]);
    rows.push([`ListExecutions PENDING (none pending), ms, ${of}`, "–", probe("pendingNone"), ""]);
    rows.push([`console's first page (GET /api/v1/executions, 50 newest), ms, ${of}`, "–", probe("consoleFirst"), ""]);
    rows.push([`console's filtered page (GET /api/v1/executions?state=FAILED, 50), ms, ${of}`, "–", probe("consoleFailed"), ""]);
    rows.push([`console's page by label (?label=tenant=t7, 50), ms, ${of}`, "–", probe("consoleLabel"), ""]);
    rows.push([`console's page by label and state (?label=tenant=t7&state=FAILED), ms, ${of}`, "–", probe("consoleLabelFailed"), ""]);
  }
  rows.push(["start to SERVING, ms", "–", fmt(extras.history.startToServingMs, 0), ""]);
  rows.push(["RSS after start, MiB", "–", fmt(extras.history.rssMiB, 0), ""]);
  const loops = (w) => runs(w).map((r) => r.loop).filter(Boolean);
  const loopCell = (list) => (list.length === 0 ? "–" : describeLoops(list));
  for (const [label, w] of [
    ["W3", "W3 history"],
    ["W4", "W4 history"],
    ["scrapes and lists", "history probes"],
  ]) {
    if (runs(w).length > 0) rows.push([`largest event-loop hold and delay, ${label}`, "–", loopCell(loops(w)), ""]);
  }
  rows.push(["largest event-loop hold and delay, while the history grew", "–", loopCell([extras.history.buildLoop]), ""]);
  const goals = historyGoals({ med, results, size });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? "").length)));
  const line = (cells) => cells.map((c, i) => String(c ?? "").padEnd(widths[i])).join("  ");
  process.stderr.write(
    `History: ${size} finished executions, built through the API in ${extras.history.seconds.toFixed(0)} s ` +
      `(${extras.history.succeeded.toLocaleString("en")} SUCCEEDED, ${extras.history.failed.toLocaleString("en")} FAILED); medians of ${reps} repetition(s):\n` +
      `${line(header)}\n${widths.map((w) => "-".repeat(w)).join("  ")}\n${rows.map(line).join("\n")}\n\n` +
      `Goals of issue 11:\n${goals.map((g) => `  ${g.goal}: ${g.shown}${g.verdict ? ` (${g.verdict})` : ""}`).join("\n")}\n\n`,
  );
  return { header, rows, goals };
}

main().then(
  (code) => {
    killChildren("SIGKILL");
    process.exit(code);
  },
  (error) => {
    progress(`bench failed: ${error?.stack ?? error}`);
    killChildren("SIGKILL");
    process.exit(1);
  },
);
