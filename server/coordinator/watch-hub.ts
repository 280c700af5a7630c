// The open WatchExecution streams, by execution. Each watcher receives every
// snapshot newer than the last it was sent, in commit order, and is finished
// after the terminal one.
import type { Execution } from "@reprise/wire";

export interface Watcher {
  /** The version of the last snapshot sent; older or equal ones are skipped. */
  lastVersion: number;
  send(snapshot: Execution): void;
  /** Called after the terminal snapshot was sent. */
  finish(): void;
  /** Called when the coordinator shuts down. */
  fail(error: Error): void;
}

export class WatchHub {
  private readonly bySeq = new Map<number, Set<Watcher>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  watching(seq: number): boolean {
    return this.bySeq.has(seq);
  }

  /** The executions watched now. */
  watched(): number[] {
    return [...this.bySeq.keys()];
  }

  /** The watched executions whose watchers have not all been sent `versions`' version (execution seq -> version). */
  behind(versions: { seq: number; version: number }[]): number[] {
    return versions
      .filter(({ seq, version }) => [...(this.bySeq.get(seq) ?? [])].some((watcher) => watcher.lastVersion < version))
      .map(({ seq }) => seq);
  }

  add(seq: number, watcher: Watcher): () => void {
    let set = this.bySeq.get(seq);
    if (!set) this.bySeq.set(seq, (set = new Set()));
    set.add(watcher);
    this.count++;
    return () => this.remove(seq, watcher);
  }

  private remove(seq: number, watcher: Watcher): void {
    const set = this.bySeq.get(seq);
    if (!set?.delete(watcher)) return;
    this.count--;
    if (set.size === 0) this.bySeq.delete(seq);
  }

  publish(seq: number, version: number, snapshot: Execution, terminal: boolean): void {
    for (const watcher of this.bySeq.get(seq) ?? []) {
      if (version <= watcher.lastVersion) continue;
      watcher.lastVersion = version;
      watcher.send(snapshot);
      if (terminal) {
        this.remove(seq, watcher);
        watcher.finish();
      }
    }
  }

  failAll(error: Error): void {
    for (const [seq, set] of [...this.bySeq]) {
      for (const watcher of [...set]) {
        this.remove(seq, watcher);
        watcher.fail(error);
      }
    }
  }
}
