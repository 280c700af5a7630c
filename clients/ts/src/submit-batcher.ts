// Micro-batching of submits: every Client.submit() made in one turn of the
// event loop goes out as one SubmitBatch call (a lone one as a plain Submit).
// SubmitBatch is all or nothing, so when a batch is refused for its content
// each submission is sent again alone and gets its own answer.
import * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ExecutionService, SubmitRequestSchema, SubmitResponse } from "./wire.js";
import type { ServiceClient } from "@reprise/wire";
import { MAX_BATCH, statusCode } from "./connection.js";

type SubmitInit = MessageInitShape<typeof SubmitRequestSchema>;

interface Queued {
  request: SubmitInit;
  resolve(response: SubmitResponse): void;
  reject(error: unknown): void;
}

/** Codes that mean "this batch's content was refused", not "the call failed". */
const REFUSED = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED, grpc.status.UNIMPLEMENTED]);

export class SubmitBatcher {
  private queue: Queued[] = [];
  private scheduled = false;

  constructor(private readonly executions: ServiceClient<typeof ExecutionService>) {}

  submit(request: SubmitInit): Promise<SubmitResponse> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    const queued = this.queue;
    this.queue = [];
    // A coordinator configured with a smaller limit refuses these batches, and
    // their submissions fall back to one Submit each.
    for (let i = 0; i < queued.length; i += MAX_BATCH) void this.send(queued.slice(i, i + MAX_BATCH));
  }

  private async send(batch: Queued[]): Promise<void> {
    if (batch.length === 1) return this.sendAlone(batch[0]!);
    try {
      const { results } = await this.executions.submitBatch({ submissions: batch.map((q) => q.request) });
      batch.forEach((q, i) => q.resolve(results[i]!));
    } catch (error) {
      if (!REFUSED.has(statusCode(error) as grpc.status)) {
        for (const q of batch) q.reject(error);
        return;
      }
      await Promise.all(batch.map((q) => this.sendAlone(q)));
    }
  }

  private async sendAlone(queued: Queued): Promise<void> {
    try {
      queued.resolve(await this.executions.submit(queued.request));
    } catch (error) {
      queued.reject(error);
    }
  }
}
