// Per-connection quotas for calls that hold server memory while they wait
// (long-polls and watches), so that no client can make memory grow without
// bound. A connection is identified by its peer address (host and port).
import { status } from "@grpc/grpc-js";
import { StatusError } from "@reprise/wire";

export class ConnectionQuota {
  private readonly held = new Map<string, number>();

  constructor(
    private readonly what: string,
    private readonly perConnection: number,
    private readonly flag: string,
  ) {}

  /** Takes one unit for `peer`, or fails with RESOURCE_EXHAUSTED. Returns its release. */
  acquire(peer: string): () => void {
    const count = this.held.get(peer) ?? 0;
    if (count >= this.perConnection) {
      throw new StatusError(
        status.RESOURCE_EXHAUSTED,
        `${this.what}: this connection already has ${count} open (the limit is ${this.perConnection}; reprise serve ${this.flag})`,
      );
    }
    this.held.set(peer, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.held.get(peer) ?? 1) - 1;
      if (left === 0) this.held.delete(peer);
      else this.held.set(peer, left);
    };
  }
}
