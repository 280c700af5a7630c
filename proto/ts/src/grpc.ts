// The glue between grpc-js and protobuf-es v2: one ServiceDefinition built from
// a generated GenService descriptor, used by the server to register handlers and
// by clients (through makeGenericClientConstructor) to call them.
import * as grpc from "@grpc/grpc-js";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { decodeMessage } from "./decode.js";
import { encodeMessage } from "./encode.js";

type Methods<S> = S extends GenService<infer M> ? M : never;
type In<M extends GenServiceMethods[string]> = MessageShape<M["input"]>;
type Out<M extends GenServiceMethods[string]> = MessageShape<M["output"]>;
type OutInit<M extends GenServiceMethods[string]> = MessageInitShape<M["output"]>;

/** A server-side handler per method, keyed by the method's localName. */
export type ServiceHandlers<S extends GenService<GenServiceMethods>> = {
  [K in keyof Methods<S>]: Methods<S>[K]["methodKind"] extends "unary"
    ? (request: In<Methods<S>[K]>, call: grpc.ServerUnaryCall<In<Methods<S>[K]>, Out<Methods<S>[K]>>) => Promise<OutInit<Methods<S>[K]>>
    : Methods<S>[K]["methodKind"] extends "server_streaming"
      ? (request: In<Methods<S>[K]>, call: grpc.ServerWritableStream<In<Methods<S>[K]>, Out<Methods<S>[K]>>) => Promise<void>
      : never;
};

/** A typed client method per RPC. Server streams are async iterables. */
export type ServiceClient<S extends GenService<GenServiceMethods>> = {
  [K in keyof Methods<S>]: Methods<S>[K]["methodKind"] extends "unary"
    ? (request: MessageInitShape<Methods<S>[K]["input"]>, options?: CallOptions) => Promise<Out<Methods<S>[K]>>
    : Methods<S>[K]["methodKind"] extends "server_streaming"
      ? (request: MessageInitShape<Methods<S>[K]["input"]>, options?: CallOptions) => ServerStream<Out<Methods<S>[K]>>
      : never;
} & { readonly raw: grpc.Client };

export interface CallOptions {
  /** Absolute deadline of the call. */
  deadline?: Date;
  /** Extra metadata, for example an authorization header. */
  metadata?: grpc.Metadata;
  /** Cancels the call. */
  signal?: AbortSignal;
}

/** A server stream: iterate it for messages; cancel() ends it from this side. */
export interface ServerStream<T> extends AsyncIterable<T> {
  cancel(): void;
}

/** A gRPC error raised by a handler: its code and message reach the caller as they are. */
export class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = "StatusError";
  }
}

/**
 * What the server's deserializer returns for bytes that are not a valid
 * message. grpc-js would answer a throwing deserializer with INTERNAL; the
 * handler wrapper answers this with INVALID_ARGUMENT instead, since the fault
 * is the caller's.
 */
class UndecodableRequest {
  constructor(
    readonly typeName: string,
    readonly reason: string,
  ) {}
}

function serializer<D extends DescMessage>(schema: D) {
  return {
    serialize: (value: MessageShape<D> | MessageInitShape<D>) => encodeMessage(schema, value),
    deserialize: (bytes: Buffer) => decodeMessage(schema, bytes),
    deserializeRequest: (bytes: Buffer): MessageShape<D> | UndecodableRequest => {
      try {
        return decodeMessage(schema, bytes);
      } catch (error) {
        return new UndecodableRequest(schema.typeName, error instanceof Error ? error.message : String(error));
      }
    },
  };
}

/** Builds the grpc-js ServiceDefinition of a generated service, keyed by localName. */
export function serviceDefinition(service: GenService<GenServiceMethods>): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") {
      throw new Error(`${service.typeName}.${method.name}: ${method.methodKind} methods are not supported`);
    }
    const request = serializer(method.input);
    const response = serializer(method.output);
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: false,
      responseStream: method.methodKind === "server_streaming",
      requestSerialize: request.serialize,
      requestDeserialize: request.deserializeRequest,
      responseSerialize: response.serialize,
      responseDeserialize: response.deserialize,
      originalName: method.name,
    } as grpc.MethodDefinition<unknown, unknown>;
  }
  return definition;
}

export interface ImplementOptions {
  /** Receives every error that was not a StatusError; the caller sees only INTERNAL. */
  onInternalError(method: string, error: unknown): void;
  /** Turns an error that is not a StatusError into one (for example UNAVAILABLE), or returns undefined for INTERNAL. */
  statusOf?(error: unknown): StatusError | undefined;
  /** Runs before each handler; throws a StatusError (for example UNAUTHENTICATED) to refuse the call. */
  authorize?(service: string, method: string, metadata: grpc.Metadata): void;
}

