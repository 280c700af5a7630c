// The JSON API of `reprise serve --http-listen`: ExecutionService over HTTP in
// protobuf's canonical JSON mapping, its errors, its event stream, its bearer
// tokens and TLS, and /metrics on the same port.
import { writeFileSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Authorizer } from "../server/api/auth.js";
import { loadServeConfig } from "../server/operator/config.js";
import { afterEach, describe, expect, test } from "vitest";
import { makeCertificates } from "./certificates.js";
import { FakeClock, seconds, startTestCoordinator, tempDir } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, leaseNow, submit, succeed } from "./wire-helpers.js";

let c: TestCoordinator;
let base: string;

afterEach(async () => {
  await c?.close();
});

async function start(options: Parameters<typeof startTestCoordinator>[0] = {}) {
  c = await startTestCoordinator({ clock: new FakeClock(), httpListen: "127.0.0.1:0", ...options });
  base = `http://127.0.0.1:${c.server.httpPort}`;
}

async function call(method: string, path: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${base}${path}`, { method, headers });
  const text = await response.text();
  return { status: response.status, type: response.headers.get("content-type"), headers: response.headers, body: text === "" ? null : (JSON.parse(text) as Record<string, unknown>) };
}

describe("the JSON API", () => {
  test("GET /api/v1/executions answers a ListExecutionsResponse in canonical JSON, newest first, filtered by task and state, and paged by page_token", async () => {
    await start();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await submit(c, "report", { labels: { n: String(i) } })).id);
    const other = await submit(c, "other");
    await fail(c, (await leaseNow(c, ["other"]))[0]!);

    const all = await call("GET", "/api/v1/executions");
    expect(all.status).toBe(200);
    // Parameters given empty mean their default, as if left out.
    expect(await call("GET", "/api/v1/executions?task=&state=&label=&page_size=&page_token=&idempotency_key=")).toMatchObject({ status: 200, body: all.body });
    expect(all.type).toBe("application/json");
    expect((all.body!.executions as { id: string }[]).map((e) => e.id)).toEqual([other.id, ...ids.reverse()]);
    const first = (all.body!.executions as Record<string, unknown>[])[1]!;
    expect(first).toMatchObject({ task: "report", state: "EXECUTION_STATE_PENDING", labels: { n: "2" } });
    expect(first.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);

    for (const state of ["FAILED", "failed", "EXECUTION_STATE_FAILED", "4"]) {
      const failed = await call("GET", `/api/v1/executions?state=${state}`);
      expect((failed.body!.executions as { id: string; failure: { type: string } }[]).map((e) => [e.id, e.failure.type])).toEqual([[other.id, "ConnectionError"]]);
    }
    const page1 = await call("GET", "/api/v1/executions?task=report&page_size=2");
    expect((page1.body!.executions as unknown[]).length).toBe(2);
    const page2 = await call("GET", `/api/v1/executions?task=report&page_size=2&page_token=${page1.body!.nextPageToken as string}`);
    expect((page2.body!.executions as { id: string }[]).map((e) => e.id)).toEqual([ids[2]]);
    expect(page2.body!.nextPageToken).toBeUndefined();
  });

  test("GET /api/v1/executions/{id} answers the Execution with its attempts; errors are the code's HTTP status with { code, message }, and an id that is not valid percent-encoding is 400 naming execution_id", async () => {
    await start();
    const e = await submit(c, "t", { retryPolicy: { limit: 1, backoffMin: seconds(5) } });
    await fail(c, (await leaseNow(c, ["t"]))[0]!);
    const found = await call("GET", `/api/v1/executions/${e.id}`);
    expect(found.status).toBe(200);
    expect(found.body).toMatchObject({ id: e.id, state: "EXECUTION_STATE_PENDING", retryPolicy: { limit: 1, backoffMin: "5s" } });
    expect(found.body!.attempts).toEqual([expect.objectContaining({ number: 1, state: "ATTEMPT_STATE_FAILED", retryRule: "RETRY_RULE_BACKOFF", failure: expect.objectContaining({ type: "ConnectionError" }) })]);

    expect(await call("GET", "/api/v1/executions/nope")).toMatchObject({ status: 404, type: "application/json", body: { code: "NOT_FOUND", message: 'execution_id: no execution "nope"' } });
    expect(await call("GET", "/api/v1/executions?state=LOST")).toMatchObject({ status: 400, body: { code: "INVALID_ARGUMENT", message: expect.stringMatching(/^state: "LOST" is not an ExecutionState/) } });
    expect(await call("GET", "/api/v1/executions?page_size=5000")).toMatchObject({ status: 400, body: { code: "INVALID_ARGUMENT", message: expect.stringMatching(/^page_size: /) } });
    expect(await call("GET", "/api/v1/executions?page_size=ten")).toMatchObject({ status: 400, body: { message: expect.stringMatching(/^page_size: must be a whole number/) } });
    expect(await call("GET", "/api/v1/executions?pagesize=5")).toMatchObject({ status: 400, body: { message: expect.stringMatching(/^pagesize: is not a parameter/) } });
    expect(await call("GET", "/api/v1/executions?page_token=garbage")).toMatchObject({ status: 400, body: { message: expect.stringMatching(/^page_token: /) } });
    expect(await call("GET", "/api/v2/things")).toMatchObject({ status: 404, body: { code: "NOT_FOUND" } });
    for (const path of ["/api/v1/executions/%E0%A4%A", "/api/v1/executions/%zz:cancel", "/api/v1/executions/%:watch"]) {
      const method = path.endsWith(":cancel") ? "POST" : "GET";
      expect(await call(method, path)).toMatchObject({ status: 400, body: { code: "INVALID_ARGUMENT", message: expect.stringMatching(/^execution_id: ".*" is not valid percent-encoding$/) } });
    }
    const wrongMethod = await call("DELETE", `/api/v1/executions/${e.id}`);
    expect(wrongMethod).toMatchObject({ status: 405, body: { code: "UNIMPLEMENTED" } });
    expect(wrongMethod.headers.get("allow")).toBe("GET");
  });

  test("POST :cancel and :rerun answer the Execution; a re-run of a PENDING execution is 400 FAILED_PRECONDITION, and GET on them is 405", async () => {
    await start();
    const e = await submit(c, "t");
    const cancelled = await call("POST", `/api/v1/executions/${e.id}:cancel`);
    expect(cancelled).toMatchObject({ status: 200, body: { id: e.id, state: "EXECUTION_STATE_CANCELLED" } });
    const rerun = await call("POST", `/api/v1/executions/${e.id}:rerun`);
    expect(rerun).toMatchObject({ status: 200, body: { id: e.id, state: "EXECUTION_STATE_PENDING" } });
    expect(await call("POST", `/api/v1/executions/${e.id}:rerun`)).toMatchObject({
      status: 400,
      body: { code: "FAILED_PRECONDITION", message: expect.stringMatching(/is PENDING; only a FAILED, ABANDONED, TIMED_OUT or CANCELLED execution can be re-run/) },
    });
    expect(await call("GET", `/api/v1/executions/${e.id}:cancel`)).toMatchObject({ status: 405 });
    expect(await call("POST", "/api/v1/executions/nope:cancel")).toMatchObject({ status: 404, body: { code: "NOT_FOUND" } });
  });

  test("GET :watch is a text/event-stream of Execution snapshots, the current one first, that ends after the terminal one", async () => {
    await start();
    const e = await submit(c, "t", { retryPolicy: { limit: 1 } });
    const response = await fetch(`${base}/api/v1/executions/${e.id}:watch`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    const states: string[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      let buffer = "";
      for await (const chunk of response.body!) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          expect(event.startsWith("data: ")).toBe(true);
          states.push((JSON.parse(event.slice(6)) as { state: string }).state);
        }
      }
    })();
    await expect.poll(() => states.length).toBe(1);
    await fail(c, (await leaseNow(c, ["t"]))[0]!);
    await succeed(c, (await leaseNow(c, ["t"]))[0]!);
    await reading;
    expect(states[0]).toBe("EXECUTION_STATE_PENDING");
    expect(states.at(-1)).toBe("EXECUTION_STATE_SUCCEEDED");
    expect(states).toContain("EXECUTION_STATE_RUNNING");
    // An ended execution: its final state at once, and the stream ends.
    const ended = await (await fetch(`${base}/api/v1/executions/${e.id}:watch`)).text();
    expect(ended.trim().split("\n\n").map((line) => (JSON.parse(line.slice(6)) as { state: string }).state)).toEqual(["EXECUTION_STATE_SUCCEEDED"]);
    expect(await call("GET", "/api/v1/executions/nope:watch")).toMatchObject({ status: 404, body: { code: "NOT_FOUND" } });
  });

  test("idempotency_key finds the one execution with that key, when it matches task and state too; an unknown key lists none", async () => {
    await start();
    const keyed = await submit(c, "charge", { idempotencyKey: "order-17" });
    await submit(c, "charge", { idempotencyKey: "order-18" });
    const ids = async (query: string) => ((await call("GET", `/api/v1/executions?${query}`)).body!.executions as { id: string }[] | undefined)?.map((e) => e.id) ?? [];
    expect(await ids("idempotency_key=order-17")).toEqual([keyed.id]);
    expect(await ids("idempotency_key=order-17&task=charge&state=PENDING")).toEqual([keyed.id]);
    expect(await ids("idempotency_key=order-17&state=FAILED")).toEqual([]);
    expect(await ids("idempotency_key=order-17&task=other")).toEqual([]);
    expect(await ids("idempotency_key=nope")).toEqual([]);
    expect(await call("GET", `/api/v1/executions?idempotency_key=${"k".repeat(300)}`)).toMatchObject({ status: 400, body: { message: "idempotency_key: must be at most 256 bytes" } });
  });

  test("label=KEY=VALUE, once per label, lists the executions submitted with every one of them; a label without = is 400 naming label", async () => {
    await start();
    const prodPay = await submit(c, "charge", { labels: { env: "prod", team: "pay" } });
    const prod = await submit(c, "charge", { labels: { env: "prod", url: "a=b" } });
    await submit(c, "charge", { labels: { env: "test" } });
    const ids = async (query: string) => ((await call("GET", `/api/v1/executions?${query}`)).body!.executions as { id: string }[] | undefined)?.map((e) => e.id) ?? [];
    expect(await ids("label=env%3Dprod")).toEqual([prod.id, prodPay.id]);
    expect(await ids("label=env=prod")).toEqual([prod.id, prodPay.id]);
    expect(await ids("label=env=prod&label=team=pay")).toEqual([prodPay.id]);
    expect(await ids("label=url=a=b")).toEqual([prod.id]);
    expect(await ids("label=env=prod&task=other")).toEqual([]);
    expect(await call("GET", "/api/v1/executions?label=env")).toMatchObject({ status: 400, body: { code: "INVALID_ARGUMENT", message: 'label: must be KEY=VALUE; got "env"' } });
    expect(await call("GET", "/api/v1/executions?label=env=a&label=env=b")).toMatchObject({ status: 400, body: { message: 'label: names "env" twice' } });
  });

  test("GET /api/v1/tasks answers a ListTasksResponse and GET /api/v1/workers a ListWorkersResponse, filtered by task", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "mailer-1", tasks: [{ name: "send_email", retryPolicy: { limit: 2 } }] });
    await submit(c, "send_email");
    await submit(c, "orphan");
    const tasks = await call("GET", "/api/v1/tasks");
    expect(tasks).toMatchObject({
      status: 200,
      body: {
        tasks: [
          { name: "orphan", executions: [{ state: "EXECUTION_STATE_PENDING", count: "1" }], due: "1", noWorker: true },
          { name: "send_email", declaration: { name: "send_email", retryPolicy: { limit: 2 } }, declaredBy: "mailer-1", due: "1", workers: 1 },
        ],
      },
    });
    expect(await call("GET", "/api/v1/workers?task=send_email")).toMatchObject({ status: 200, body: { workers: [{ id: "mailer-1", tasks: ["send_email"] }] } });
    expect(await call("GET", "/api/v1/workers?task=orphan")).toMatchObject({ status: 200, body: {} });
    expect(await call("GET", "/api/v1/tasks?state=FAILED")).toMatchObject({ status: 400, body: { message: "state: ListTasks takes no parameters" } });
    expect(await call("POST", "/api/v1/workers")).toMatchObject({ status: 405 });
  });

  test("/metrics is served on the same port as the JSON API", async () => {
    await start();
    await submit(c, "t");
    const response = await fetch(`${base}/metrics`);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('reprise_executions{task="t",state="pending"} 1');
  });
});

describe("the JSON API's auth and TLS", () => {
  const TOKENS = { worker: "worker-token-0123456789", caller: "caller-token-0123456789", admin: "admin-token-01234567890" };

  test("with bearer tokens: none is 401, a worker token 403, and a caller or admin token reads, cancels and re-runs; the token is checked before the path's id is read; /metrics stays open", async () => {
    const file = join(tempDir(), "tokens");
    writeFileSync(file, `worker ${TOKENS.worker}\ncaller ${TOKENS.caller}\nadmin ${TOKENS.admin}\n`);
    await start({ authorizer: Authorizer.fromFile(file) });
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const { execution } = await c.executions.submit({ task: "t" }, { metadata: metadataOf(TOKENS.caller) });
    const none = await call("GET", "/api/v1/executions");
    expect(none).toMatchObject({ status: 401, body: { code: "UNAUTHENTICATED", message: "authorization: a bearer token is required" } });
    expect(none.headers.get("www-authenticate")).toBe("Bearer");
    expect(await call("GET", "/api/v1/executions", bearer("not-a-known-token-at-all"))).toMatchObject({ status: 401, body: { message: "authorization: unknown token" } });
    expect(await call("GET", "/api/v1/executions", bearer(TOKENS.worker))).toMatchObject({ status: 403, body: { code: "PERMISSION_DENIED" } });
    expect(await call("POST", `/api/v1/executions/${execution!.id}:cancel`, bearer(TOKENS.worker))).toMatchObject({ status: 403 });
    expect(await call("GET", `/api/v1/executions/${execution!.id}`, bearer(TOKENS.caller))).toMatchObject({ status: 200 });
    // The token is checked before the path's id is read.
    expect(await call("GET", "/api/v1/executions/%E0%A4%A")).toMatchObject({ status: 401 });
    expect(await call("GET", "/api/v1/executions/%E0%A4%A", bearer(TOKENS.caller))).toMatchObject({ status: 400 });
    expect(await call("POST", `/api/v1/executions/${execution!.id}:cancel`, bearer(TOKENS.caller))).toMatchObject({ status: 200, body: { state: "EXECUTION_STATE_CANCELLED" } });
    expect(await call("POST", `/api/v1/executions/${execution!.id}:rerun`, bearer(TOKENS.admin))).toMatchObject({ status: 200, body: { state: "EXECUTION_STATE_PENDING" } });
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  test("with --tls-cert the JSON API is served over HTTPS with the coordinator's certificate", async () => {
    const certs = makeCertificates();
    await start({ tls: { cert: certs.serverCert, key: certs.serverKey } });
    const body = await new Promise<string>((resolve, reject) => {
      httpsGet(`https://127.0.0.1:${c.server.httpPort}/api/v1/executions`, { ca: certs.ca }, (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () => resolve(text));
      }).on("error", reject);
    });
    expect(JSON.parse(body)).toEqual({});
  });

  test("--metrics-listen is an alias of --http-listen: one of them, or the same address in both", () => {
    expect(loadServeConfig({ "metrics-listen": "127.0.0.1:9464" }, {})).toMatchObject({ httpListen: "127.0.0.1:9464" });
    expect(loadServeConfig({ "http-listen": "127.0.0.1:8080", "metrics-listen": "127.0.0.1:8080" }, {})).toMatchObject({ httpListen: "127.0.0.1:8080" });
    expect(() => loadServeConfig({ "http-listen": "127.0.0.1:8080", "metrics-listen": "127.0.0.1:9464" }, {})).toThrow(/^--metrics-listen: is an alias of --http-listen/);
    expect(() => loadServeConfig({ "http-listen": "8080" }, {})).toThrow(/^--http-listen: must be HOST:PORT/);
  });
});

function metadataOf(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}
