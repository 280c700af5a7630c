// TLS, mutual TLS, bearer tokens with roles, and per-connection quotas.
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { ExecutionService, WorkerService, createServiceClient } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { Authorizer } from "../server/api/auth.js";
import { startServer } from "../server/api/server.js";
import type { RunningServer, ServerOptions } from "../server/api/server.js";
import { makeCertificates } from "./certificates.js";
import { seconds, startTestCoordinator, tempDir, until } from "./helpers.js";
import { CLI } from "./process-helpers.js";

async function serve(options: Partial<ServerOptions>): Promise<RunningServer> {
  return startServer({ listen: "127.0.0.1:0", db: join(tempDir(), "r.db"), durability: "normal", ...options });
}

const codeOf = (promise: Promise<unknown>) => promise.then(() => grpc.status.OK, (error: { code: number }) => error.code);

describe("TLS", () => {
  test("with --tls-cert and --tls-key the coordinator serves TLS, and plaintext clients cannot talk to it", async () => {
    const certs = makeCertificates();
    const server = await serve({ tls: { cert: certs.serverCert, key: certs.serverKey } });
    const address = `127.0.0.1:${server.port}`;
    const secure = createServiceClient(ExecutionService, address, grpc.credentials.createSsl(certs.ca));
    const plain = createServiceClient(ExecutionService, address);
    try {
      expect((await secure.submit({ task: "t" })).execution?.task).toBe("t");
      expect(await codeOf(plain.submit({ task: "t" }, { deadline: new Date(Date.now() + 2000) }))).toBe(grpc.status.UNAVAILABLE);
    } finally {
      secure.raw.close();
      plain.raw.close();
      await server.shutdown(500);
    }
  });

  test("with --tls-client-ca only clients with a certificate it signed get in (mutual TLS)", async () => {
    const certs = makeCertificates();
    const server = await serve({ tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca } });
    const address = `127.0.0.1:${server.port}`;
    const withCert = createServiceClient(ExecutionService, address, grpc.credentials.createSsl(certs.ca, certs.clientKey, certs.clientCert));
    const withoutCert = createServiceClient(ExecutionService, address, grpc.credentials.createSsl(certs.ca));
    try {
      expect(await codeOf(withCert.submit({ task: "t" }))).toBe(grpc.status.OK);
      expect(await codeOf(withoutCert.submit({ task: "t" }, { deadline: new Date(Date.now() + 2000) }))).toBe(grpc.status.UNAVAILABLE);
    } finally {
      withCert.raw.close();
      withoutCert.raw.close();
      await server.shutdown(500);
    }
  });
});

describe("the operator commands over TLS", () => {
  const exec = promisify(execFile);
  const reprise = (...args: string[]) =>
    exec(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: "1" }, timeout: 20_000 }).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: "" }),
      (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
    );

  test("with --tls-client-cert and --tls-client-key the commands reach a coordinator that requires client certificates; each TLS mismatch is named, with what to give", async () => {
    const certs = makeCertificates();
    const dir = tempDir();
    const file = (name: string, pem: Buffer) => (writeFileSync(join(dir, name), pem), join(dir, name));
    const ca = file("ca.pem", certs.ca);
    const cert = file("client.pem", certs.clientCert);
    const key = file("client.key", certs.clientKey);
    const mutual = await serve({ tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca } });
    const plain = await serve({});
    const mutualAddress = `127.0.0.1:${mutual.port}`;
    const plainAddress = `127.0.0.1:${plain.port}`;
    try {
      expect(await reprise("ls", "--addr", mutualAddress, "--tls-ca", ca, "--tls-client-cert", cert, "--tls-client-key", key)).toMatchObject({ code: 0, stdout: "no executions\n" });

      const withoutCert = await reprise("ls", "--addr", mutualAddress, "--tls-ca", ca);
      expect(withoutCert.code).toBe(3);
      expect(withoutCert.stderr).toBe(`reprise: UNAVAILABLE: the coordinator at ${mutualAddress} requires a client certificate (reprise serve --tls-client-ca); give --tls-client-cert and --tls-client-key\n`);
      const withoutTls = await reprise("ls", "--addr", mutualAddress);
      expect(withoutTls.code).toBe(3);
      expect(withoutTls.stderr).toMatch(new RegExp(`^reprise: UNAVAILABLE: something at ${mutualAddress} closed the connection\\. If the coordinator serves TLS \\(reprise serve --tls-cert\\), connect with --tls-ca\n`));
      const wrongCa = await reprise("ls", "--addr", mutualAddress, "--tls-ca", cert, "--tls-client-cert", cert, "--tls-client-key", key);
      expect(wrongCa.code).toBe(3);
      expect(wrongCa.stderr).toMatch(new RegExp(`^reprise: UNAVAILABLE: the coordinator at ${mutualAddress} answered with a certificate that --tls-ca does not verify: `));
      const tlsToPlain = await reprise("ls", "--addr", plainAddress, "--tls-ca", ca);
      expect(tlsToPlain.code).toBe(3);
      expect(tlsToPlain.stderr).toMatch(new RegExp(`^reprise: UNAVAILABLE: the coordinator at ${plainAddress} does not serve TLS; leave out --tls-ca and REPRISE_TLS_CA\n`));

      expect(await reprise("ls", "--addr", mutualAddress, "--tls-ca", ca, "--tls-client-cert", cert)).toMatchObject({ code: 2, stderr: "reprise: --tls-client-cert and --tls-client-key: give both or neither\n" });
      expect(await reprise("ls", "--addr", mutualAddress, "--tls-ca", join(dir, "missing.pem"))).toMatchObject({ code: 2, stderr: `reprise: --tls-ca: cannot read ${join(dir, "missing.pem")}: ENOENT: no such file or directory, open '${join(dir, "missing.pem")}'\n` });
    } finally {
      await mutual.shutdown(500);
      await plain.shutdown(500);
    }
  });
});