/**
 * Turns typed async handlers into grpc-js handlers. A thrown StatusError keeps
 * its code; anything else is reported through `onInternalError` and reaches the
 * caller as INTERNAL with no detail, never as UNKNOWN.
 */
export function implementService<S extends GenService<GenServiceMethods>>(
  service: S,
  handlers: ServiceHandlers<S>,
  options: ImplementOptions,
): grpc.UntypedServiceImplementation {
  const implementation: grpc.UntypedServiceImplementation = {};
  const toStatus = (method: string, thrown: unknown): Partial<grpc.StatusObject> => {
    const error = thrown instanceof StatusError ? thrown : (options.statusOf?.(thrown) ?? thrown);
    // The message travels in an HTTP/2 trailer; an oversized one would break the stream.
    if (error instanceof StatusError) return { code: error.code, details: error.message.length > 2000 ? `${error.message.slice(0, 2000)}…` : error.message };
    options.onInternalError(method, error);
    return { code: grpc.status.INTERNAL, details: "internal error" };
  };
  const run = (methodName: string, handler: (request: unknown, call: unknown) => Promise<unknown>, call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>) => {
    try {
      options.authorize?.(service.typeName, methodName, call.metadata);
      if (call.request instanceof UndecodableRequest) {
        throw new StatusError(grpc.status.INVALID_ARGUMENT, `request: not a valid ${call.request.typeName}: ${call.request.reason}`);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    return handler(call.request, call);
  };
  for (const method of service.methods) {
    const handler = (handlers as Record<string, (request: unknown, call: unknown) => Promise<unknown>>)[method.localName];
    if (handler === undefined) throw new Error(`${service.typeName}.${method.name} has no handler`);
    const name = `${service.typeName}/${method.name}`;
    if (method.methodKind === "unary") {
      implementation[method.localName] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        run(method.name, handler, call).then(
          // The encoder takes an init object as it is: no create() copy first.
          (init) => callback(null, init),
          (error: unknown) => callback(toStatus(name, error)),
        );
      };
    } else {
      implementation[method.localName] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        run(method.name, handler, call).then(
          () => call.end(),
          // grpc-js turns an 'error' event on a server stream into the call's status.
          (error: unknown) => call.emit("error", toStatus(name, error)),
        );
      };
    }
  }
  return implementation;
}

/** Creates a typed client of a generated service over one grpc-js channel. */
export function createServiceClient<S extends GenService<GenServiceMethods>>(
  service: S,
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  options: grpc.ClientOptions = {},
): ServiceClient<S> {
  const Constructor = grpc.makeGenericClientConstructor(serviceDefinition(service), service.typeName);
  const raw = new Constructor(address, credentials, options);
  const client: Record<string, unknown> = { raw };
  for (const method of service.methods) {
    const definition = Constructor.service[method.localName]!;
    if (method.methodKind === "unary") {
      client[method.localName] = (init: MessageInitShape<DescMessage>, opts: CallOptions = {}) =>
        new Promise((resolve, reject) => {
          // The listener goes when the call ends: a long-lived signal (a worker's
          // "stopping") would otherwise collect one per call, without bound.
          const cancel = () => call.cancel();
          const call = raw.makeUnaryRequest(
            definition.path,
            definition.requestSerialize,
            definition.responseDeserialize,
            init,
            opts.metadata ?? new grpc.Metadata(),
            { deadline: opts.deadline },
            (error, value) => {
              opts.signal?.removeEventListener("abort", cancel);
              if (error) reject(error);
              else resolve(value);
            },
          );
          opts.signal?.addEventListener("abort", cancel, { once: true });
        });
    } else {
      client[method.localName] = (init: MessageInitShape<DescMessage>, opts: CallOptions = {}) => {
        const call = raw.makeServerStreamRequest(
          definition.path,
          definition.requestSerialize,
          definition.responseDeserialize,
          init,
          opts.metadata ?? new grpc.Metadata(),
          { deadline: opts.deadline },
        );
        const cancel = () => call.cancel();
        opts.signal?.addEventListener("abort", cancel, { once: true });
        call.once("close", () => opts.signal?.removeEventListener("abort", cancel));
        const stream: ServerStream<unknown> = {
          cancel: () => call.cancel(),
          [Symbol.asyncIterator]: () => call[Symbol.asyncIterator](),
        };
        return stream;
      };
    }
  }
  return client as ServiceClient<S>;
}
