// The wire layer shared by the coordinator and the clients: generated messages,
// services and the grpc-js adapter.
export * from "./gen/reprise/v1/types_pb.js";
export * from "./gen/reprise/v1/execution_service_pb.js";
export * from "./gen/reprise/v1/worker_service_pb.js";
export * from "./grpc.js";
