// The console's only way to the coordinator: the JSON API under /api/v1/, on
// the same origin. Messages are ExecutionService's in protobuf's canonical JSON
// mapping, so fields at their zero value are absent. A bearer token, when the
// coordinator needs one, is kept in this tab's sessionStorage and sent as a
// header: never in a URL.

export type ExecutionState =
  | "EXECUTION_STATE_PENDING"
  | "EXECUTION_STATE_RUNNING"
  | "EXECUTION_STATE_SUCCEEDED"
  | "EXECUTION_STATE_FAILED"
  | "EXECUTION_STATE_ABANDONED"
  | "EXECUTION_STATE_TIMED_OUT"
  | "EXECUTION_STATE_CANCELLED";

export interface Payload {
  data?: string;
  contentType?: string;
}

export interface Failure {
  type?: string;
  message?: string;
  stackTrace?: string;
  nonRetryable?: boolean;
  retryAfter?: string;
}

export interface RetryPolicy {
  limit?: number;
  unlimited?: boolean;
  backoffMin?: string;
  backoffMax?: string;
  backoffCoefficient?: number;
  jitter?: number;
  maxElapsed?: string;
}

export interface Attempt {
  number: number;
  state: string;
  workerId?: string;
  scheduledAt: string;
  startedAt: string;
  finishedAt?: string;
  failure?: Failure;
  retryPolicy?: RetryPolicy;
  leaseExpiresAt?: string;
  retryRule?: string;
  retryAt?: string;
  retryComputedAt?: string;
}

export interface Execution {
  id: string;
  task: string;
  state: ExecutionState;
  arguments?: Payload;
  retryPolicy?: RetryPolicy;
  attempts?: Attempt[];
  result?: Payload;
  failure?: Failure;
  nextAttemptAt?: string;
  createdAt: string;
  finishedAt?: string;
  idempotencyKey?: string;
  labels?: Record<string, string>;
}

export interface TaskSummary {
  name: string;
  declaration?: { name: string; retryPolicy?: RetryPolicy; timeout?: string; retryBudget?: { retriesPerSecond?: number; burst?: number } };
  declaredBy?: string;
  declaredAt?: string;
  executions?: { state: ExecutionState; count: string }[];
  /** An int64, as a string. */
  due?: string;
  workers?: number;
  workerLastSeenAt?: string;
  noWorker?: boolean;
  failuresLastHour?: number;
  retriesLastHour?: number;
  frequentFailures?: { type: string; count: number }[];
}

export interface Worker {
  id: string;
  tasks?: string[];
  lastSeenAt?: string;
}

export interface Page {
  executions?: Execution[];
  nextPageToken?: string;
}

/** An error answered by the API: { code, message } with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = "reprise.token";

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (value: string) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

function headers(): HeadersInit {
  const bearer = token.get();
  return bearer ? { authorization: `Bearer ${bearer}` } : {};
}

async function failure(response: Response): Promise<ApiError> {
  try {
    const body = (await response.json()) as { code?: string; message?: string };
    return new ApiError(response.status, body.code ?? "UNKNOWN", body.message ?? response.statusText);
  } catch {
    return new ApiError(response.status, "UNKNOWN", `${response.status} ${response.statusText}`);
  }
}

async function call<T>(method: "GET" | "POST", path: string): Promise<T> {
  const response = await fetch(path, { method, headers: headers() });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as T;
}

export function listExecutions(filter: {
  task?: string;
  state?: string;
  /** One label, as key=value. */
  label?: string;
  pageSize?: number;
  pageToken?: string;
  idempotencyKey?: string;
}): Promise<Page> {
  const query = new URLSearchParams();
  if (filter.idempotencyKey) query.set("idempotency_key", filter.idempotencyKey);
  if (filter.task) query.set("task", filter.task);
  if (filter.state) query.set("state", filter.state);
  if (filter.label) query.set("label", filter.label);
  query.set("page_size", String(filter.pageSize ?? 50));
  if (filter.pageToken) query.set("page_token", filter.pageToken);
  return call("GET", `/api/v1/executions?${query}`);
}

export const listTasks = () => call<{ tasks?: TaskSummary[] }>("GET", "/api/v1/tasks");
export const listWorkers = () => call<{ workers?: Worker[] }>("GET", "/api/v1/workers");
export const getExecution = (id: string) => call<Execution>("GET", `/api/v1/executions/${encodeURIComponent(id)}`);
export const cancelExecution = (id: string) => call<Execution>("POST", `/api/v1/executions/${encodeURIComponent(id)}:cancel`);
export const rerunExecution = (id: string) => call<Execution>("POST", `/api/v1/executions/${encodeURIComponent(id)}:rerun`);

/**
 * Follows an execution through its `:watch` event stream until it ends, the
 * signal aborts, or the stream fails. Read with fetch rather than EventSource,
 * which cannot send the bearer token as a header.
 */
export async function watchExecution(id: string, onSnapshot: (execution: Execution) => void, signal: AbortSignal): Promise<void> {
  const response = await fetch(`/api/v1/executions/${encodeURIComponent(id)}:watch`, { headers: headers(), signal });
  if (!response.ok || !response.body) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").find((line) => line.startsWith("data: "))?.slice(6);
      if (data === undefined) continue;
      if (event.startsWith("event: error")) {
        const error = JSON.parse(data) as { code: string; message: string };
        throw new ApiError(0, error.code, error.message);
      }
      onSnapshot(JSON.parse(data) as Execution);
    }
  }
}
