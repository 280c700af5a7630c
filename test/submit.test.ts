// Submit, Get and List: idempotency keys, labels, paging, and clear errors for
// bad input that change nothing.
import { status } from "@grpc/grpc-js";
import { ExecutionState } from "@reprise/wire";
import { afterEach, describe, expect, test } from "vitest";
import { json, millis, seconds, startTestCoordinator } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { leaseNow, submit } from "./wire-helpers.js";
import { DEFAULT_LIMITS } from "../server/api/limits.js";
import { checkTaskName } from "../server/api/validate.js";

let c: TestCoordinator;

afterEach(async () => {
  await c?.close();
});

const count = async () => (await c.executions.listExecutions({ pageSize: 1000 })).executions.length;

describe("submit", () => {
  test("a Submit that repeats an idempotency_key returns the existing execution unchanged and creates nothing", async () => {
    c = await startTestCoordinator();
    const first = await c.executions.submit({ task: "t", arguments: json(1), idempotencyKey: "n-1", labels: { a: "1" } });
    expect(first.existing).toBe(false);
    const again = await c.executions.submit({ task: "other", arguments: json(2), idempotencyKey: "n-1", retryPolicy: { limit: 9 } });
    expect(again.existing).toBe(true);
    expect(again.execution).toEqual(first.execution);
    expect(await count()).toBe(1);
    const [leased] = await leaseNow(c, ["t"]);
    expect(leased!.executionId).toBe(first.execution!.id);
    expect(leased!.labels).toEqual({ a: "1" });
  });

  test("ListExecutions with an idempotency_key lists the one execution that has it, and none for a key nobody used", async () => {
    c = await startTestCoordinator();
    const { execution } = await c.executions.submit({ task: "charge", idempotencyKey: "order-17" });
    await c.executions.submit({ task: "charge", idempotencyKey: "order-18" });
    expect((await c.executions.listExecutions({ idempotencyKey: "order-17" })).executions.map((e) => e.id)).toEqual([execution!.id]);
    expect((await c.executions.listExecutions({ idempotencyKey: "order-17", state: 4 })).executions).toEqual([]);
    expect(await c.executions.listExecutions({ idempotencyKey: "order-19" })).toMatchObject({ executions: [], nextPageToken: "" });
  });

  test("ListExecutions with labels lists only executions submitted with every one of them, with the same values; an idempotency_key lookup must match them too; bad labels are INVALID_ARGUMENT naming labels", async () => {
    c = await startTestCoordinator();
    const submitted = async (labels: Record<string, string>) => (await c.executions.submit({ task: "charge", labels, idempotencyKey: JSON.stringify(labels) })).execution!.id;
    const prodPay = await submitted({ env: "prod", team: "pay" });
    const prod = await submitted({ env: "prod" });
    await submitted({ env: "test", team: "pay" });
    await submitted({});
    const ids = async (request: Parameters<typeof c.executions.listExecutions>[0]) => (await c.executions.listExecutions(request)).executions.map((e) => e.id);
    expect(await ids({ labels: { env: "prod" } })).toEqual([prod, prodPay]);
    expect(await ids({ labels: { env: "prod", team: "pay" } })).toEqual([prodPay]);
    expect(await ids({ labels: { env: "prod" }, state: ExecutionState.FAILED })).toEqual([]);
    expect(await ids({ labels: { env: "prod" }, task: "other" })).toEqual([]);
    expect(await ids({ labels: { env: "staging" } })).toEqual([]);
    expect(await ids({ labels: { team: "pay" }, idempotencyKey: JSON.stringify({ env: "prod", team: "pay" }) })).toEqual([prodPay]);
    expect(await ids({ labels: { team: "pay" }, idempotencyKey: JSON.stringify({ env: "prod" }) })).toEqual([]);
    await expect(c.executions.listExecutions({ labels: { "": "x" } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: "labels: keys must not be empty" });
    await expect(c.executions.listExecutions({ labels: { env: "v".repeat(2000) } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: 'labels["env"]: is 2000 bytes; the maximum is 1024' });
  });

  test("concurrent Submits with one idempotency_key create one execution", async () => {
    c = await startTestCoordinator();
    const replies = await Promise.all(Array.from({ length: 20 }, () => c.executions.submit({ task: "t", idempotencyKey: "k" })));
    expect(new Set(replies.map((r) => r.execution!.id)).size).toBe(1);
    expect(replies.filter((r) => !r.existing)).toHaveLength(1);
    expect(await count()).toBe(1);
  });

  test("an execution shows its arguments, labels, key and creation time", async () => {
    c = await startTestCoordinator();
    const execution = await submit(c, "t", { idempotencyKey: "key", labels: { team: "ops" } });
    const got = (await c.executions.getExecution({ executionId: execution.id })).execution!;
    expect(got).toEqual(execution);
    expect(got).toMatchObject({ task: "t", state: ExecutionState.PENDING, idempotencyKey: "key", labels: { team: "ops" } });
    expect(got.arguments?.contentType).toBe("application/json");
  });

  test("SubmitBatch submits every execution in order, deduplicating idempotency keys as Submit does", async () => {
    c = await startTestCoordinator();
    const existing = await submit(c, "t", { idempotencyKey: "old" });
    const { results } = await c.executions.submitBatch({
      submissions: [{ task: "a" }, { task: "b", idempotencyKey: "old" }, { task: "c", idempotencyKey: "new" }, { task: "d", idempotencyKey: "new" }],
    });
    expect(results.map((r) => [r.execution!.task, r.existing])).toEqual([
      ["a", false],
      ["t", true],
      ["c", false],
      ["c", true],
    ]);
    expect(results[1]!.execution).toEqual(existing);
    expect(await count()).toBe(3);
  });

  test("SubmitBatch is all or nothing: one invalid submission fails the call, naming it, and creates nothing", async () => {
    c = await startTestCoordinator();
    await expect(c.executions.submitBatch({ submissions: [{ task: "ok" }, { task: "ok" }, { task: "bad name" }] })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^submissions\[2\]\.task: /),
    });
    await expect(c.executions.submitBatch({ submissions: Array.from({ length: 1001 }, () => ({ task: "t" })) })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^submissions: /),
    });
    expect(await count()).toBe(0);
  });

  test("ListExecutions filters by task and state and pages newest first", async () => {
    c = await startTestCoordinator();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await submit(c, i % 2 === 0 ? "even" : "odd")).id);
    const [leased] = await leaseNow(c, ["even"]);
    const pages: string[][] = [];
    let pageToken = "";
    do {
      const page = await c.executions.listExecutions({ task: "even", pageSize: 2, pageToken });
      pages.push(page.executions.map((e) => e.id));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(pages.flat()).toEqual([ids[6], ids[4], ids[2], ids[0]]);
    expect(pages.every((p) => p.length <= 2)).toBe(true);
    const running = await c.executions.listExecutions({ state: ExecutionState.RUNNING });
    expect(running.executions.map((e) => e.id)).toEqual([leased!.executionId]);
    expect((await c.executions.listExecutions({})).executions).toHaveLength(7);
  });

  test("a page token is a position in one list: with another task, state, label or idempotency key it is INVALID_ARGUMENT naming page_token, while page_size may change from page to page", async () => {
    c = await startTestCoordinator();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await submit(c, "t", { labels: { env: "prod" } })).id);
    const filters = { task: "t", labels: { env: "prod" } };
    const first = await c.executions.listExecutions({ ...filters, pageSize: 2 });
    const rest = await c.executions.listExecutions({ ...filters, pageSize: 10, pageToken: first.nextPageToken });
    expect([...first.executions, ...rest.executions].map((e) => e.id)).toEqual([...ids].reverse());
    const others: { task: string; labels: Record<string, string>; state?: ExecutionState; idempotencyKey?: string }[] = [
      { task: "u", labels: { env: "prod" } },
      { task: "t", labels: { env: "test" } },
      { task: "t", labels: {} },
      { ...filters, state: ExecutionState.PENDING },
      { ...filters, idempotencyKey: "k" },
    ];
    for (const other of others) {
      await expect(c.executions.listExecutions({ ...other, pageSize: 2, pageToken: first.nextPageToken })).rejects.toMatchObject({
        code: status.INVALID_ARGUMENT,
        details: expect.stringMatching(/^page_token: was returned for a list with another task, state, labels or idempotency_key/),
      });
    }
    // The position alone, without the list it belongs to, is not a token either.
    const position = Buffer.from(first.nextPageToken, "base64url").toString().split(".")[0]!;
    await expect(c.executions.listExecutions({ ...filters, pageToken: Buffer.from(position).toString("base64url") })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });
});

