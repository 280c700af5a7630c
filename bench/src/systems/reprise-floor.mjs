// "reprise-plain" with its coordinator replaced by floor-relay.mjs: the same
// proto-loader client and worker, against a process that answers Reprise's
// calls through grpc-js with no store and no rule. Its W1 and W3 are what the
// transport alone costs a plain client, the floor under reprise-plain's.
// W2 and W4 need retries, which the relay does not have.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { track, within } from "../common.mjs";
import { ReprisePlainSystem } from "./reprise-plain.mjs";

const relayPath = fileURLToPath(new URL("../floor-relay.mjs", import.meta.url));

export class RepriseFloorSystem extends ReprisePlainSystem {
  name = "reprise-floor";
  label = "gRPC floor (plain client, a relay with no store)";
  workloads = ["W1", "W3"];

  async serve() {
    const child = track(fork(relayPath, [], { stdio: ["ignore", "ignore", "inherit", "ipc"] }));
    const { port } = await within(new Promise((resolve) => child.once("message", resolve)), 30_000, "floor relay");
    return {
      address: `127.0.0.1:${port}`,
      memory: () => ({ peakRssMiB: NaN }),
      stop: async () => {
        child.kill("SIGTERM");
      },
    };
  }
}
