// bench/RESULTS.md: the machine, every version, the command, the medians with
// ratios, the goals of issues 5 and 13 checked against them, the history phase beside
// the fresh figures with the goals of issue 11, and the profile. The
// hand-written analysis in bench/ANALYSIS.md is appended as it is.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { median } from "./common.mjs";
import { HISTORY_TASKS, describeProbes } from "./history.mjs";
import { describeLoops, worseHold } from "./scrape.mjs";
import { benchDir, repriseRoot } from "./paths.mjs";

const root = join(benchDir, "..");

function versionOf(dir, name) {
  try {
    return JSON.parse(readFileSync(join(dir, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return "not installed";
  }
}

function builtAt() {
  try {
    return statSync(join(repriseRoot, "dist/server/coordinator/coordinator.js")).mtime.toISOString();
  } catch {
    return "unknown";
  }
}

function git(...args) {
  try {
    return execFileSync("git", ["-C", root, ...args], { encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
}

export function goals(med, systemNames) {
  const has = (s) => systemNames.includes(s);
  const list = [];
  const add = (goal, value, ok, shown) => list.push({ goal, shown: Number.isFinite(value) ? shown : "not measured", ok: Number.isFinite(value) ? ok : null });
  const w1 = med("W1", "reprise", "perSecond");
  add("W1 ≥ 10,000 executions/s", w1, w1 >= 10_000, `${w1.toFixed(0)}/s`);
  for (const other of ["graphile", "bullmq"].filter(has)) {
    const r = w1 / med("W1", other, "perSecond");
    add(`W1 ≥ 2× ${other === "bullmq" ? "BullMQ" : "graphile-worker"}`, r, r >= 2, `${r.toFixed(2)}×`);
  }
  if (has("bullmq")) {
    const r = med("W2", "reprise", "perSecond") / med("W2", "bullmq", "perSecond");
    add("W2 ≥ 2× BullMQ", r, r >= 2, `${r.toFixed(2)}×`);
  }
  const p99 = med("W3", "reprise", "p99");
  add("W3 p99 ≤ 5 ms", p99, p99 <= 5, `${p99.toFixed(2)} ms`);
  const late = med("W4", "reprise", "p99");
  add("W4 p99 lateness ≤ 10 ms", late, late <= 10, `${late.toFixed(2)} ms`);
  const rss = med("W5", "reprise", "peakRssMiB");
  add("W5 RSS ≤ 200 MB (peak during W1 with the pending executions)", rss, rss * 1.048576 <= 200, `${rss.toFixed(0)} MiB`);
  const start = med("W5", "reprise", "startToServingMs");
  add("W5 start to SERVING ≤ 2 s", start, start <= 2000, `${(start / 1000).toFixed(2)} s`);
  const scaled = med("W5", "reprise", "perSecond") / w1;
  add("W5 W1 with the pending executions within 20 % of W1 empty", scaled, scaled >= 0.8, `${(scaled * 100).toFixed(0)} %`);
  const w6 = med("W6", "reprise", "perSecond");
  add("W6 ≥ 3,000 executions/s", w6, w6 >= 3000, `${w6.toFixed(0)}/s`);
  return list;
}

/**
 * Issue 13's goals, for Reprise on PostgreSQL: W1 on one node at least twice
 * graphile-worker's on the same server, and W4 p99 lateness at most 20 ms on
 * three nodes, with the worker leasing from one node and reporting to another
 * while submits go to a third. W3 across the nodes is shown beside it. Empty
 * when neither PostgreSQL system was measured.
 */
export function clusterGoals(med, systemNames) {
  const has = (s) => systemNames.includes(s);
  const list = [];
  const add = (goal, value, ok, shown) => list.push({ goal, shown: Number.isFinite(value) ? shown : "not measured", ok: Number.isFinite(value) ? ok : null });
  if (has("reprise-pg")) {
    const w1 = med("W1", "reprise-pg", "perSecond");
    const r = w1 / med("W1", "graphile", "perSecond");
    add("W1 on one PostgreSQL node ≥ 2× graphile-worker (same server)", r, r >= 2, `${r.toFixed(2)}× (${w1.toFixed(0)}/s)`);
  }
  if (has("reprise-pg3")) {
    const p50 = med("W4", "reprise-pg3", "p50");
    const p99 = med("W4", "reprise-pg3", "p99");
    add("W4 p99 lateness ≤ 20 ms on three PostgreSQL nodes (submit on A, lease on B, report to C)", p99, p99 <= 20, `p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);
    const w3p50 = med("W3", "reprise-pg3", "p50");
    const w3p99 = med("W3", "reprise-pg3", "p99");
    list.push({
      goal: "W3 on three PostgreSQL nodes (submit on A, long-poll on B; no goal set)",
      shown: Number.isFinite(w3p99) ? `p50 ${w3p50.toFixed(2)} ms, p99 ${w3p99.toFixed(2)} ms` : "not measured",
      ok: null,
    });
  }
  return list;
}

/**
 * Issue 16's goals, per language, against the queue its users would otherwise
 * pick, in the same run: W1 ≥ 2× the peer's, W3 p99 ≤ the peer's, W4 p99 ≤ 10
 * ms. The plain proto-loader client stands for any other language, against
 * BullMQ (W1 ≥ BullMQ's, as issue 16 asks of it, W3 p99 ≤ BullMQ's, W4 p99 ≤ 10 ms).
 */
export function languageGoals(med, systemNames) {
  const list = [];
  const add = (goal, value, ok, shown) => list.push({ goal, shown: Number.isFinite(value) ? shown : "not measured", ok: Number.isFinite(value) ? ok : null });
  for (const [ours, peer, label, peerLabel, w1Factor] of [
    ["reprise-py", "celery", "Python", "Celery", 2],
    ["reprise-go", "river", "Go", "River", 2],
    ["reprise-plain", "bullmq", "a plain proto-loader client", "BullMQ", 1],
  ]) {
    if (!systemNames.includes(ours) || !systemNames.includes(peer)) continue;
    const w1 = med("W1", ours, "perSecond") / med("W1", peer, "perSecond");
    add(`${label}: W1 ≥ ${w1Factor}× ${peerLabel}'s`, w1, w1 >= w1Factor, `${w1.toFixed(2)}× (${med("W1", ours, "perSecond").toFixed(0)}/s against ${med("W1", peer, "perSecond").toFixed(0)}/s)`);
    const [ourW3, peerW3] = [med("W3", ours, "p99"), med("W3", peer, "p99")];
    const [ourSteady, peerSteady] = [med("W3", ours, "p99Steady"), med("W3", peer, "p99Steady")];
    const steady = Number.isFinite(ourSteady) && Number.isFinite(peerSteady) ? `; after the first 5 samples ${ourSteady.toFixed(2)} ms against ${peerSteady.toFixed(2)} ms` : "";
    add(`${label}: W3 p99 ≤ ${peerLabel}'s`, ourW3 - peerW3, ourW3 <= peerW3, `${ourW3.toFixed(2)} ms against ${peerW3.toFixed(2)} ms${steady}`);
    const w4 = med("W4", ours, "p99");
    add(`${label}: W4 p99 ≤ 10 ms`, w4, w4 <= 10, `${w4.toFixed(2)} ms`);
  }
  return list;
}

/**
 * Issue 11's goals at `size` finished executions. The scrape and list goals
 * are judged on the slowest of each repetition's calls (the median over
 * repetitions of it); the hold goal on the worst repetition of every
 * measurement, W3, W4 and the probes. A histogram bounds the largest hold by a
 * bucket, so a bucket that straddles 20 ms leaves that goal undecided.
 */
export function historyGoals({ med, results, size }) {
  const runs = (w) => results[w]?.reprise ?? [];
  const list = [];
  const add = (goal, value, ok, shown) =>
    list.push({ goal, shown: Number.isFinite(value) ? shown : "not measured", verdict: Number.isFinite(value) ? (ok ? "met" : "missed") : null });
  const at = `after ${size} finished`;
  for (const w of ["W3", "W4"]) {
    const p99 = med(`${w} history`, "reprise", "p99");
    const fresh = med(w, "reprise", "p99");
    add(`${w} p99 ≤ 10 ms ${at}`, p99, p99 <= 10, `${p99?.toFixed(2)} ms (fresh ${Number.isFinite(fresh) ? `${fresh.toFixed(2)} ms` : "not measured"})`);
  }
  const probes = runs("history probes");
  const slowest = (kind) => median(probes.map((r) => r[kind]?.max));
  const scrape = slowest("scrape");
  add(`a metrics scrape ≤ 50 ms ${at} (the slowest of each repetition)`, scrape, scrape <= 50, `${scrape.toFixed(1)} ms`);
  const lists = ["failedFirst", "failedSecond", "pendingNone"].map(slowest).filter(Number.isFinite);
  const list50 = lists.length ? Math.max(...lists) : NaN;
  add(`a state-filtered ListExecutions page ≤ 50 ms ${at} (the slowest call of FAILED page 1, page 2 and PENDING)`, list50, list50 <= 50, `${list50.toFixed(1)} ms`);
  const pages = ["consoleFirst", "consoleFailed", "consoleLabel", "consoleLabelFailed"].map(slowest).filter(Number.isFinite);
  const page300 = pages.length ? Math.max(...pages) : NaN;
  add(`the console's first page and its filtered pages (state, label, both) ≤ 300 ms ${at} (issue 15; the slowest call of each)`, page300, page300 <= 300, `${page300.toFixed(1)} ms`);
  const loops = ["W3 history", "W4 history", "history probes"].flatMap((w) => runs(w).map((r) => r.loop)).filter(Boolean);
  const goal = `no event-loop hold over 20 ms during W3, W4, the scrapes and the lists ${at}`;
  if (loops.length === 0) {
    list.push({ goal, shown: "not measured", verdict: null });
  } else {
    const hold = loops.map((l) => l.hold).reduce(worseHold);
    const shown = `${describeLoops(loops)}${hold.present ? "" : " (this build has no reprise_event_loop_hold_seconds)"}`;
    let verdict = null;
    if (hold.present && hold.observations > 0) verdict = hold.maxMs <= 20 ? "met" : hold.aboveMs >= 20 ? "missed" : "undecided";
    list.push({ goal, shown, verdict });
  }
  return list;
}

function describeRun(r) {
  let text;
  if ("perSecond" in r) text = r.perSecond.toFixed(0);
  else if ("scrape" in r) text = describeProbes(r);
  else text = `p50 ${r.p50.toFixed(2)} / p99 ${r.p99.toFixed(2)} / max ${r.max.toFixed(2)}`;
  return r.loop ? `${text}; ${describeLoops([r.loop])}` : text;
}

function historySection(run) {
  const { historyTable, extras, sizes, reps } = run;
  if (!historyTable) return "";
  const h = extras.history;
  const size = sizes.history.toLocaleString("en");
  const verdict = { met: "**met**", missed: "**missed**", undecided: "**undecided**" };
  return `
## After ${size} finished executions (issue 11)

One coordinator, built through the API (${h.seconds.toFixed(0)} s: ${h.succeeded.toLocaleString("en")} SUCCEEDED, ${h.retried.toLocaleString("en")} of them on a retry, and ${h.failed.toLocaleString("en")} FAILED, over ${HISTORY_TASKS.length} tasks), restarted on that database with \`--metrics-listen\`, and kept for every repetition. W3 and W4 are the workloads above, unchanged. Times are medians of ${reps} repetition(s); event-loop rows are the worst repetition: "hold" is \`reprise_event_loop_hold_seconds\` (the upper bound of the highest bucket that gained observations, and which operation), "delay" is \`reprise_nodejs_eventloop_lag_max_seconds\` (sampled every 10 ms: a hold of H ms reads H to H + 10 ms; it also counts waiting for a core), and "harness" the same measure of the harness's own loop over the same stretch, which tells a busy machine from a busy coordinator. See METHOD.md.

${md([historyTable.header, historyTable.header.map(() => "---"), ...historyTable.rows])}

### Goals of issue 11

| goal | measured | |
|---|---|---|
${md(historyTable.goals.map((g) => [g.goal, g.shown, g.verdict ? verdict[g.verdict] : "–"]))}
`;
}

const md = (rows) => rows.map((r) => `| ${r.join(" | ")} |`).join("\n");

function profileSection(profiles) {
  if (!profiles?.length) return "No profile was taken in this run.\n";
  let out = `One extra Reprise run of each workload below with \`node --cpu-prof --cpu-prof-interval 250\` on the coordinator and on the worker process. Self time, excluding idle. better-sqlite3's statements run inside the store module's functions (V8 charges the native call to its JS caller), so that category is SQLite's own work plus the row mapping around it.\n\n`;
  for (const profile of profiles) for (const role of ["coordinator", "worker"]) {
    const p = profile[role];
    out += `### ${profile.workload} (${profile.perSecond.toFixed(0)}/s under the profiler), ${role === "coordinator" ? "coordinator (`reprise serve`)" : "worker process (`@reprise/client` Worker, concurrency 64)"}: ${p.busyMs.toFixed(0)} ms busy, ${p.idleMs.toFixed(0)} ms idle\n\n`;
    out += `| category | self ms | share |\n|---|---:|---:|\n`;
    out += md(p.categories.map((c) => [c.name, c.ms.toFixed(0), `${(c.share * 100).toFixed(1)} %`])) + "\n\n";
    out += `<details><summary>top 25 functions by self time</summary>\n\n| function | where | category | self ms | share |\n|---|---|---|---:|---:|\n`;
    out += md(p.top.map((f) => [`\`${f.name}\``, `\`${f.where}\``, f.category, f.ms.toFixed(0), `${(f.share * 100).toFixed(1)} %`])) + "\n\n</details>\n\n";
  }
  return out;
}

export async function writeResults(file, run) {
  const { table, results, sizes, reps, systemNames, failures, profiles, extras } = run;
  const load = process.env.BENCH_LOAD_BEFORE ?? loadavg().map((l) => l.toFixed(2)).join(", ");
  const versions = [
    ["Node.js", process.version],
    ["Reprise", `${git("rev-parse", "--short", "HEAD")}${git("status", "--porcelain", "--untracked-files=no", "--", "server", "clients/ts", "proto") ? " plus uncommitted changes in the working tree" : ""}; \`dist/\` built ${builtAt()}`],
    ["@grpc/grpc-js", versionOf(root, "@grpc/grpc-js")],
    ["@bufbuild/protobuf", versionOf(root, "@bufbuild/protobuf")],
    ["better-sqlite3", versionOf(root, "better-sqlite3")],
    ["bullmq", versionOf(benchDir, "bullmq")],
    ["ioredis", versionOf(benchDir, "ioredis")],
    ["graphile-worker", versionOf(benchDir, "graphile-worker")],
    ["pg (graphile-worker)", versionOf(benchDir, "pg")],
    ["pg (Reprise's PostgreSQL store)", versionOf(root, "pg")],
    ["PostgreSQL server", process.env.BENCH_PG_VERSION ?? "not used"],
    ["Redis server", process.env.BENCH_REDIS_VERSION ?? "not used"],
  ];
  const perRep = [];
  for (const [w, bySystem] of Object.entries(results)) {
    for (const [s, list] of Object.entries(bySystem)) {
      // The history runs say more per repetition, with semicolons of their own.
      const separator = list.some((r) => r.loop || "scrape" in r) ? "<br>" : "; ";
      perRep.push([w, s, list.map(describeRun).join(separator)]);
    }
  }
  const goalRows = goals(table.med, systemNames).map((g) => [g.goal, g.shown, g.ok === null ? "–" : g.ok ? "**met**" : "**missed**"]);
  const clusterRows = clusterGoals(table.med, systemNames).map((g) => [g.goal, g.shown, g.ok === null ? "–" : g.ok ? "**met**" : "**missed**"]);
  const languageRows = languageGoals(table.med, systemNames).map((g) => [g.goal, g.shown, g.ok === null ? "–" : g.ok ? "**met**" : "**missed**"]);
  const analysisFile = join(benchDir, "ANALYSIS.md");
  const analysis = existsSync(analysisFile) ? readFileSync(analysisFile, "utf8") : "";
  const text = `# Reprise benchmark results

Generated by \`bench/run.sh\` (issues 5, 11 and 13). Re-run with \`${process.env.BENCH_COMMAND ?? "npm run bench"}\`.

- **Date:** ${new Date().toISOString()}
- **Machine:** ${cpus().length} cores (${cpus()[0]?.model ?? "unknown CPU"}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory
- **Load average** (1, 5, 15 min) before the run: ${load}; after: ${loadavg().map((l) => l.toFixed(2)).join(", ")}. The machine is shared with other builds and tests, so every figure is noisy.
- **Command:** \`${process.env.BENCH_COMMAND ?? `node bench/src/main.mjs ${process.argv.slice(2).join(" ")}`}\`
- **Repetitions:** ${reps}; every figure is the median. Run time ${(run.seconds / 60).toFixed(1)} min.
- **Sizes:** W1 ${sizes.W1.toLocaleString("en")}, W2 ${sizes.W2.toLocaleString("en")}, W3 ${sizes.W3} (20 ms apart), W4 ${sizes.W4} (submitted 5 ms apart), W5 ${sizes.W5.toLocaleString("en")} pending retries${extras.seedSeconds ? ` (built through the API in ${extras.seedSeconds.toFixed(0)} s)` : ""}, W6 ${sizes.W6.toLocaleString("en")}${extras.history ? `, history ${sizes.history.toLocaleString("en")} finished executions (built through the API in ${extras.history.seconds.toFixed(0)} s)` : ""}.

## Versions

| component | version |
|---|---|
${md(versions)}

## Medians

"Reprise" is Reprise on SQLite; "Reprise on PG" is one \`reprise serve\` on the PostgreSQL server graphile-worker uses, and "Reprise on PG, 3 nodes" three of them on one database, with every execution submitted on one node, leased on another and reported to the third. Each ratio column sets the system before the slash against the one after it: throughput ratios are the Reprise system's over the other's; latency ratios are the other's over the Reprise system's. Above 1× means Reprise is better either way.

${md([table.header, table.header.map(() => "---"), ...table.rows])}

## Goals of issue 5

| goal | measured | |
|---|---|---|
${md(goalRows)}
${clusterRows.length ? `\n## Goals of issue 13 (Reprise on PostgreSQL)\n\n| goal | measured | |\n|---|---|---|\n${md(clusterRows)}\n` : ""}${languageRows.length ? `\n## Goals of issue 16 (every language against its peer)\n\n| goal | measured | |\n|---|---|---|\n${md(languageRows)}\n` : ""}${historySection(run)}
## Every repetition

| workload | system | per repetition |
|---|---|---|
${md(perRep)}
${failures.length ? `\n## Failures\n\n${failures.map((f) => `- ${f.workload} ${f.system} rep ${f.rep}: ${f.error}`).join("\n")}\n` : ""}
## How each system is run

${readFileSync(join(benchDir, "METHOD.md"), "utf8").trim()}

## Where Reprise's time goes (profile)

${profileSection(profiles)}
${analysis.trim()}
`;
  writeFileSync(file, text);
}
