// WatchExecution streams recorded message by message during a chaos run, and
// the checks on them: snapshots never go backwards, an attempt that ended
// never changes, and each watch sees the terminal state once, as its last
// message, after which its stream ends. A stream cut by a node's death is
// opened again on the next node, as a client would.
import * as grpc from "@grpc/grpc-js";
import { ExecutionService, ExecutionState, AttemptState, createServiceClient } from "@reprise/wire";
import type { Execution, ServiceClient } from "@reprise/wire";
import { timestampMs } from "@bufbuild/protobuf/wkt";

export interface WatchStream {
  node: number;
  snapshots: Execution[];
  /** "ok", the gRPC code name the stream failed with, or "open" when the run gave up on it. */
  end: string;
}

export interface RecordedWatch {
  id: string;
  streams: WatchStream[];
}

export type ExecutionClient = ServiceClient<typeof ExecutionService>;

/** One channel per node that comes back quickly after the node restarts. */
export function executionClients(addresses: string[], extra: grpc.ClientOptions = {}): ExecutionClient[] {
  const options = { ...extra, "grpc.initial_reconnect_backoff_ms": 50, "grpc.max_reconnect_backoff_ms": 500 };
  return addresses.map((address) => createServiceClient(ExecutionService, address, grpc.credentials.createInsecure(), options));
}

const TERMINAL = new Set([ExecutionState.SUCCEEDED, ExecutionState.FAILED, ExecutionState.ABANDONED, ExecutionState.TIMED_OUT, ExecutionState.CANCELLED]);
/** Worth watching again: the node went away, or its watch quota was full. */
const AGAIN = new Set<number>([grpc.status.UNAVAILABLE, grpc.status.CANCELLED, grpc.status.RESOURCE_EXHAUSTED]);

/** Watches `id` from node `first` until a stream ends after the terminal state, or `signal` aborts. */
export async function recordWatch(clients: ExecutionClient[], first: number, id: string, signal: AbortSignal): Promise<RecordedWatch> {
  const watch: RecordedWatch = { id, streams: [] };
  for (let node = first; !signal.aborted; node = (node + 1) % clients.length) {
    const stream: WatchStream = { node, snapshots: [], end: "open" };
    watch.streams.push(stream);
    try {
      for await (const { execution } of clients[node]!.watchExecution({ executionId: id }, { signal })) if (execution) stream.snapshots.push(execution);
      stream.end = "ok";
      if (TERMINAL.has(stream.snapshots.at(-1)?.state as ExecutionState)) return watch;
    } catch (error) {
      if (signal.aborted) break;
      const code = (error as { code?: number }).code;
      stream.end = grpc.status[code ?? grpc.status.UNKNOWN] ?? String(code);
      if (!AGAIN.has(code as number) || TERMINAL.has(stream.snapshots.at(-1)?.state as ExecutionState)) return watch;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return watch;
}

/** 2n before attempt n + 1 is leased, 2n - 1 while attempt n runs, 2n + 1 once ended after n attempts. */
function progress(snapshot: Execution): number {
  const n = snapshot.attempts.length;
  if (snapshot.state === ExecutionState.PENDING) return 2 * n;
  if (snapshot.state === ExecutionState.RUNNING) return 2 * n - 1;
  return 2 * n + 1;
}

/** An undelivered lease undone: attempt n, still running, is gone again and the execution PENDING as before it. */
function leaseReturned(before: Execution, after: Execution): boolean {
  return (
    before.state === ExecutionState.RUNNING &&
    after.state === ExecutionState.PENDING &&
    after.attempts.length === before.attempts.length - 1 &&
    before.attempts.at(-1)?.state === AttemptState.RUNNING
  );
}

const ms = (t: Execution["finishedAt"]) => (t ? timestampMs(t) : null);

/** Violations in the recorded watches, against the stored executions by id. */
export function checkWatches(watches: RecordedWatch[], stored: Map<string, { state: number; attempt_count: number; finished_at: number | null }>): string[] {
  const violations: string[] = [];
  for (const watch of watches) {
    const name = `watch of ${watch.id} (streams on nodes ${watch.streams.map((s) => `${s.node}:${s.end}`).join(" ")})`;
    const messages = watch.streams.flatMap((stream) => stream.snapshots.map((snapshot) => ({ stream, snapshot })));
    const found = new Set<string>();
    /** Each ended attempt as first seen: "STATE at ms". */
    const ended = new Map<number, string>();
    messages.forEach(({ snapshot: after }, i) => {
      const before = messages[i - 1]?.snapshot;
      if (before && progress(after) < progress(before) && !leaseReturned(before, after)) {
        found.add(`went back from ${ExecutionState[before.state]} with ${before.attempts.length} attempts to ${ExecutionState[after.state]} with ${after.attempts.length}`);
      }
      for (const [number, first] of ended) {
        const later = after.attempts[number - 1];
        const shown = later ? `${AttemptState[later.state]} at ${ms(later.finishedAt)}` : "nothing";
        if (shown !== first) found.add(`attempt ${number} ended ${first}, then showed ${shown}`);
      }
      for (const attempt of after.attempts) {
        if (attempt.state !== AttemptState.RUNNING && !ended.has(attempt.number)) ended.set(attempt.number, `${AttemptState[attempt.state]} at ${ms(attempt.finishedAt)}`);
      }
    });
    for (const finding of found) violations.push(`${name}: ${finding}`);
    const terminals = messages.filter((m) => TERMINAL.has(m.snapshot.state));
    if (terminals.length !== 1) violations.push(`${name}: saw the terminal state ${terminals.length} times`);
    const end = terminals[0];
    if (end && end.snapshot !== messages.at(-1)!.snapshot) violations.push(`${name}: a snapshot came after the terminal state`);
    if (end && end.stream.end !== "ok") violations.push(`${name}: the stream did not end cleanly after the terminal state: ${end.stream.end}`);
    for (const stream of watch.streams) {
      if (stream.end === "ok" && !TERMINAL.has(stream.snapshots.at(-1)?.state as ExecutionState)) violations.push(`${name}: a stream on node ${stream.node} ended without the terminal state`);
    }
    const row = stored.get(watch.id);
    if (end && row && (end.snapshot.state !== row.state || end.snapshot.attempts.length !== row.attempt_count || ms(end.snapshot.finishedAt) !== row.finished_at)) {
      violations.push(
        `${name}: ended with ${ExecutionState[end.snapshot.state]} after ${end.snapshot.attempts.length} attempts at ${ms(end.snapshot.finishedAt)}, ` +
          `but the database says ${ExecutionState[row.state]} after ${row.attempt_count} at ${row.finished_at}`,
      );
    }
  }
  return violations;
}
