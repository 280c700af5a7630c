// Runs the real `reprise serve` binary as a child process, for crash, shutdown
// and CLI tests. `npm test` builds dist/ first.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { ExecutionService, WorkerService, createServiceClient } from "@reprise/wire";
import type { ServiceClient } from "@reprise/wire";
import { afterEach } from "vitest";
import { until } from "./helpers.js";

export const CLI = fileURLToPath(new URL("../dist/server/cli.js", import.meta.url));

const children = new Set<ChildProcess>();

afterEach(() => {
  const leaked = [...children].filter((child) => child.exitCode === null && child.signalCode === null);
  children.clear();
  for (const child of leaked) child.kill("SIGKILL");
  if (leaked.length > 0) throw new Error(`test left ${leaked.length} coordinator process(es) running`);
});

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

export interface ChildCoordinator {
  child: ChildProcess;
  address: string;
  executions: ServiceClient<typeof ExecutionService>;
  workers: ServiceClient<typeof WorkerService>;
  stderr(): string;
  /** Resolves with the exit code or signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  closeClients(): void;
  /** SIGKILL: no shutdown, no flush beyond what SQLite already committed. Closes the clients too. */
  kill(): Promise<void>;
}

/** Starts `reprise serve` and resolves once it answers requests. */
export async function spawnCoordinator(db: string, port?: number, extraArgs: string[] = []): Promise<ChildCoordinator> {
  const listenPort = port ?? (await freePort());
  const address = `127.0.0.1:${listenPort}`;
  const child = spawn(process.execPath, [CLI, "serve", "--listen", address, "--db", db, ...extraArgs], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const executions = createServiceClient(ExecutionService, address);
  const workers = createServiceClient(WorkerService, address);
  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`reprise serve exited with ${child.exitCode}: ${stderr}`);
      return stderr.includes("serving on");
    },
    15_000,
    "reprise serve to start",
  );
  return {
    child,
    address,
    executions,
    workers,
    stderr: () => stderr,
    exited,
    closeClients() {
      executions.raw.close();
      workers.raw.close();
    },
    async kill() {
      child.kill("SIGKILL");
      await exited;
      executions.raw.close();
      workers.raw.close();
    },
  };
}
