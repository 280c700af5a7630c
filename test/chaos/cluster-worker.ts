// The chaos worker (worker.ts) for a cluster of coordinator nodes:
// `node dist/test/chaos/cluster-worker.js reprise-nodes:HOST:PORT,HOST:PORT,… WORKER_ID`.
// Every call goes to the next node that is up (round_robin), so a worker
// leases on one node, heartbeats on a second and reports on a third, and
// rides out the death of any one of them.
import { experimental } from "@grpc/grpc-js";
import type { ChannelOptions } from "@grpc/grpc-js";

const ROUND_ROBIN = { loadBalancingConfig: [{ round_robin: {} }], methodConfig: [] };

/** The ipv4 resolver's endpoints, with a service config that spreads calls over all of them. */
class NodesResolver implements experimental.Resolver {
  private readonly inner: experimental.Resolver;

  constructor(target: experimental.GrpcUri, listener: experimental.ResolverListener, options: ChannelOptions) {
    this.inner = experimental.createResolver(
      { scheme: "ipv4", path: target.path },
      (endpoints, attributes, _config, note) => listener(endpoints, attributes, experimental.statusOrFromValue(ROUND_ROBIN), note),
      options,
    );
  }

  updateResolution(): void {
    this.inner.updateResolution();
  }

  destroy(): void {
    this.inner.destroy();
  }

  static getDefaultAuthority(target: experimental.GrpcUri): string {
    return target.path.split(",")[0]!;
  }
}

experimental.registerResolver("reprise-nodes", NodesResolver);
await import("./worker.js");
