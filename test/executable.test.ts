// The single executable's own parts: the cache folders it unpacks the SQLite
// addon and the vendored protos into, and the commands `reprise protos DIR`
// and `reprise --version`, under node. With REPRISE_COORDINATOR_BIN naming a
// built executable (`npm run build:binary`; .ci/run sets it), the same
// commands and a served coordinator are checked on it, run with an empty
// environment.
import { execFile, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { get as httpsGet } from "node:https";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { BUF_GEN_EXAMPLE } from "../server/operator/protos.js";
import { UnpackError, cacheCandidates, makeDirectory, unpack } from "../server/runtime/unpack.js";
import type { PackedFile } from "../server/runtime/unpack.js";
import { tempDir } from "./helpers.js";
import { CLI } from "./process-helpers.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUF = join(ROOT, "node_modules/.bin/buf");
const EXECUTABLE = process.env.REPRISE_COORDINATOR_BIN || undefined;
const UID = process.getuid!();

async function exec(command: string, args: string[], env?: NodeJS.ProcessEnv) {
  return run(command, args, { env }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

function packed(path: string, text: string): PackedFile {
  const bytes = Buffer.from(text);
  return { path, sha256: createHash("sha256").update(bytes).digest("hex"), bytes: () => bytes };
}

const apiProtoFiles = () => readdirSync(join(ROOT, "proto/reprise/v1")).filter((name) => name.endsWith(".proto")).sort();

describe("cache folders for what the executable unpacks", () => {
  test("candidates come in order: REPRISE_CACHE_DIR, $XDG_CACHE_HOME/reprise, ~/.cache/reprise, $TMPDIR/reprise-<uid>", () => {
    const env = { REPRISE_CACHE_DIR: "/c", XDG_CACHE_HOME: "/x", TMPDIR: "/t" };
    expect(cacheCandidates(env, "/h", 1000)).toEqual([
      { path: "/c", shared: false },
      { path: "/x/reprise", shared: false },
      { path: "/h/.cache/reprise", shared: false },
      { path: "/t/reprise-1000", shared: true },
    ]);
    // A relative XDG_CACHE_HOME is ignored, as the XDG rules say; no TMPDIR means /tmp.
    expect(cacheCandidates({ XDG_CACHE_HOME: "relative" }, undefined, 0)).toEqual([{ path: "/tmp/reprise-0", shared: true }]);
  });

  test("a folder under /proc fails at once instead of hanging, one level at a time", () => {
    expect(() => makeDirectory("/proc/reprise-no-such-process/.cache/reprise")).toThrow();
    const deep = join(tempDir(), "a/b/c");
    makeDirectory(deep);
    expect(statSync(deep).isDirectory()).toBe(true);
  }, 5_000);

  test("unpacking falls back past unusable folders and a loader that fails, to the first that works", () => {
    const root = tempDir();
    writeFileSync(join(root, "a-file"), "");
    const refused = join(root, "refused");
    const good = join(root, "good");
    const candidates = [
      { path: "/proc/reprise-no-such-process/cache", shared: false },
      { path: join(root, "a-file/cache"), shared: false },
      { path: refused, shared: false },
      { path: good, shared: false },
    ];
    const files = [packed("lib/addon.node", "addon"), packed("x.proto", "syntax")];
    const { folder, value } = unpack("set-id", files, candidates, UID, (dir) => {
      if (dir.startsWith(refused)) throw new Error("cannot load from here");
      return readFileSync(join(dir, "lib/addon.node"), "utf8");
    });
    expect(folder).toBe(join(good, "set-id"));
    expect(value).toBe("addon");
    expect(readFileSync(join(folder, "x.proto"), "utf8")).toBe("syntax");
    expect(readdirSync(join(folder, "lib"))).toEqual(["addon.node"]);
  });

  test("a file with the right content is kept; any other content is replaced", () => {
    const cache = tempDir();
    const file = packed("addon.node", "the real addon");
    const target = join(cache, "id", "addon.node");
    unpack("id", [file], [{ path: cache, shared: false }], UID, () => undefined);
    const first = statSync(target).mtimeMs;
    unpack("id", [file], [{ path: cache, shared: false }], UID, () => undefined);
    expect(statSync(target).mtimeMs).toBe(first);
    writeFileSync(target, "planted");
    unpack("id", [file], [{ path: cache, shared: false }], UID, () => undefined);
    expect(readFileSync(target, "utf8")).toBe("the real addon");
  });

  test("a shared temporary folder that others can write to is refused, and no usable folder is one clear error", () => {
    const open = join(tempDir(), `reprise-${UID}`);
    mkdirSync(open);
    chmodSync(open, 0o777);
    const attempt = () => unpack("id", [packed("f", "x")], [{ path: open, shared: true }], UID, () => undefined);
    expect(attempt).toThrow(UnpackError);
    expect(attempt).toThrow(/REPRISE_CACHE_DIR.*can be written by other users/);
    expect(existsSync(join(open, "id"))).toBe(false);
  });
});

/** The commands that behave the same under node and inside the executable. */
function commandSuite(name: string, command: () => { file: string; args: string[]; env?: NodeJS.ProcessEnv }) {
  const reprise = (...args: string[]) => {
    const c = command();
    return exec(c.file, [...c.args, ...args], c.env);
  };

  describe(name, () => {
    test("protos DIR writes the API's .proto files under DIR/reprise/v1/ and an example buf.gen.yaml beside them", async () => {
      const dir = join(tempDir(), "new/protos");
      const { code, stdout } = await reprise("protos", dir);
      expect(code).toBe(0);
      expect(readdirSync(join(dir, "reprise/v1")).sort()).toEqual(apiProtoFiles());
      for (const file of apiProtoFiles()) {
        expect(readFileSync(join(dir, "reprise/v1", file), "utf8")).toBe(readFileSync(join(ROOT, "proto/reprise/v1", file), "utf8"));
      }
      expect(readFileSync(join(dir, "buf.gen.yaml"), "utf8")).toBe(BUF_GEN_EXAMPLE);
      expect(stdout.trim().split("\n")).toHaveLength(apiProtoFiles().length + 1);
      // They compile on their own, with nothing but what was written.
      await run(BUF, ["build", dir]);
      // An edited template is kept.
      writeFileSync(join(dir, "buf.gen.yaml"), "# mine\n");
      const again = await reprise("protos", dir);
      expect(again.code).toBe(0);
      expect(again.stderr).toContain("kept");
      expect(readFileSync(join(dir, "buf.gen.yaml"), "utf8")).toBe("# mine\n");
    });

    test("protos with no DIR, or a DIR that cannot be written, is one line naming it, exit 2", async () => {
      const missing = await reprise("protos");
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/^reprise: protos: give exactly one folder[^\n]*\n$/);
      const blocked = join(tempDir(), "a-file");
      writeFileSync(blocked, "");
      const unwritable = await reprise("protos", join(blocked, "protos"));
      expect(unwritable.code).toBe(2);
      expect(unwritable.stderr.startsWith(`reprise: protos: cannot write to ${blocked}/protos: `)).toBe(true);
      expect(unwritable.stderr.trimEnd().split("\n")).toHaveLength(1);
    });

    test("--version prints the version, the commit, and the Node and SQLite versions", async () => {
      const { code, stdout } = await reprise("--version");
      expect(code).toBe(0);
      const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
      expect(stdout).toMatch(new RegExp(`^reprise ${version.replaceAll(".", "\\.")}\ncommit ([0-9a-f]{40}|unknown)\nnode \\d+\\.\\d+\\.\\d+\nsqlite 3\\.\\d+\\.\\d+\n$`));
    });
  });
}

commandSuite("reprise protos and --version under node", () => ({ file: process.execPath, args: [CLI] }));

describe.runIf(EXECUTABLE !== undefined)("the single executable, with an empty environment", () => {
  const empty = (home: string, extra: NodeJS.ProcessEnv = {}) => ({ PATH: "/nonexistent", HOME: home, ...extra });

  commandSuite("its commands", () => ({ file: EXECUTABLE!, args: [], env: empty(tempDir()) }));

  test("--version names the node it carries", async () => {
    const { stdout } = await exec(EXECUTABLE!, ["--version"], empty(tempDir()));
    expect(stdout).toContain(`node ${process.versions.node}\n`);
  });

  test("a HOME under /proc falls back to $TMPDIR/reprise-<uid> instead of hanging", async () => {
    const tmp = tempDir();
    const { code, stderr } = await exec(EXECUTABLE!, ["--version"], empty("/proc/reprise-no-such-process", { TMPDIR: tmp }));
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(readdirSync(join(tmp, `reprise-${UID}`)).length).toBeGreaterThan(0);
  }, 15_000);

  test("two processes unpacking into an empty cache at once both start, and leave whole files only", async () => {
    const cache = join(tempDir(), "cache");
    const env = empty(tempDir(), { REPRISE_CACHE_DIR: cache });
    const results = await Promise.all([1, 2, 3].map(() => exec(EXECUTABLE!, ["--version"], env)));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0]);
    const files = readdirSync(cache, { recursive: true }).map(String);
    expect(files.filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(files.some((f) => f.endsWith("better_sqlite3.node"))).toBe(true);
  }, 30_000);

  test("serve answers health checks and lists every method through server reflection", async () => {
    const dir = tempDir();
    const child = spawn(EXECUTABLE!, ["serve", "--listen", "127.0.0.1:0", "--db", join(dir, "reprise.db")], {
      env: empty(dir),
      stdio: ["ignore", "ignore", "pipe"],
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      let stderr = "";
      const address = await new Promise<string>((resolve, reject) => {
        child.stderr!.on("data", (chunk: Buffer) => {
          stderr += chunk.toString();
          const match = /serving on (127\.0\.0\.1:\d+)/.exec(stderr);
          if (match) resolve(match[1]!);
        });
        child.once("exit", (code) => reject(new Error(`the executable exited with ${code}: ${stderr}`)));
      });
      const curl = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"];
      const { stdout: methods } = await run(BUF, [...curl, "--list-methods", `http://${address}`]);
      for (const method of ["reprise.v1.ExecutionService/Submit", "reprise.v1.WorkerService/LeaseAttempts", "grpc.health.v1.Health/Check"]) {
        expect(methods).toContain(method);
      }
      const { stdout: health } = await run(BUF, [...curl, `http://${address}/grpc.health.v1.Health/Check`]);
      expect(JSON.parse(health)).toEqual({ status: "SERVING" });
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  }, 30_000);

  test("every command works from it: serve with TLS, tokens, the console, the JSON API, metrics and full durability; submit, ls, show, cancel, rerun, watch, workers, backup", async () => {
    const dir = tempDir();
    const file = (name: string) => join(dir, name);
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", file("key.pem"), "-out", file("cert.pem"), "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], { stdio: "pipe" });
    const token = "admin-token-for-the-executable";
    writeFileSync(file("tokens"), `admin ${token}\n`);
    const env = empty(dir);
    const child = spawn(EXECUTABLE!, ["serve", "--listen", "127.0.0.1:0", "--db", file("reprise.db"), "--tls-cert", file("cert.pem"), "--tls-key", file("key.pem"),
      "--auth-tokens", file("tokens"), "--http-listen", "127.0.0.1:0", "--durability", "full"], { env, stdio: ["ignore", "ignore", "pipe"] });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    try {
      let stderr = "";
      const [address, httpBase] = await new Promise<[string, string]>((resolve, reject) => {
        child.stderr!.on("data", (chunk: Buffer) => {
          stderr += chunk.toString();
          const match = /serving on (127\.0\.0\.1:\d+) .*metrics on (https:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(stderr);
          if (match) resolve([match[1]!, match[2]!]);
        });
        child.once("exit", (code) => reject(new Error(`the executable exited with ${code}: ${stderr}`)));
      });
      const cli = (...args: string[]) => exec(EXECUTABLE!, [...args, "--addr", address, "--tls-ca", file("cert.pem"), "--token", token], env);
      const submitted = await cli("submit", "report", "--args", '{"day":1}', "--key", "day-1", "--retries", "2", "--backoff", "1s,5s");
      expect(submitted.code).toBe(0);
      const id = submitted.stdout.trim();
      expect((await cli("ls", "--state", "pending")).stdout).toContain(id);
      expect((await cli("show", id)).stdout).toContain(id);
      expect(await cli("cancel", id)).toMatchObject({ code: 0, stdout: expect.stringContaining("CANCELLED") });
      expect((await cli("watch", id, "--json")).code).toBe(1);
      expect((await cli("workers")).stdout).toBe("no worker seen in the last 7 days\n");
      expect((await exec(EXECUTABLE!, ["ls", "--addr", address, "--tls-ca", file("cert.pem")], env)).stderr).toContain("UNAUTHENTICATED");
      // HTTPS with the coordinator's certificate: the console, the JSON API and the metrics, all embedded in the executable.
      const https = (path: string, headers: Record<string, string> = {}) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          httpsGet(`${httpBase}${path}`, { ca: readFileSync(file("cert.pem")), headers }, (response) => {
            let body = "";
            response.on("data", (chunk: Buffer) => (body += chunk.toString()));
            response.on("end", () => resolve({ status: response.statusCode!, body }));
          }).on("error", reject);
        });
      expect((await https("/metrics")).body).toContain('reprise_executions{task="report",state="cancelled"} 1');
      expect((await https("/")).body).toContain('<script src="app.js"></script>');
      expect(await https("/app.js")).toMatchObject({ status: 200, body: expect.stringContaining("/api/v1/executions") });
      expect(await https(`/api/v1/executions/${id}`)).toMatchObject({ status: 401 });
      expect(JSON.parse((await https(`/api/v1/executions/${id}`, { authorization: `Bearer ${token}` })).body)).toMatchObject({ id, state: "EXECUTION_STATE_CANCELLED" });
      expect(await cli("rerun", id)).toMatchObject({ code: 0, stdout: expect.stringContaining("PENDING") });
      expect(await exec(EXECUTABLE!, ["backup", "--db", file("reprise.db"), file("copy.db")], env)).toMatchObject({ code: 0 });
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  }, 60_000);
});
