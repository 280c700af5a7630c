// The HTTP listener of `reprise serve --http-listen`: the web console at /,
// the JSON API under /api/v1/ and Prometheus metrics at /metrics, on one port
// (HTTPS with the coordinator's TLS certificate).
//
// The JSON API speaks ExecutionService's own messages in protobuf's canonical
// JSON mapping, and follows Google's HTTP mapping conventions (AIP-131 to
// AIP-136): GET lists and reads, POST `:cancel` and `:rerun` custom methods, and
// `:watch` as a text/event-stream. Each request goes through the same handler
// as the gRPC call, with the same validation, bearer tokens and roles; errors
// are the gRPC code's HTTP status with a JSON body { code, message }.
import { createServer as createHttpServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { create, toJson } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CancelExecutionRequestSchema,
  ExecutionSchema,
  ExecutionService,
  ExecutionState,
  GetExecutionRequestSchema,
  ListExecutionsRequestSchema,
  ListExecutionsResponseSchema,
  ListTasksRequestSchema,
  ListTasksResponseSchema,
  ListWorkersRequestSchema,
  ListWorkersResponseSchema,
  RerunExecutionRequestSchema,
  StatusError,
  WatchExecutionRequestSchema,
} from "@reprise/wire";
import type { Execution, ServiceHandlers } from "@reprise/wire";
import type { Authorizer } from "./auth.js";
import type { Logger } from "../operator/log.js";
import type { PrometheusMetrics } from "../operator/metrics.js";
import { consoleFile } from "../runtime/runtime.js";
import { invalid, labelsFromPairs } from "./validate.js";

export interface HttpOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  handlers: ServiceHandlers<typeof ExecutionService>;
  metrics: PrometheusMetrics;
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer };
  authorizer?: Authorizer;
  /** Maps a store's errors (for example "unreachable") to a status, as the gRPC services do. */
  statusOf(error: unknown): StatusError | undefined;
  log: Logger;
}

export interface HttpListener {
  port: number;
  /** Ends open event streams and closes the port. */
  close(): Promise<void>;
}

/** The HTTP status of each gRPC code, as Google's HTTP mapping has it. */
const HTTP_STATUS: Record<number, number> = {
  [grpc.status.OK]: 200,
  [grpc.status.CANCELLED]: 499,
  [grpc.status.UNKNOWN]: 500,
  [grpc.status.INVALID_ARGUMENT]: 400,
  [grpc.status.DEADLINE_EXCEEDED]: 504,
  [grpc.status.NOT_FOUND]: 404,
  [grpc.status.ALREADY_EXISTS]: 409,
  [grpc.status.PERMISSION_DENIED]: 403,
  [grpc.status.RESOURCE_EXHAUSTED]: 429,
  [grpc.status.FAILED_PRECONDITION]: 400,
  [grpc.status.ABORTED]: 409,
  [grpc.status.OUT_OF_RANGE]: 400,
  [grpc.status.UNIMPLEMENTED]: 501,
  [grpc.status.INTERNAL]: 500,
  [grpc.status.UNAVAILABLE]: 503,
  [grpc.status.DATA_LOSS]: 500,
  [grpc.status.UNAUTHENTICATED]: 401,
};

const EXECUTION_PATH = /^\/api\/v1\/executions\/([^/:]+)(?::(cancel|rerun|watch))?$/;

/** The console's files at their paths, with their types. */
const CONSOLE: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/index.html": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/styles.css": { file: "styles.css", type: "text/css; charset=utf-8" },
};

/** The page talks to this origin only: no CDN, no other host. */
const CONSOLE_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/** Starts the listener. Resolves once it is bound. */
export async function serveHttp(options: HttpOptions): Promise<HttpListener> {
  const streams = new Set<ServerResponse>();
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    route(request, response, options, streams).catch((error: unknown) => sendError(response, toStatus(error, options)));
  };
  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key, ca: options.tls.clientCa, requestCert: !!options.tls.clientCa, rejectUnauthorized: !!options.tls.clientCa }, handle)
    : createHttpServer(handle);
  const match = /^(.+):(\d+)$/.exec(options.listen)!;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(match[2]), match[1]!.replace(/^\[|\]$/g, ""), () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    async close() {
      for (const stream of streams) stream.end();
      await new Promise((resolve) => {
        server.close(resolve);
        server.closeIdleConnections();
        // A request still under way after a second is cut off.
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      });
    },
  };
}

