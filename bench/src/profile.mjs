// Where Reprise's time goes: one W1 (or W2) run with --cpu-prof on the coordinator and
// on the worker process, each profile summarised as self time per category
// (grpc-js, http2, protobuf, SQLite, coordinator logic, client, GC) and per
// function.
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { RepriseSystem } from "./systems/reprise.mjs";
import { throughput } from "./workloads.mjs";

export async function profileRun({ workDir, workload, mode, count, timeoutMs }) {
  const dirs = { coordinator: join(workDir, `prof-${workload}-coordinator`), worker: join(workDir, `prof-${workload}-worker`) };
  for (const dir of Object.values(dirs)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }
  const flags = (dir) => ["--cpu-prof", "--cpu-prof-dir", dir, "--cpu-prof-interval", "250"];
  const system = new RepriseSystem({ workDir, nodeArgs: flags(dirs.coordinator) });
  const result = await throughput(system, workload, { count, mode, timeoutMs, execArgv: flags(dirs.worker) });
  const summaries = {};
  for (const [role, dir] of Object.entries(dirs)) {
    const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
    if (!file) throw new Error(`no .cpuprofile was written in ${dir}`);
    summaries[role] = summarise(JSON.parse(readFileSync(join(dir, file), "utf8")));
  }
  return { workload, perSecond: result.perSecond, seconds: result.seconds, ...summaries };
}

function category(url, functionName) {
  if (functionName === "(garbage collector)") return "GC";
  if (functionName === "(idle)") return "idle";
  if (functionName === "(program)") return "V8 / native, unattributed";
  if (url.includes("/@grpc/grpc-js/")) return "grpc-js";
  if (url.startsWith("node:internal/http2") || url === "node:http2") return "http2 (node core)";
  if (url.startsWith("node:internal/streams") || url === "node:net" || url.startsWith("node:internal/stream_base")) return "streams / net (node core)";
  if (url.includes("/@bufbuild/protobuf/") || url.includes("/clients/ts/dist/gen/")) return "protobuf encode / decode";
  if (url.includes("better-sqlite3")) return "SQLite (better-sqlite3 and the store module's statements)";
  if (url.endsWith("/dist/server/store/sqlite/sqlite-store.js")) return "SQLite (better-sqlite3 and the store module's statements)";
  if (url.includes("/dist/server/")) return "coordinator logic";
  if (url.endsWith("/proto/ts/dist/grpc.js")) return "grpc adapter (proto/ts/src/grpc.ts)";
  if (url.includes("/clients/ts/dist/")) return "@reprise/client";
  if (url.includes("/bench/src/")) return "bench harness";
  if (url.startsWith("node:")) return "node core, other (timers, events, promises)";
  return "other";
}

/** Self time per category and per function, in ms, from a .cpuprofile. */
export function summarise(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  const selfUs = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  // A native frame (no url) belongs to the nearest JS caller's category, except
  // that native calls made from the store module are SQLite's own work.
  const categoryOf = (id) => {
    let node = byId.get(id);
    const { url, functionName } = node.callFrame;
    if (url || functionName.startsWith("(")) return category(url, functionName);
    for (let up = parentOf.get(id); up !== undefined; up = parentOf.get(up)) {
      node = byId.get(up);
      if (node.callFrame.url) {
        const c = category(node.callFrame.url, node.callFrame.functionName);
        return c;
      }
    }
    return "V8 / native, unattributed";
  };
  const categories = new Map();
  const functions = new Map();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    const cat = categoryOf(id);
    if (cat === "idle") {
      idleUs += us;
      continue;
    }
    totalUs += us;
    categories.set(cat, (categories.get(cat) ?? 0) + us);
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url ? `${url.replace(/^.*\/node_modules\//, "").replace(/^file:\/\/.*?\/(dist|clients)\//, "$1/")}:${lineNumber + 1}` : "(native)";
    const key = `${functionName || "(anonymous)"} ${where}`;
    const entry = functions.get(key) ?? { name: functionName || "(anonymous)", where, category: cat, us: 0 };
    entry.us += us;
    functions.set(key, entry);
  }
  const ms = (us) => us / 1000;
  return {
    busyMs: ms(totalUs),
    idleMs: ms(idleUs),
    categories: [...categories].map(([name, us]) => ({ name, ms: ms(us), share: us / totalUs })).sort((a, b) => b.ms - a.ms),
    top: [...functions.values()].sort((a, b) => b.us - a.us).slice(0, 25).map((f) => ({ ...f, ms: ms(f.us), share: f.us / totalUs })),
  };
}
