// Assembles the gRPC server: the two Reprise services, grpc.health.v1.Health
// and server reflection, over one coordinator and one store.
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { DescriptorProto, FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import { ExecutionService, ExecutionState, StatusError, WorkerService, implementService, serviceDefinition } from "@reprise/wire";
import type { ImplementOptions } from "@reprise/wire";
import { existsSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import type { Authorizer } from "./auth.js";
import { systemClock } from "../coordinator/clock.js";
import type { Clock } from "../coordinator/clock.js";
import { EventLoopHolds } from "../operator/holds.js";
import { PrometheusMetrics } from "../operator/metrics.js";
import { serveHttp } from "./http.js";
import { Coordinator } from "../coordinator/coordinator.js";
import { executionService } from "./execution-service.js";
import { DEFAULT_LIMITS } from "./limits.js";
import type { Limits } from "./limits.js";
import { ConfigError } from "../operator/config.js";
import { DatabaseInUseError, lockPathOf } from "../store/sqlite/ownership.js";
import { ConnectionQuota } from "./quota.js";
import { Retention } from "../coordinator/retention.js";
import type { Logger } from "../operator/log.js";
import { silentLogger } from "../operator/log.js";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";
import type { Durability } from "../store/sqlite/sqlite-store.js";
import { PostgresStore } from "../store/postgres/postgres-store.js";
import { StoreUnavailableError } from "../store/store.js";
import type { Store } from "../store/store.js";
import { workerService } from "./worker-service.js";

export interface ServerOptions {
  /** host:port to listen on; port 0 picks a free one. */
  listen: string;
  /** A postgres:// or postgresql:// URL selects the PostgreSQL store; anything else is a SQLite database file. */
  db: string;
  durability: Durability;
  /** PostgreSQL store: how long to wait for a connection or a statement's answer (PostgresStoreOptions.timeoutMs). */
  dbTimeoutMs?: number;
  /** Limits an operator may change; the rest of DEFAULT_LIMITS applies. */
  limits?: Partial<Limits>;
  /** Serve TLS with this key and certificate (PEM); with `clientCa`, require client certificates signed by it (mutual TLS). */
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer };
  /** Require bearer tokens with roles; absent means no auth. */
  authorizer?: Authorizer;
  /** host:port of the HTTP listener: the JSON API under /api/v1/ and Prometheus metrics at /metrics; absent means off. */
  httpListen?: string;
  /** The former name of `httpListen`, kept as an alias. */
  metricsListen?: string;
  /** Delete executions that finished longer ago than this, with their attempts; absent keeps them. */
  retainMs?: number;
  log?: Logger;
  /**
   * How errors name the options they are about: the flag, or the environment
   * variable when the value came from there. Default: the flags.
   */
  optionNames?: { db?: string; listen?: string; httpListen?: string };
  /** For tests: a fake clock and random source. */
  clock?: Clock;
  random?: () => number;
}

export interface RunningServer {
  /** The port actually bound. */
  readonly port: number;
  /** The HTTP port actually bound (JSON API and metrics), when it is on. */
  readonly httpPort: number | null;
  /** The same as httpPort, under its former name. */
  readonly metricsPort: number | null;
  readonly coordinator: Coordinator;
  /** Retention, when `retainMs` is set. */
  readonly retention: Retention | null;
  /** How long SQLite statements and commits held the event loop. */
  readonly holds: EventLoopHolds;
  /**
   * Stops new calls, answers long-polls empty, ends watches with UNAVAILABLE,
   * lets open calls finish for up to `graceMs`, flushes every pending commit and
   * closes the database.
   */
  shutdown(graceMs?: number): Promise<void>;
}

const SERVICE_NAMES = [ExecutionService.typeName, WorkerService.typeName];

/** Every file a descriptor depends on, itself included, dependencies first. */
function withDependencies(file: DescFile, seen = new Map<string, DescFile>()): Map<string, DescFile> {
  if (seen.has(file.proto.name)) return seen;
  for (const dependency of file.dependencies) withDependencies(dependency, seen);
  seen.set(file.proto.name, file);
  return seen;
}

/**
 * The health service's descriptor as @grpc/proto-loader builds it names map
 * entries after their field ("Statuses", not "StatusesEntry") and field types
 * relative to their scope, both of which strict reflection clients such as
 * buf curl reject. Mend both.
 */
function healthFileDescriptor(): FileDescriptorProto {
  const loaded = loadSync(healthProtoPath) as Record<string, { fileDescriptorProtos?: Buffer[] }>;
  const bytes = Object.values(loaded).find((entry) => entry.fileDescriptorProtos)!.fileDescriptorProtos![0]!;
  const file = fromBinary(FileDescriptorProtoSchema, bytes);
  const renameMapEntries = (messages: DescriptorProto[]) => {
    for (const m of messages) {
      for (const entry of m.nestedType.filter((n) => n.options?.mapEntry)) {
        const field = m.field.find((f) => f.typeName === entry.name);
        if (!field) continue;
        entry.name = field.name.replace(/(?:^|_)(.)/g, (_, c: string) => c.toUpperCase()) + "Entry";
        field.typeName = entry.name;
      }
      renameMapEntries(m.nestedType);
    }
  };
  renameMapEntries(file.messageType);
  const known = new Set<string>();
  const collect = (scope: string, messages: DescriptorProto[], enums: { name: string }[]) => {
    for (const e of enums) known.add(`${scope}.${e.name}`);
    for (const m of messages) {
      known.add(`${scope}.${m.name}`);
      collect(`${scope}.${m.name}`, m.nestedType, m.enumType);
    }
  };
  collect(`.${file.package}`, file.messageType, file.enumType);
  const qualify = (scope: string, messages: DescriptorProto[]) => {
    for (const m of messages) {
      const inner = `${scope}.${m.name}`;
      for (const field of m.field) {
        if (field.typeName === "" || field.typeName.startsWith(".")) continue;
        for (let s = inner; s !== ""; s = s.slice(0, s.lastIndexOf("."))) {
          if (known.has(`${s}.${field.typeName}`)) {
            field.typeName = `${s}.${field.typeName}`;
            break;
          }
        }
      }
      qualify(inner, m.nestedType);
    }
  };
  qualify(`.${file.package}`, file.messageType);
  return file;
}

function reflectionService(): ReflectionService {
  const files = new Map<string, DescFile>();
  for (const service of [ExecutionService, WorkerService]) withDependencies(service.file, files);
  const fileDescriptorProtos = [...[...files.values()].map((file) => file.proto), healthFileDescriptor()].map((proto) =>
    Buffer.from(toBinary(FileDescriptorProtoSchema, proto)),
  );
  // ReflectionService reads only the fileDescriptorProtos of each entry.
  return new ReflectionService({ "reprise.v1": { fileDescriptorProtos } } as never);
}

function serverCredentials(tls: ServerOptions["tls"]): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined);
}