describe("bad input gets a clear status naming the field, changes nothing, and the coordinator keeps serving", () => {
  const cases: [string, () => Promise<unknown>, status, string][] = [
    ["an empty task name", () => c.executions.submit({ task: "" }), status.INVALID_ARGUMENT, "task"],
    ["an over-long task name", () => c.executions.submit({ task: "x".repeat(257) }), status.INVALID_ARGUMENT, "task"],
    ["a task name with whitespace", () => c.executions.submit({ task: "send email" }), status.INVALID_ARGUMENT, "task"],
    [
      "backoff_min > backoff_max",
      () => c.executions.submit({ task: "t", retryPolicy: { limit: 2, backoffMin: seconds(10), backoffMax: seconds(5) } }),
      status.INVALID_ARGUMENT,
      "retry_policy.backoff_min",
    ],
    [
      "a negative backoff",
      () => c.executions.submit({ task: "t", retryPolicy: { limit: 2, backoffMin: seconds(-1) } }),
      status.INVALID_ARGUMENT,
      "retry_policy.backoff_min",
    ],
    ["a negative delay", () => c.executions.submit({ task: "t", delay: millis(-5) }), status.INVALID_ARGUMENT, "delay"],
    ["a delay over its maximum", () => c.executions.submit({ task: "t", delay: seconds(400 * 86400) }), status.INVALID_ARGUMENT, "delay"],
    [
      "unlimited together with a limit",
      () => c.executions.submit({ task: "t", retryPolicy: { limit: 3, unlimited: true } }),
      status.INVALID_ARGUMENT,
      "retry_policy.unlimited",
    ],
    ["a retry limit over its maximum", () => c.executions.submit({ task: "t", retryPolicy: { limit: 10_001 } }), status.INVALID_ARGUMENT, "retry_policy.limit"],
    ["too many labels", () => c.executions.submit({ task: "t", labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])) }), status.INVALID_ARGUMENT, "labels"],
    ["an over-long idempotency key", () => c.executions.submit({ task: "t", idempotencyKey: "k".repeat(257) }), status.INVALID_ARGUMENT, "idempotency_key"],
    [
      "arguments over the payload maximum",
      () => c.executions.submit({ task: "t", arguments: { data: new Uint8Array(1024 * 1024 + 1) } }),
      status.RESOURCE_EXHAUSTED,
      "arguments.data",
    ],
    ["an unknown execution id", () => c.executions.getExecution({ executionId: "nope" }), status.NOT_FOUND, "execution_id"],
    ["an empty execution id", () => c.executions.getExecution({ executionId: "" }), status.INVALID_ARGUMENT, "execution_id"],
    ["an over-long execution id", () => c.executions.getExecution({ executionId: "x".repeat(300_000) }), status.INVALID_ARGUMENT, "execution_id"],
    ["a negative page size", () => c.executions.listExecutions({ pageSize: -1 }), status.INVALID_ARGUMENT, "page_size"],
    ["an unknown state filter", () => c.executions.listExecutions({ state: 99 as ExecutionState }), status.INVALID_ARGUMENT, "state"],
    ["a forged page token", () => c.executions.listExecutions({ pageToken: "garbage" }), status.INVALID_ARGUMENT, "page_token"],
    ["LeaseAttempts with no tasks", () => c.workers.leaseAttempts({ workerId: "w" }), status.INVALID_ARGUMENT, "tasks"],
    ["a wait over 60 s", () => c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], wait: seconds(61) }), status.INVALID_ARGUMENT, "wait"],
    ["a lease under 10 ms", () => c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], leaseDuration: millis(5) }), status.INVALID_ARGUMENT, "lease_duration"],
    ["a lease over 1 hour", () => c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], leaseDuration: seconds(3601) }), status.INVALID_ARGUMENT, "lease_duration"],
    ["max_attempts over 1000", () => c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], maxAttempts: 1001 }), status.INVALID_ARGUMENT, "max_attempts"],
    [
      "a declared task with a bad policy",
      () => c.workers.declareTasks({ workerId: "w", tasks: [{ name: "ok" }, { name: "t", retryPolicy: { unlimited: true, limit: 1 } }] }),
      status.INVALID_ARGUMENT,
      "tasks[1].retry_policy.unlimited",
    ],
    ["a negative timeout", () => c.workers.declareTasks({ workerId: "w", tasks: [{ name: "t", timeout: seconds(-3) }] }), status.INVALID_ARGUMENT, "tasks[0].timeout"],
    [
      "a negative retry_after",
      () => c.workers.reportOutcomes({ outcomes: [{ leaseToken: new Uint8Array(24), outcome: { case: "failure", value: { retryAfter: seconds(-1) } } }] }),
      status.INVALID_ARGUMENT,
      "outcomes[0].failure.retry_after",
    ],
    [
      "a result over the payload maximum",
      () => c.workers.reportOutcomes({ outcomes: [{ leaseToken: new Uint8Array(24), outcome: { case: "result", value: { data: new Uint8Array(1024 * 1024 + 1) } } }] }),
      status.RESOURCE_EXHAUSTED,
      "outcomes[0].result.data",
    ],
  ];

  test.each(cases)("%s", async (_, call, code, field) => {
    c = await startTestCoordinator();
    const before = await count();
    const error = await call().then(
      () => {
        throw new Error("expected the call to fail");
      },
      (e: { code: number; details: string }) => e,
    );
    expect(error.code).toBe(code);
    expect(error.details.startsWith(field)).toBe(true);
    expect(await count()).toBe(before);
    expect((await c.executions.submit({ task: "still_serving" })).execution?.state).toBe(ExecutionState.PENDING);
  });

  test("a rejected DeclareTasks declares none of its tasks", async () => {
    c = await startTestCoordinator();
    await expect(
      c.workers.declareTasks({ workerId: "w", tasks: [{ name: "good", retryPolicy: { limit: 3 } }, { name: "" }] }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    const execution = await submit(c, "good");
    expect(execution.retryPolicy).toBeUndefined();
  });
});

describe("task names", () => {
  test("a name that breaks the default pattern is told what the pattern means; one set with --task-name-pattern is shown as it is, without that gloss", () => {
    expect(() => checkTaskName("send email", "task", DEFAULT_LIMITS)).toThrow('task: "send email" does not match /^[^\\s\\p{Cc}\\p{Cf}]+$/u (no whitespace or control characters)');
    const lowercase = { ...DEFAULT_LIMITS, taskNamePattern: /^[a-z]+$/u };
    expect(() => checkTaskName("ABC", "task", lowercase)).toThrow(/^task: "ABC" does not match \/\^\[a-z\]\+\$\/u$/);
  });
});
