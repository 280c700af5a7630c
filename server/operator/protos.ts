// `reprise protos DIR`: writes the API's .proto files, and an example buf
// template beside them, so that a team can generate a client in its own
// language from the executable alone.
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseCommandLine } from "./args.js";
import { ConfigError } from "./config.js";
import { apiProtos } from "../runtime/runtime.js";
import { makeDirectory } from "../runtime/unpack.js";

const HELP = `Usage: reprise protos DIR

Writes the Reprise API (reprise.v1) as .proto files under DIR/reprise/v1/,
and DIR/buf.gen.yaml, an example template for generating a Python, Go or Java
client with buf and plugins installed locally (an existing buf.gen.yaml is
kept). DIR is created if it does not exist; the .proto files are overwritten.
`;

/** The example template written beside the protos. */
export const BUF_GEN_EXAMPLE = `# Generates a Reprise client from the protos in this folder, with buf and
# plugins installed on this machine: nothing is downloaded. Keep the language
# you need, delete the others, and run \`buf generate\` in this folder. The
# google/protobuf imports (Duration, Timestamp) are built into buf and protoc.
version: v2
clean: true
inputs:
  - directory: .
# The protos set no language options; managed mode supplies them. Put your own
# module path here for Go; Java gets the package com.reprise.v1.
managed:
  enabled: true
  override:
    - file_option: go_package_prefix
      value: example.com/yourteam/reprise/gen/go
plugins:
  # Python: messages and type stubs from protoc's own generators (protoc must be
  # on PATH), gRPC stubs from grpc_python_plugin. Without buf, grpcio-tools does
  # all three in one command:
  #   mkdir -p gen/python && python -m grpc_tools.protoc -I . --python_out=gen/python \\
  #     --pyi_out=gen/python --grpc_python_out=gen/python reprise/v1/*.proto
  - protoc_builtin: python
    out: gen/python
  - protoc_builtin: pyi
    out: gen/python
  - local: grpc_python_plugin
    out: gen/python

  # Go: protoc-gen-go and protoc-gen-go-grpc on PATH (go install both).
  - local: protoc-gen-go
    out: gen/go
    opt: paths=source_relative
  - local: protoc-gen-go-grpc
    out: gen/go
    opt: paths=source_relative

  # Java: messages from protoc's own generator (protoc must be on PATH), gRPC
  # stubs from protoc-gen-grpc-java on PATH.
  - protoc_builtin: java
    out: gen/java
  - local: protoc-gen-grpc-java
    out: gen/java
`;

/** Writes the protos under `dir`; returns the files written and whether an existing buf.gen.yaml was kept. */
export function writeProtos(dir: string): { written: string[]; keptTemplate: string | null } {
  const written: string[] = [];
  try {
    for (const proto of apiProtos()) {
      const target = join(dir, ...proto.path.split("/"));
      makeDirectory(dirname(target));
      writeFileSync(target, proto.text);
      written.push(target);
    }
    const template = join(dir, "buf.gen.yaml");
    if (existsSync(template)) return { written, keptTemplate: template };
    writeFileSync(template, BUF_GEN_EXAMPLE);
    written.push(template);
    return { written, keptTemplate: null };
  } catch (error) {
    throw new ConfigError(`protos: cannot write to ${dir}: ${(error as Error).message}`);
  }
}

export function protosCommand(args: string[]): number {
  const { values, positionals } = parseCommandLine({ args, options: { help: { type: "boolean" } }, allowPositionals: true });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] === "") throw new ConfigError("protos: give exactly one folder to write to, for example: reprise protos ./proto");
  const { written, keptTemplate } = writeProtos(positionals[0]!);
  for (const file of written) process.stdout.write(`${file}\n`);
  if (keptTemplate) process.stderr.write(`reprise: kept the existing ${keptTemplate}\n`);
  return 0;
}
