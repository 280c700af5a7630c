// The coordinator nodes of a chaos run: `reprise serve` processes on one
// database, each keeping its port across SIGKILLs and restarts. A node that
// exits when nobody stopped it has crashed: that is a finding, not noise. It
// is started again, as a supervisor would, so that the run goes on and the
// other checks still mean something.
import { freePort, spawnCoordinator } from "../process-helpers.js";
import type { ChildCoordinator } from "../process-helpers.js";

export class ChaosNodes {
  /** What each unexpected exit said. */
  readonly crashes: string[] = [];
  readonly addresses: string[];
  private readonly nodes: (ChildCoordinator | null)[];
  private readonly stopping = new Set<ChildCoordinator>();
  /** A restart of each node under way, after a crash. */
  private readonly restarting = new Map<number, Promise<void>>();
  private stopped = false;

  private constructor(
    private readonly db: string,
    private readonly ports: number[],
  ) {
    this.addresses = ports.map((port) => `127.0.0.1:${port}`);
    this.nodes = ports.map(() => null);
  }

  /** Ports for `count` nodes; start() then starts them. */
  static async create(db: string, count: number): Promise<ChaosNodes> {
    const ports: number[] = [];
    while (ports.length < count) {
      const port = await freePort();
      if (!ports.includes(port)) ports.push(port);
    }
    return new ChaosNodes(db, ports);
  }

  get size(): number {
    return this.ports.length;
  }

  /** Starts every node, one after the other (the first one applies a new database's migrations). */
  async start(): Promise<void> {
    for (let i = 0; i < this.size; i++) await this.spawn(i);
  }

  /** SIGKILL, then the same node again on the same port. */
  async killAndRestart(i: number): Promise<void> {
    await this.restarting.get(i);
    const node = this.nodes[i];
    if (node) {
      this.stopping.add(node);
      node.child.kill("SIGKILL");
      await node.exited;
      node.closeClients();
    }
    await this.spawn(i);
  }

  /** A node that is up, for the run's own reads. */
  any(): ChildCoordinator {
    const up = this.nodes.find((node) => node !== null && node.child.exitCode === null && node.child.signalCode === null && !this.stopping.has(node));
    if (!up) throw new Error("no coordinator node is up");
    return up;
  }

  /** SIGTERM to every node; each must exit cleanly. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.restarting.values());
    await Promise.all(
      this.nodes.map(async (node, i) => {
        if (!node || this.stopping.has(node) || node.child.exitCode !== null || node.child.signalCode !== null) return;
        this.stopping.add(node);
        node.child.kill("SIGTERM");
        const { code, signal } = await node.exited;
        node.closeClients();
        if (code !== 0) this.crashes.push(`node ${i} did not exit cleanly on SIGTERM (${signal ?? code}): ${node.stderr().slice(-2000)}`);
      }),
    );
  }

  /** SIGKILL to whatever is still running. */
  async kill(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.restarting.values());
    await Promise.all(
      this.nodes.map(async (node) => {
        if (!node) return;
        this.stopping.add(node);
        if (node.child.exitCode === null && node.child.signalCode === null) {
          node.child.kill("SIGKILL");
          await node.exited;
        }
        node.closeClients();
      }),
    );
  }

  private async spawn(i: number): Promise<void> {
    const node = await spawnCoordinator(this.db, this.ports[i]);
    this.nodes[i] = node;
    void node.exited.then(({ code, signal }) => {
      if (this.stopping.has(node)) return;
      this.crashes.push(`node ${i} (${this.addresses[i]}) exited by itself (${signal ?? code}) at ${new Date().toISOString()}: ${node.stderr().slice(-3000)}`);
      node.closeClients();
      this.restarting.set(i, this.restartAfterCrash(i).finally(() => this.restarting.delete(i)));
    });
  }

  /** Until the node is up again: it cannot start while the database is down. */
  private async restartAfterCrash(i: number): Promise<void> {
    while (!this.stopped) {
      try {
        return await this.spawn(i);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }
}
