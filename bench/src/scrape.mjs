// Reading a coordinator's Prometheus metrics (`reprise serve --metrics-listen`)
// for the history phase: timed scrapes, and how long the event loop was held
// between two of them.
//
// Two sources, both read from the difference between the first and the last
// scrape of a window:
// - reprise_event_loop_hold_seconds{operation}: a histogram of how long each
//   store call or timer tick held the loop. A histogram only bounds its largest
//   observation by a bucket: "max hold ≤ X ms" is the upper bound of the
//   highest bucket that gained observations. Builds without it show "n/a".
// - reprise_nodejs_eventloop_lag_max_seconds: prom-client's
//   monitorEventLoopDelay, which every scrape reads and resets. It samples
//   every 10 ms and counts the interval itself, so a hold of H ms reads
//   between H and H + 10 ms; it also sees what the histogram does not time
//   (GC, gRPC and HTTP/2 work, the scrape's own collectors), and the time
//   the process waited for a core. The harness measures its own loop the same
//   way over the window: when its delay is as large, the machine was busy.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { now } from "./common.mjs";

const HOLD = "reprise_event_loop_hold_seconds";
const DELAY_MAX = "reprise_nodejs_eventloop_lag_max_seconds";

/** GET /metrics, timed from the request to the last byte of the body. */
export async function scrape(url, timeoutMs = 30_000) {
  const started = now();
  let response, text;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    text = await response.text();
  } catch (error) {
    throw new Error(`GET ${url}: ${error?.cause?.message ?? error?.message ?? error}`);
  }
  const ms = now() - started;
  if (response.status !== 200) throw new Error(`GET ${url}: HTTP ${response.status}: ${text.slice(0, 200)}`);
  return { text, ms };
}

function labelsOf(text) {
  const labels = {};
  for (const [, key, value] of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
  return labels;
}

/** The hold histogram's cumulative bucket counts, operation → le → count; undefined when the metric is absent. */
export function holdBuckets(text) {
  if (!text.includes(`# TYPE ${HOLD} histogram`)) return undefined;
  const buckets = new Map();
  for (const [, labelText, value] of text.matchAll(new RegExp(`^${HOLD}_bucket\\{([^}]*)\\} (\\S+)`, "gm"))) {
    const { operation = "", le } = labelsOf(labelText);
    if (!buckets.has(operation)) buckets.set(operation, new Map());
    buckets.get(operation).set(le === "+Inf" ? Infinity : Number(le), Number(value));
  }
  return buckets;
}

/**
 * The largest hold between two scrapes: `maxMs` is the upper bound of the
 * highest bucket that gained observations (Infinity when only +Inf did),
 * `aboveMs` the bound below it, so the largest hold is in (aboveMs, maxMs].
 */
export function largestHold(before, after) {
  if (after === undefined) return { present: false };
  let largest = { present: true, observations: 0, maxMs: 0, aboveMs: 0, operations: [] };
  for (const [operation, counts] of after) {
    let earlier = before?.get(operation);
    // Counts only grow; if any fell, the histogram was reset in between and `after` alone is the window.
    if (earlier && [...counts].some(([le, count]) => count < (earlier.get(le) ?? 0))) earlier = undefined;
    const bounds = [...counts.keys()].sort((a, b) => a - b);
    const gained = (le) => counts.get(le) - (earlier?.get(le) ?? 0);
    const total = gained(Infinity);
    if (!(total > 0)) continue;
    largest.observations += total;
    const at = bounds.findIndex((le) => gained(le) === total);
    const maxMs = bounds[at] * 1000;
    const aboveMs = at > 0 ? bounds[at - 1] * 1000 : 0;
    if (maxMs > largest.maxMs) largest = { ...largest, maxMs, aboveMs, operations: [operation] };
    else if (maxMs === largest.maxMs) largest.operations.push(operation);
  }
  return largest;
}

export function delayMaxMs(text) {
  const match = text.match(new RegExp(`^${DELAY_MAX}(?:\\{[^}]*\\})? (\\S+)`, "m"));
  return match ? Number(match[1]) * 1000 : NaN;
}

/** "≤ 5 ms (commit)", "> 2500 ms (timer)", "none observed", or "n/a" without the histogram. */
export function describeHold(hold) {
  if (!hold?.present) return "n/a";
  if (hold.observations === 0) return "none observed";
  const bound = Number.isFinite(hold.maxMs) ? `≤ ${formatMs(hold.maxMs)} ms` : `> ${formatMs(hold.aboveMs)} ms`;
  return `${bound} (${hold.operations.join(", ")})`;
}

const formatMs = (ms) => (ms >= 10 ? ms.toFixed(0) : String(Number(ms.toPrecision(2))));

/** The worst of some windows: "hold ≤ 5 ms (commit); delay 14.2 ms (harness 11.0 ms)". */
export function describeLoops(windows) {
  const worst = (key) => {
    const values = windows.map((w) => w[key]).filter(Number.isFinite);
    return values.length ? `${Math.max(...values).toFixed(1)} ms` : "n/a";
  };
  return `hold ${describeHold(windows.map((w) => w.hold).reduce(worseHold))}; delay ${worst("delayMaxMs")} (harness ${worst("harnessDelayMaxMs")})`;
}

/** The larger of two holds, for the worst over phases and repetitions. */
export function worseHold(a, b) {
  if (!a?.present) return b?.present ? b : a ?? b;
  if (!b?.present) return a;
  if (b.maxMs > a.maxMs) return { ...b, observations: a.observations + b.observations };
  if (a.maxMs > b.maxMs) return { ...a, observations: a.observations + b.observations };
  return { ...a, observations: a.observations + b.observations, operations: [...new Set([...a.operations, ...b.operations])] };
}

/**
 * A measured stretch of a coordinator's life: opened with one scrape and
 * closed with another. Every scrape in between goes through it, so that the
 * event-loop delay, which each scrape resets, is the maximum over all of them.
 */
export class LoopWindow {
  static async open(url) {
    const window = new LoopWindow(url);
    window.first = await scrape(url);
    window.harness = monitorEventLoopDelay({ resolution: 10 });
    window.harness.enable();
    return window;
  }

  constructor(url) {
    this.url = url;
    this.delayMaxMs = -Infinity;
  }

  async scrape() {
    const result = await scrape(this.url);
    this.delayMaxMs = Math.max(this.delayMaxMs, delayMaxMs(result.text));
    return result;
  }

  async close() {
    this.harness.disable();
    const last = await this.scrape();
    return {
      hold: largestHold(holdBuckets(this.first.text), holdBuckets(last.text)),
      delayMaxMs: Number.isFinite(this.delayMaxMs) ? this.delayMaxMs : NaN,
      harnessDelayMaxMs: this.harness.count > 0 ? this.harness.max / 1e6 : NaN,
    };
  }
}