describe("the operator commands with tokens", () => {
  test("a command refused for want of a token says how to give one: --token or REPRISE_TOKEN", async () => {
    const file = join(tempDir(), "tokens");
    writeFileSync(file, "caller caller-token-0123456789\n");
    const server = await serve({ authorizer: Authorizer.fromFile(file) });
    const address = `127.0.0.1:${server.port}`;
    try {
      const refused = await promisify(execFile)(process.execPath, [CLI, "ls", "--addr", address]).catch((error: { code: number; stderr: string }) => error);
      expect(refused).toMatchObject({ code: 3, stderr: "reprise: UNAUTHENTICATED: authorization: a bearer token is required; give one with --token or REPRISE_TOKEN\n" });
      const { stdout } = await promisify(execFile)(process.execPath, [CLI, "ls", "--addr", address], { env: { ...process.env, REPRISE_TOKEN: "caller-token-0123456789" } });
      expect(stdout).toBe("no executions\n");
    } finally {
      await server.shutdown(500);
    }
  });
});

describe("bearer tokens with roles", () => {
  const TOKENS = { worker: "worker-token-0123456789", caller: "caller-token-0123456789", admin: "admin-token-01234567890" };

  async function withAuth(run: (call: (token: string | null) => { executions: ReturnType<typeof createServiceClient<typeof ExecutionService>>; workers: ReturnType<typeof createServiceClient<typeof WorkerService>>; metadata: grpc.Metadata }, address: string) => Promise<void>) {
    const file = join(tempDir(), "tokens");
    writeFileSync(file, `# role token\nworker ${TOKENS.worker}\ncaller ${TOKENS.caller}\n\nadmin ${TOKENS.admin}\n`);
    const server = await serve({ authorizer: Authorizer.fromFile(file) });
    const address = `127.0.0.1:${server.port}`;
    const executions = createServiceClient(ExecutionService, address);
    const workers = createServiceClient(WorkerService, address);
    try {
      await run((token) => {
        const metadata = new grpc.Metadata();
        if (token !== null) metadata.set("authorization", `Bearer ${token}`);
        return { executions, workers, metadata };
      }, address);
    } finally {
      executions.raw.close();
      workers.raw.close();
      await server.shutdown(500);
    }
  }

  const rpcs = {
    submit: (c: { executions: ReturnType<typeof createServiceClient<typeof ExecutionService>>; metadata: grpc.Metadata }) => c.executions.submit({ task: "t" }, { metadata: c.metadata }),
    cancel: (c: { executions: ReturnType<typeof createServiceClient<typeof ExecutionService>>; metadata: grpc.Metadata }) => c.executions.cancelExecution({ executionId: "x" }, { metadata: c.metadata }),
    list: (c: { executions: ReturnType<typeof createServiceClient<typeof ExecutionService>>; metadata: grpc.Metadata }) => c.executions.listExecutions({}, { metadata: c.metadata }),
    lease: (c: { workers: ReturnType<typeof createServiceClient<typeof WorkerService>>; metadata: grpc.Metadata }) => c.workers.leaseAttempts({ workerId: "w", tasks: ["t"] }, { metadata: c.metadata }),
    heartbeat: (c: { workers: ReturnType<typeof createServiceClient<typeof WorkerService>>; metadata: grpc.Metadata }) => c.workers.heartbeat({}, { metadata: c.metadata }),
  };
  // What each token may do: OK, or the code it gets. `cancel` of an unknown id is NOT_FOUND once allowed.
  const expected: [string, keyof typeof rpcs, grpc.status][] = [
    ["no token", "submit", grpc.status.UNAUTHENTICATED],
    ["no token", "lease", grpc.status.UNAUTHENTICATED],
    ["an unknown token", "submit", grpc.status.UNAUTHENTICATED],
    ["an unknown token", "heartbeat", grpc.status.UNAUTHENTICATED],
    ["the worker token", "lease", grpc.status.OK],
    ["the worker token", "heartbeat", grpc.status.OK],
    ["the worker token", "submit", grpc.status.PERMISSION_DENIED],
    ["the worker token", "cancel", grpc.status.PERMISSION_DENIED],
    ["the worker token", "list", grpc.status.PERMISSION_DENIED],
    ["the caller token", "submit", grpc.status.OK],
    ["the caller token", "list", grpc.status.OK],
    ["the caller token", "cancel", grpc.status.NOT_FOUND],
    ["the caller token", "lease", grpc.status.PERMISSION_DENIED],
    ["the caller token", "heartbeat", grpc.status.PERMISSION_DENIED],
    ["the admin token", "submit", grpc.status.OK],
    ["the admin token", "cancel", grpc.status.NOT_FOUND],
    ["the admin token", "lease", grpc.status.OK],
    ["the admin token", "heartbeat", grpc.status.OK],
  ];
  const tokenFor: Record<string, string | null> = {
    "no token": null,
    "an unknown token": "not-a-known-token-at-all",
    "the worker token": TOKENS.worker,
    "the caller token": TOKENS.caller,
    "the admin token": TOKENS.admin,
  };

  test("every role against every service: a missing or unknown token is UNAUTHENTICATED and a wrong role is PERMISSION_DENIED", async () => {
    await withAuth(async (as) => {
      const got: [string, string, grpc.status][] = [];
      for (const [who, rpc] of expected) got.push([who, rpc, await codeOf(rpcs[rpc](as(tokenFor[who]!) as never))]);
      expect(got).toEqual(expected);
    });
  });

  test("a refused call changes nothing", async () => {
    await withAuth(async (as) => {
      await codeOf(rpcs.submit(as(TOKENS.worker) as never));
      const { executions } = await as(TOKENS.admin).executions.listExecutions({}, { metadata: as(TOKENS.admin).metadata });
      expect(executions).toEqual([]);
    });
  });

  test("the health service stays open without a token", async () => {
    await withAuth(async (_, address) => {
      const client = new grpc.Client(address, grpc.credentials.createInsecure());
      try {
        const reply = await new Promise<Buffer>((resolve, reject) =>
          client.makeUnaryRequest("/grpc.health.v1.Health/Check", (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (error, value) => (error ? reject(error) : resolve(value!))),
        );
        expect([...reply]).toEqual([0x08, 0x01]); // status: SERVING
      } finally {
        client.close();
      }
    });
  });

  test("a token file with a bad line is refused at start, naming the line", () => {
    const file = join(tempDir(), "tokens");
    writeFileSync(file, "worker short\n");
    expect(() => Authorizer.fromFile(file)).toThrow(/line 1/);
    writeFileSync(file, "superuser aaaaaaaaaaaaaaaaaaaa\n");
    expect(() => Authorizer.fromFile(file)).toThrow(/line 1: expected "ROLE TOKEN"/);
  });
});

describe("per-connection quotas", () => {
  test("long-polls beyond the per-connection limit are RESOURCE_EXHAUSTED and do not pile up", async () => {
    const c = await startTestCoordinator({ limits: { maxLongPollsPerConnection: 2 } });
    try {
      const polls = [1, 2].map(() => c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], wait: seconds(60) }));
      await until(() => c.server.coordinator.stats.longPolls === 2);
      await expect(c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], wait: seconds(60) })).rejects.toMatchObject({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: expect.stringContaining("long-polls"),
      });
      expect((await c.workers.leaseAttempts({ workerId: "w", tasks: ["t"] })).attempts).toEqual([]);
      await c.executions.submit({ task: "t" });
      await Promise.race(polls);
    } finally {
      await c.close();
    }
  });

  test("watches beyond the per-connection limit are RESOURCE_EXHAUSTED", async () => {
    const c = await startTestCoordinator({ limits: { maxWatchesPerConnection: 3 } });
    try {
      const { execution } = await c.executions.submit({ task: "t" });
      const streams = [1, 2, 3].map(() => c.executions.watchExecution({ executionId: execution!.id }));
      const firsts = streams.map((s) => s[Symbol.asyncIterator]().next());
      await Promise.all(firsts);
      const extra = c.executions.watchExecution({ executionId: execution!.id })[Symbol.asyncIterator]().next();
      await expect(extra).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      for (const s of streams) s.cancel();
      await until(() => c.server.coordinator.stats.watches === 0);
    } finally {
      await c.close();
    }
  });
});