async function route(request: IncomingMessage, response: ServerResponse, options: HttpOptions, streams: Set<ServerResponse>): Promise<void> {
  const url = new URL(request.url ?? "/", "http://reprise");
  const method = request.method ?? "GET";
  if (url.pathname === "/metrics") {
    allow(method, ["GET"], url.pathname);
    const text = await options.metrics.registry.metrics();
    response.writeHead(200, { "content-type": options.metrics.registry.contentType }).end(text);
    return;
  }
  const page = CONSOLE[url.pathname];
  if (page) {
    allow(method, ["GET"], url.pathname);
    const body = consoleFile(page.file);
    if (body === null) throw new StatusError(grpc.status.NOT_FOUND, `${url.pathname}: the console was not built (npm run build writes dist/console)`);
    response.writeHead(200, { "content-type": page.type, "content-security-policy": CONSOLE_POLICY, "cache-control": "no-cache", "x-content-type-options": "nosniff" }).end(body);
    return;
  }
  const { handlers } = options;
  if (url.pathname === "/api/v1/executions") {
    allow(method, ["GET"], url.pathname);
    authorize(options, request, "ListExecutions");
    const reply = await handlers.listExecutions(create(ListExecutionsRequestSchema, listRequest(url.searchParams)), unaryCall);
    sendJson(response, ListExecutionsResponseSchema, reply);
    return;
  }
  if (url.pathname === "/api/v1/tasks") {
    allow(method, ["GET"], url.pathname);
    authorize(options, request, "ListTasks");
    onlyParameters(url.searchParams, [], "ListTasks");
    sendJson(response, ListTasksResponseSchema, await handlers.listTasks(create(ListTasksRequestSchema), unaryCall));
    return;
  }
  if (url.pathname === "/api/v1/workers") {
    allow(method, ["GET"], url.pathname);
    authorize(options, request, "ListWorkers");
    onlyParameters(url.searchParams, ["task"], "ListWorkers");
    const reply = await handlers.listWorkers(create(ListWorkersRequestSchema, { task: url.searchParams.get("task") ?? "" }), unaryCall);
    sendJson(response, ListWorkersResponseSchema, reply);
    return;
  }
  const execution = EXECUTION_PATH.exec(url.pathname);
  if (!execution) throw new StatusError(grpc.status.NOT_FOUND, `${url.pathname}: no such path; the JSON API is /api/v1/executions, /api/v1/tasks and /api/v1/workers`);
  const verb = execution[2] ?? "get";
  if (verb === "watch") {
    allow(method, ["GET"], url.pathname);
    authorize(options, request, "WatchExecution");
    await watch(request, response, executionIdOf(execution[1]!), options, streams);
    return;
  }
  // Each of the three takes { execution_id } and answers { execution }.
  type Reply = Promise<{ execution?: MessageInitShape<typeof ExecutionSchema> }>;
  const actions: Record<string, { http: string; rpc: string; call: (executionId: string) => Reply }> = {
    get: { http: "GET", rpc: "GetExecution", call: (executionId) => handlers.getExecution(create(GetExecutionRequestSchema, { executionId }), unaryCall) },
    cancel: { http: "POST", rpc: "CancelExecution", call: (executionId) => handlers.cancelExecution(create(CancelExecutionRequestSchema, { executionId }), unaryCall) },
    rerun: { http: "POST", rpc: "RerunExecution", call: (executionId) => handlers.rerunExecution(create(RerunExecutionRequestSchema, { executionId }), unaryCall) },
  };
  const action = actions[verb]!;
  allow(method, [action.http], url.pathname);
  authorize(options, request, action.rpc);
  // Decoded once the call is authorized: a refused call gets its 401 or 403 whatever its path holds.
  sendJson(response, ExecutionSchema, (await action.call(executionIdOf(execution[1]!))).execution!);
}

/**
 * Streams snapshots as server-sent events, one `data:` line of JSON each, and
 * ends after the terminal one. An error before the first snapshot is a plain
 * JSON error; after it, an `error` event carrying { code, message }.
 */
async function watch(request: IncomingMessage, response: ServerResponse, executionId: string, options: HttpOptions, streams: Set<ServerResponse>): Promise<void> {
  const cancelled: (() => void)[] = [];
  response.on("close", () => cancelled.forEach((listener) => listener()));
  const call = {
    getPeer: () => `${request.socket.remoteAddress}:${request.socket.remotePort}`,
    on(event: string, listener: () => void) {
      if (event === "cancelled") cancelled.push(listener);
      return call;
    },
    write(message: { execution?: Execution }) {
      if (!response.headersSent) {
        response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", "x-accel-buffering": "no" });
        streams.add(response);
        response.on("close", () => streams.delete(response));
      }
      response.write(`data: ${JSON.stringify(toJson(ExecutionSchema, message.execution!))}\n\n`);
      return true;
    },
  };
  try {
    await options.handlers.watchExecution(create(WatchExecutionRequestSchema, { executionId }), call as never);
  } catch (error) {
    if (!response.headersSent) throw error;
    const status = toStatus(error, options);
    response.write(`event: error\ndata: ${JSON.stringify(errorBody(status))}\n\n`);
  }
  response.end();
}

