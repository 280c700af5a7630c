// Client.submit micro-batching: submits made in one turn share a SubmitBatch.
import { status } from "@grpc/grpc-js";
import { ExecutionState, Retries } from "@reprise/client";
import { describe, expect, test } from "vitest";
import { CallRecorder, clientEnv } from "./client-helpers.js";

describe("client submits", () => {
  test("submits made in one turn of the event loop go out as one SubmitBatch call, each with its own handle", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      const client = env.client({ grpcOptions: { interceptors: [recorder.interceptor] } });
      const handles = await Promise.all(Array.from({ length: 250 }, (_, i) => client.submit("t", { i }, { idempotencyKey: `k${i}` })));
      expect(new Set(handles.map((h) => h.id)).size).toBe(250);
      expect(recorder.requests("SubmitBatch")).toHaveLength(1);
      expect(recorder.requests("Submit")).toHaveLength(0);
      const again = await client.submit("t", { i: 7 }, { idempotencyKey: "k7" });
      expect(again.id).toBe(handles[7]!.id);
      expect(recorder.requests("Submit")).toHaveLength(1);
      expect((await handles[249]!.get()).state).toBe(ExecutionState.PENDING);
    } finally {
      await env.close();
    }
  });

  test("a handle says whether its Submit's idempotency key matched an execution already there (existing), in a batch and alone", async () => {
    const env = await clientEnv();
    try {
      const client = env.client();
      const [first, repeatInBatch, other] = await Promise.all([
        client.submit("t", 1, { idempotencyKey: "same" }),
        client.submit("t", 1, { idempotencyKey: "same" }),
        client.submit("t", 2),
      ]);
      expect([first.existing, repeatInBatch.existing, other.existing]).toEqual([false, true, false]);
      expect(repeatInBatch.id).toBe(first.id);
      const later = await client.submit("t", 1, { idempotencyKey: "same" });
      expect([later.id, later.existing]).toEqual([first.id, true]);
      expect(client.execution(first.id).existing).toBe(false);
    } finally {
      await env.close();
    }
  });

  test("a submit whose retries carry a when is refused, since when runs in the worker and is declared with the task", async () => {
    const env = await clientEnv();
    try {
      const client = env.client();
      await expect(client.submit("t", null, { retries: new Retries({ limit: 2, when: () => true }) })).rejects.toThrow(/^retries: `when` is evaluated by workers/);
      expect((await client.submit("t", null, { retries: new Retries({ limit: 2 }) })).submitted?.retryPolicy?.limit).toBe(2);
    } finally {
      await env.close();
    }
  });

  test("when a batch is refused for one bad submission, each is sent alone and only the bad one fails", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      const client = env.client({ grpcOptions: { interceptors: [recorder.interceptor] } });
      const results = await Promise.allSettled([client.submit("good"), client.submit("bad name"), client.submit("also_good")]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
      expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^task: /) });
      expect(recorder.requests("SubmitBatch")).toHaveLength(1);
      expect(recorder.requests("Submit")).toHaveLength(3);
    } finally {
      await env.close();
    }
  });
});
