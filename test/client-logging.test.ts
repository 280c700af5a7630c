// What a TypeScript worker logs about a failed attempt, against a real
// coordinator: the failure, and the retry the coordinator scheduled or none.
import { describe, expect, test } from "vitest";
import { Retries } from "@reprise/client";
import { MemoryLogger, clientEnv } from "./client-helpers.js";
import type { LogEntry } from "./client-helpers.js";
import { toMs, until } from "./helpers.js";

class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly statusCode: number) {
    super(`HTTP ${statusCode}`);
  }
}

const failedAttempts = (logger: MemoryLogger): LogEntry[] => logger.entries.filter((e) => e.message.startsWith("attempt failed"));

describe("failed attempts in the worker's log", () => {
  test("a failed attempt and its scheduled retry are logged at info with the task, execution id, attempt, error and retry time", async () => {
    const env = await clientEnv();
    try {
      const logger = new MemoryLogger();
      const worker = env.worker({ logger }).task("fetch", { retries: new Retries({ limit: 2, backoff: [0.3, 0.6] }) }, (_args, ctx) => {
        if (ctx.attempt === 1) throw new HttpError(503);
        return "ok";
      });
      await worker.start();
      const handle = await env.client().submit("fetch", null);
      expect(await handle.result()).toBe("ok");
      await until(() => failedAttempts(logger).length > 0, 5000, "the failed attempt to be logged");
      const [first, second] = (await handle.get()).attempts;
      expect(failedAttempts(logger)).toEqual([
        {
          level: "info",
          message: "attempt failed; retry scheduled",
          fields: {
            task: "fetch",
            execution_id: handle.id,
            attempt: 1,
            error_type: "HttpError",
            error_message: "HTTP 503",
            will_retry: true,
            next_attempt_at: new Date(toMs(second!.scheduledAt)).toISOString(),
            retry_in_ms: expect.any(Number),
          },
        },
      ]);
      expect(first!.failure?.type).toBe("HttpError");
    } finally {
      await env.close();
    }
  });

  test("a failed attempt without a retry is logged at info saying the execution has failed", async () => {
    const env = await clientEnv();
    try {
      const logger = new MemoryLogger();
      const when = (e: unknown) => e instanceof HttpError && e.statusCode >= 500;
      const worker = env.worker({ logger }).task("fetch", { retries: new Retries({ limit: 3, when }) }, () => {
        throw new HttpError(404);
      });
      await worker.start();
      const handle = await env.client().submit("fetch", null);
      await expect(handle.result()).rejects.toThrow();
      await until(() => failedAttempts(logger).length > 0, 5000, "the failed attempt to be logged");
      expect(failedAttempts(logger)).toEqual([
        {
          level: "info",
          message: "attempt failed; no retry, the execution has failed",
          fields: { task: "fetch", execution_id: handle.id, attempt: 1, error_type: "HttpError", error_message: "HTTP 404", will_retry: false },
        },
      ]);
    } finally {
      await env.close();
    }
  });
});