/** The execution id of a path, percent-decoded. */
function executionIdOf(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    throw invalid("execution_id", `${JSON.stringify(encoded)} is not valid percent-encoding`);
  }
}

/** Unary handlers of ExecutionService read nothing of their call. */
const unaryCall = {} as never;

/**
 * ListExecutions' query parameters: task, state (a name such as FAILED or
 * EXECUTION_STATE_FAILED, or its number), page_size, page_token,
 * idempotency_key, and label=KEY=VALUE, once per label.
 */
function listRequest(query: URLSearchParams) {
  onlyParameters(query, ["task", "state", "page_size", "page_token", "idempotency_key", "label"], "ListExecutions");
  const pageSize = query.get("page_size") || "0";
  if (!/^-?\d+$/.test(pageSize)) throw invalid("page_size", `must be a whole number; got ${JSON.stringify(pageSize)}`);
  const labels = labelsFromPairs(
    query.getAll("label").filter((label) => label !== ""),
    "KEY=VALUE",
    (problem) => invalid("label", problem),
  );
  return {
    labels,
    task: query.get("task") ?? "",
    state: stateOf(query.get("state") ?? ""),
    pageSize: Number(pageSize),
    pageToken: query.get("page_token") ?? "",
    idempotencyKey: query.get("idempotency_key") ?? "",
  };
}

function onlyParameters(query: URLSearchParams, known: string[], rpc: string): void {
  for (const key of query.keys()) {
    if (!known.includes(key)) throw invalid(key, known.length === 0 ? `${rpc} takes no parameters` : `is not a parameter of ${rpc}; use ${known.join(", ")}`);
  }
}

function stateOf(raw: string): ExecutionState {
  if (raw === "") return ExecutionState.UNSPECIFIED;
  if (/^\d+$/.test(raw)) return Number(raw);
  const name = raw.toUpperCase().replace(/^EXECUTION_STATE_/, "");
  const state = ExecutionState[name as keyof typeof ExecutionState];
  if (state === undefined) {
    const names = Object.keys(ExecutionState).filter((key) => Number.isNaN(Number(key)) && key !== "UNSPECIFIED");
    throw invalid("state", `${JSON.stringify(raw)} is not an ExecutionState; use one of ${names.join(", ")}`);
  }
  return state;
}

function allow(method: string, allowed: string[], path: string): void {
  if (!allowed.includes(method)) throw Object.assign(new StatusError(grpc.status.UNIMPLEMENTED, `${method} ${path}: use ${allowed.join(" or ")}`), { allow: allowed });
}

/** Checks the bearer token as the gRPC call would be checked: a caller (or admin) token for ExecutionService. */
function authorize(options: HttpOptions, request: IncomingMessage, method: string): void {
  if (!options.authorizer) return;
  const metadata = new grpc.Metadata();
  const header = request.headers.authorization;
  if (header !== undefined) metadata.set("authorization", header);
  options.authorizer.check(ExecutionService.typeName, method, metadata);
}

function toStatus(error: unknown, options: HttpOptions): StatusError {
  if (error instanceof StatusError) return error;
  const mapped = options.statusOf(error);
  if (mapped) return mapped;
  options.log.error("request failed", { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  return new StatusError(grpc.status.INTERNAL, "internal error; see the coordinator's log");
}

const errorBody = (status: StatusError) => ({ code: grpc.status[status.code], message: status.message });

function sendError(response: ServerResponse, status: StatusError): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  const allowed = (status as StatusError & { allow?: string[] }).allow;
  if (allowed) headers.allow = allowed.join(", ");
  if (status.code === grpc.status.UNAUTHENTICATED) headers["www-authenticate"] = "Bearer";
  const code = allowed ? 405 : (HTTP_STATUS[status.code] ?? 500);
  response.writeHead(code, headers).end(JSON.stringify(errorBody(status)) + "\n");
}

/** The handlers answer messages, or init objects of their shape (create() returns a message as it is). */
function sendJson<D extends DescMessage>(response: ServerResponse, schema: D, message: MessageInitShape<D>): void {
  response.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(toJson(schema, create(schema, message))) + "\n");
}