/** True when `db` names a PostgreSQL database rather than a SQLite file. */
export const isPostgresUrl = (db: string) => /^postgres(ql)?:\/\//i.test(db);

/** The URL without its password, given as user:password@ or as ?password=, for logs and errors. */
export function redactUrl(db: string): string {
  try {
    const url = new URL(db);
    if (url.password) url.password = "***";
    if (url.searchParams.has("password")) url.searchParams.set("password", "***");
    return url.toString();
  } catch {
    return db.replace(/:[^:@/]*@/, ":***@").replace(/([?&]password=)[^&]*/gi, "$1***");
  }
}

async function openPostgres(db: string, name: string, timeoutMs: number | undefined, log: Logger, onCommit?: (changes: number, ms: number) => void): Promise<PostgresStore> {
  try {
    return await PostgresStore.open({ url: db, timeoutMs, onWarning: (message) => log.warn(message), onCommit });
  } catch (error) {
    const reason = error instanceof StoreUnavailableError ? error.message : `${(error as Error).message}`;
    throw new ConfigError(`${name}: cannot use the PostgreSQL database ${redactUrl(db)}: ${reason}`);
  }
}

/** Opens the store, turning the failures an operator can fix into errors that name the option (`name`: --db or REPRISE_DB). */
function openStore(open: () => SqliteStore, db: string, name: string): SqliteStore {
  const lockExisted = existsSync(lockPathOf(db));
  try {
    return open();
  } catch (error) {
    // A start that failed leaves no lock file of its own beside whatever --db named.
    if (!lockExisted) rmSync(lockPathOf(db), { force: true });
    if (error instanceof DatabaseInUseError) throw new ConfigError(`${name}: ${error.message}`);
    if (!existsSync(dirname(db))) throw new ConfigError(`${name}: the folder ${dirname(db)} does not exist`);
    if ((error as { code?: string }).code === "SQLITE_CANTOPEN" || (error as { code?: string }).code === "SQLITE_NOTADB") {
      throw new ConfigError(`${name}: cannot open ${db} as a database: ${(error as Error).message}`);
    }
    throw error;
  }
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log = options.log ?? silentLogger;
  // grpc-js writes its own errors to stderr as plain text, which would break
  // the JSON log stream. What it reports also reaches us as errors that we log
  // or surface, so its lines go to the log at debug.
  const grpcLine = (message: unknown, ...rest: unknown[]) => log.debug("grpc", { message: [message, ...rest].map(String).join(" ") });
  grpc.setLogger({ error: grpcLine, info: grpcLine, debug: grpcLine });
  let store: Store | undefined;
  let stopping: Promise<void> | null = null;
  let coordinator: Coordinator | undefined;
  const httpListen = options.httpListen ?? options.metricsListen;
  const metrics = httpListen
    ? new PrometheusMetrics({
        executionCounts: async () =>
          (await store!.read(async (tx) => tx.executionCountByTaskAndState())).map(({ task, state, count }) => ({
            task,
            state: ExecutionState[state]!.toLowerCase(),
            count,
          })),
        pendingCounts: (now) => store!.read(async (tx) => tx.executionCountPending(now)),
        longPolls: () => coordinator!.stats.longPolls,
        watches: () => coordinator!.stats.watches,
        now: (): number => clock.now(),
      })
    : undefined;
  const holds = new EventLoopHolds(log);
  metrics?.registry.registerMetric(holds as never);
  const names = { db: "--db", listen: "--listen", httpListen: "--http-listen", ...options.optionNames };
  const postgres = isPostgresUrl(options.db);
  const createdDatabase = !postgres && !existsSync(options.db);
  store = postgres
    ? await openPostgres(options.db, names.db, options.dbTimeoutMs, log, metrics && ((changes, ms) => metrics.commit(changes, ms)))
    : openStore(() =>
        new SqliteStore({
          path: options.db,
          durability: options.durability,
          onCommit: metrics && ((changes, ms) => metrics.commit(changes, ms)),
          onWarning: (message) => log.warn(message),
          holds,
        }),
      options.db,
      names.db);
  // On PostgreSQL every node reads the database's clock, so that all decide on one.
  const clock: Clock = options.clock ?? (store instanceof PostgresStore ? store.clock : systemClock);
  coordinator = new Coordinator({ store, clock, random: options.random, log, metrics });
  const retention = options.retainMs === undefined ? null : new Retention({ store, clock, retainMs: options.retainMs, log });
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  const server = new grpc.Server({
    // One payload plus headroom: a larger message is refused by the transport,
    // and one just over the payload maximum reaches the size check, which names
    // the field. A whole batch of maximal payloads does not fit, by design.
    "grpc.max_receive_message_length": limits.maxPayloadBytes + 4 * 1024 * 1024,
    "grpc.max_send_message_length": -1,
    // Bounds the calls one connection can hold open; the per-connection
    // quotas below bound long-polls and watches more tightly.
    "grpc.max_concurrent_streams": limits.maxWatchesPerConnection + limits.maxLongPollsPerConnection + 100,
  });
  const statusOf = (error: unknown) =>
    error instanceof StoreUnavailableError ? new StatusError(grpc.status.UNAVAILABLE, `${error.message}; try again`) : undefined;
  const implementOptions: ImplementOptions = {
    statusOf,
    onInternalError: (method, error) =>
      log.error("request failed", { method, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    authorize: options.authorizer && ((service, method, metadata) => options.authorizer!.check(service, method, metadata)),
  };
  const watches = new ConnectionQuota("watches", limits.maxWatchesPerConnection, "--max-watches-per-connection");
  const longPolls = new ConnectionQuota("long-polls", limits.maxLongPollsPerConnection, "--max-long-polls-per-connection");
  const executions = executionService(coordinator, limits, watches);
  server.addService(serviceDefinition(ExecutionService), implementService(ExecutionService, executions, implementOptions));
  server.addService(serviceDefinition(WorkerService), implementService(WorkerService, workerService(coordinator, limits, longPolls), implementOptions));
  const health = new HealthImplementation({ "": "SERVING", ...Object.fromEntries(SERVICE_NAMES.map((name) => [name, "SERVING" as const])) });
  health.addToServer(server);
  store.onAvailability?.((available) => {
    if (stopping) return;
    for (const name of ["", ...SERVICE_NAMES]) health.setStatus(name, available ? "SERVING" : "NOT_SERVING");
    if (available) log.info("the database is reachable again");
    else log.warn("the database cannot be reached; calls fail with UNAVAILABLE until it is back");
  });
  reflectionService().addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(options.listen, serverCredentials(options.tls), (error, port) => (error ? reject(error) : resolve(port))),
  ).catch(async (error: unknown) => {
    await store!.close();
    // A coordinator that never served leaves no new database behind.
    if (createdDatabase) for (const path of [options.db, `${options.db}-wal`, `${options.db}-shm`, lockPathOf(options.db)]) rmSync(path, { force: true });
    const reason = /\[listen (\w+): ([^\]]*?) \S+\]/.exec(String((error as Error).message));
    throw reason ? new ConfigError(`${names.listen}: cannot listen on ${options.listen}: ${reason[2]} (${reason[1]})`) : error;
  });
  const http =
    metrics && httpListen
      ? await serveHttp({ listen: httpListen, handlers: executions, metrics, tls: options.tls, authorizer: options.authorizer, statusOf, log }).catch(async (error: unknown) => {
          server.forceShutdown();
          await store!.close();
          throw new ConfigError(`${names.httpListen}: cannot listen on ${httpListen}: ${(error as Error).message}`);
        })
      : null;
  coordinator.start();
  retention?.start();
  log.info("serving", { listen: options.listen, port, db: postgres ? redactUrl(options.db) : options.db, durability: options.durability, tls: !!options.tls, auth: !!options.authorizer });

  return {
    port,
    httpPort: http?.port ?? null,
    metricsPort: http?.port ?? null,
    coordinator,
    retention,
    holds,
    shutdown(graceMs = 3000) {
      stopping ??= (async () => {
        for (const name of ["", ...SERVICE_NAMES]) health.setStatus(name, "NOT_SERVING");
        // New calls are refused first, so that a worker whose long-poll is
        // answered empty below and asks again gets UNAVAILABLE, and backs off,
        // rather than another empty answer at once; the calls under way drain.
        const drained = new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, graceMs);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        const ticked = coordinator.shutdown();
        await retention?.stop();
        await drained;
        await ticked;
        await store.close();
        await http?.close();
        log.info("stopped");
      })();
      return stopping;
    },
  };
}
