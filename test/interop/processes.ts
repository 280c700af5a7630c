// The child processes of the interop suite: workers and callers in three
// languages, and the coordinator. Each one is tracked from spawn to exit so
// that the suite can wait on what a process prints (never on a fixed sleep)
// and so that a process which outlives its test fails that test.
import { spawn } from "node:child_process";
import type { ChildProcess, SpawnOptions } from "node:child_process";

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

export class Child {
  private text = "";
  private listeners = new Set<() => void>();
  readonly exited: Promise<Exit>;
  /** Set when the suite kills the process on purpose, so its exit is not a failure. */
  killedOnPurpose = false;

  constructor(
    readonly name: string,
    /** A worker runs until it is told to stop; a one-shot program must have exited before its test ends. */
    readonly kind: "worker" | "one-shot",
    readonly process: ChildProcess,
  ) {
    const append = (chunk: Buffer) => {
      this.text += chunk.toString("utf8");
      for (const listener of this.listeners) listener();
    };
    process.stdout?.on("data", append);
    process.stderr?.on("data", append);
    // "close", not "exit": only then has all of its output been read.
    this.exited = new Promise((resolve) => {
      process.once("close", (code, signal) => {
        resolve({ code, signal });
        for (const listener of this.listeners) listener();
      });
    });
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Everything the process printed so far, stdout and stderr interleaved. */
  output(): string {
    return this.text;
  }

  /** Resolves with the first match of `pattern` in the output; rejects on exit or after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      const check = () => {
        const match = this.text.match(pattern);
        if (match) {
          done();
          resolve(match);
        } else if (!this.running) {
          done();
          reject(new Error(`${this.name} exited before printing ${pattern}:\n${this.text}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${this.name} to print ${pattern}:\n${this.text}`));
      }, timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  /** Resolves with stdout and stderr once a one-shot program exits 0; rejects otherwise. */
  async finished(timeoutMs: number): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} still running after ${timeoutMs} ms:\n${this.text}`)), timeoutMs);
    });
    try {
      const exit = await Promise.race([this.exited, timeout]);
      if (exit.code !== 0) throw new Error(`${this.name} exited with ${exit.code ?? exit.signal}:\n${this.text}`);
      return this.text;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends SIGKILL by PID, as a crash would, and waits for the exit. */
  async crash(): Promise<Exit> {
    this.killedOnPurpose = true;
    process.kill(this.process.pid!, "SIGKILL");
    return this.exited;
  }
}

async function exitWithin(child: Child, ms: number): Promise<Exit | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([child.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

export class Processes {
  private children = new Set<Child>();

  start(name: string, kind: Child["kind"], command: string, args: string[], options: SpawnOptions = {}): Child {
    const spawned = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
    const child = new Child(name, kind, spawned);
    this.children.add(child);
    return child;
  }

  /**
   * Stops every process still running, by PID: SIGTERM, then SIGKILL for any
   * that has not exited within `graceMs`. Returns what went wrong: a one-shot
   * program still running, a worker that ignored SIGTERM, or one that exited
   * with an error. An empty list means nothing leaked.
   */
  async stopAll(graceMs: number): Promise<string[]> {
    const problems: string[] = [];
    const children = [...this.children];
    this.children.clear();
    await Promise.all(
      children.map(async (child) => {
        if (child.running) {
          if (child.kind === "one-shot") problems.push(`${child.name} (pid ${child.process.pid}) was still running at the end of the test`);
          // By PID, through the ChildProcess: no error if it exited a moment ago.
          child.process.kill("SIGTERM");
          if (!(await exitWithin(child, graceMs))) {
            problems.push(`${child.name} (pid ${child.process.pid}) did not exit within ${graceMs} ms of SIGTERM; killed:\n${child.output()}`);
            child.process.kill("SIGKILL");
            await child.exited;
            return;
          }
        }
        const exit = await child.exited;
        if (exit.code !== 0 && !child.killedOnPurpose) {
          problems.push(`${child.name} (pid ${child.process.pid}) exited with ${exit.code ?? exit.signal}:\n${child.output()}`);
        }
      }),
    );
    return problems;
  }
}
