// The caller's side: submit executions and get handles to wait on them.
import { setMaxListeners } from "node:events";
import { ExecutionService } from "@reprise/wire";
import { createServiceClient } from "@reprise/wire";
import type { Execution, ServiceClient } from "@reprise/wire";
import { Backoff } from "./backoff.js";
import { channelOptions, isTransient } from "./connection.js";
import { ExecutionHandle } from "./handle.js";
import { SubmitBatcher } from "./submit-batcher.js";
import { resolveClientOptions } from "./options.js";
import type { ClientOptions, ResolvedClientOptions } from "./options.js";
import { Retries, retryPolicy } from "./retries.js";
import type { RetriesOption } from "./retries.js";
import { durationFromSeconds, sleep } from "./time.js";

export interface SubmitOptions {
  /** A repeat Submit with the same key returns the existing execution and creates nothing. */
  idempotencyKey?: string;
  /** Seconds from now before the first attempt may start. Default 0. */
  delay?: number;
  /** Free-form labels, passed to every attempt. */
  labels?: Record<string, string>;
  /**
   * This execution's own retry policy, overriding the task's declared one
   * (even `0` or `false`, which then mean no retries). Absent: the task's.
   */
  retries?: RetriesOption;
}

export class Client {
  private readonly options: ResolvedClientOptions;
  private readonly executions: ServiceClient<typeof ExecutionService>;
  private readonly closed = new AbortController();
  private readonly submits: SubmitBatcher;

  constructor(options: ClientOptions = {}) {
    this.options = resolveClientOptions(options);
    const { address, credentials, reconnect, grpcOptions, token } = this.options;
    this.executions = createServiceClient(ExecutionService, address, credentials, channelOptions(reconnect, grpcOptions, token));
    this.submits = new SubmitBatcher(this.executions);
    // Every submit waiting to retry and every handle listens for the close: any number may.
    setMaxListeners(0, this.closed.signal);
  }

  /**
   * Submits an execution of `task` with `args` encoded by the codec. Submits
   * made in the same turn of the event loop share one SubmitBatch call, so
   * `Promise.all(items.map((i) => client.submit(...)))` is a bulk enqueue. With an
   * idempotency key, a Submit that hits a coordinator restart is tried again;
   * without one it is not, since it might have been created already.
   */
  async submit<Result = unknown>(task: string, args?: unknown, options: SubmitOptions = {}): Promise<ExecutionHandle<Result>> {
    const { codec } = this.options;
    const { retries } = options;
    if (retries instanceof Retries && retries.when !== undefined) {
      // Silently dropping it would leave the caller believing it applies.
      throw new TypeError("retries: `when` is evaluated by workers and cannot be sent with a submission; declare it on the task");
    }
    const explicitNoRetries = retries === 0 || retries === false || (typeof retries === "object" && retries.limit === 0);
    const request = {
      task,
      arguments: { data: codec.encode(args), contentType: codec.contentType },
      idempotencyKey: options.idempotencyKey ?? "",
      delay: options.delay === undefined ? undefined : durationFromSeconds(options.delay, "delay"),
      labels: options.labels ?? {},
      retryPolicy: explicitNoRetries ? { limit: 0 } : retryPolicy(options.retries),
    };
    const backoff = new Backoff(this.options.reconnect);
    for (let tries = 1; ; tries++) {
      try {
        const { execution, existing } = await this.submits.submit(request);
        return new ExecutionHandle<Result>(execution!.id, execution, existing, this.executions, this.options, this.closed.signal);
      } catch (error) {
        if (!options.idempotencyKey || !isTransient(error) || tries >= 20 || this.closed.signal.aborted) throw error;
        await sleep(backoff.next(), this.closed.signal);
      }
    }
  }

  /** Runs an execution that ended FAILED, ABANDONED, TIMED_OUT or CANCELLED again; see ExecutionHandle.rerun. */
  rerun(id: string): Promise<Execution> {
    return this.execution(id).rerun();
  }

  /** A handle on an execution submitted earlier, by its id. */
  execution<Result = unknown>(id: string): ExecutionHandle<Result> {
    return new ExecutionHandle<Result>(id, undefined, false, this.executions, this.options, this.closed.signal);
  }

  /** Closes the channel; waits in progress reject with an error saying the client was closed. */
  close(): void {
    this.closed.abort(new Error("the Client was closed"));
    this.executions.raw.close();
  }
}
