// A private, throwaway PostgreSQL server for tests, from Debian's postgresql
// package (installed with apt-get when missing and we are root). As root the
// server runs as the `postgres` user: PostgreSQL refuses to run as root, and
// tests should not need it to.
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { inject } from "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** Admin URL (database `postgres`) of the run's server, from test/postgres-global-setup.ts. */
    postgresUrl?: string;
  }
}

export interface PostgresServer {
  /** postgres://USER@127.0.0.1:PORT/DB URL for a database name */
  url(database?: string): string;
  /** CREATE DATABASE with a unique name (prefix given), returns its URL */
  createDatabase(prefix: string): Promise<string>;
  /** pg_ctl stop -m fast (server down, data kept), then start again on the same port; for restart tests */
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
  /** stops the server (by pg_ctl / its PID) and removes the temporary folder */
  close(): Promise<void>;
  /** postmaster pid (from postmaster.pid) */
  pid(): number;
}

const USER = "reprise";
const INSTALL_HINT =
  "install Debian's PostgreSQL (as root: apt-get install postgresql), or set REPRISE_TEST_POSTGRES=off to run without it";

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

/** The newest /usr/lib/postgresql/<version>/bin with an initdb, if any. */
function findBinaries(): string | undefined {
  let versions: string[];
  try {
    versions = readdirSync("/usr/lib/postgresql");
  } catch {
    return undefined;
  }
  return versions
    .sort((a, b) => b.localeCompare(a, "en", { numeric: true }))
    .map((version) => `/usr/lib/postgresql/${version}/bin`)
    .find((bin) => existsSync(join(bin, "initdb")));
}

function hasAptGet(): boolean {
  return spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status === 0;
}

/** true when PostgreSQL binaries are available (or installable: root + apt-get) */
export function postgresAvailable(): boolean {
  return findBinaries() !== undefined || (isRoot && hasAptGet());
}

let aptUpdated = false;

function installPostgres(): void {
  const apt = (args: string[]): void => {
    const result = spawnSync("apt-get", args, {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    if (result.status !== 0) throw new Error(`apt-get ${args.join(" ")} failed; ${INSTALL_HINT}`);
  };
  if (!aptUpdated) {
    apt(["update", "-qq"]);
    aptUpdated = true;
  }
  apt(["install", "-y", "-qq", "postgresql"]);
}

function binaries(): string {
  let bin = findBinaries();
  if (!bin && isRoot && hasAptGet()) {
    installPostgres();
    bin = findBinaries();
  }
  if (!bin) throw new Error(`PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): ${INSTALL_HINT}`);
  return bin;
}

/** uid and gid of the `postgres` system user, which the Debian package creates. */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string): number => {
    const result = spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
    if (result.status !== 0) {
      throw new Error(
        "running as root, but there is no `postgres` user to run PostgreSQL as (PostgreSQL refuses to run as root; " +
          "Debian's postgresql package creates the user): reinstall postgresql, or run the tests as an ordinary user",
      );
    }
    return Number(result.stdout.trim());
  };
  return { uid: id("-u"), gid: id("-g") };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** CREATE DATABASE <prefix>_<unique suffix> on the server at adminUrl; returns the new database's URL. */
async function createDatabaseAt(adminUrl: string, prefix: string): Promise<string> {
  const clean = prefix.toLowerCase().replace(/[^a-z0-9_]/g, "_").slice(0, 40);
  const name = `${clean}_${randomBytes(6).toString("hex")}`;
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * A fresh database on the run's shared server (started by test/postgres-global-setup.ts);
 * returns its URL.
 */
export async function testDatabase(prefix: string): Promise<string> {
  const adminUrl = inject("postgresUrl");
  if (!adminUrl) {
    throw new Error(
      "no PostgreSQL server for this run: REPRISE_TEST_POSTGRES=off, or PostgreSQL is not installed " +
        "(as root: apt-get install postgresql) and the tests do not run as root to install it",
    );
  }
  return createDatabaseAt(adminUrl, prefix);
}

export async function startPostgres(options: { port?: number } = {}): Promise<PostgresServer> {
  const bin = binaries();
  const owner = isRoot ? postgresUser() : undefined;
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), "reprise-pg-"));
  const data = join(dir, "data");
  mkdirSync(data, { mode: 0o700 });
  if (owner) {
    chmodSync(dir, 0o755); // the postgres user must reach data/ inside our folder
    chownSync(data, owner.uid, owner.gid);
  }
  // As root, every PostgreSQL program runs as the postgres user (from dir, which it can read).
  const command = (program: string, args: string[]): [string, string[]] =>
    owner ? ["runuser", ["-u", "postgres", "--", join(bin, program), ...args]] : [join(bin, program), args];
  const pgCtl = async (args: string[]): Promise<void> => {
    const [file, argv] = command("pg_ctl", ["-D", data, ...args]);
    await run(file, argv, { cwd: dir });
  };
  const settings = [
    "-c listen_addresses=127.0.0.1",
    `-p ${port}`,
    `-c unix_socket_directories=${data}`,
    // Tests never need the data to survive a crash of the machine.
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
    "-c max_connections=300 -c shared_buffers=128MB",
  ].join(" ");

  let running = false;
  const start = async (): Promise<void> => {
    try {
      await pgCtl(["-l", join(data, "server.log"), "-w", "-t", "60", "start", "-o", settings]);
    } catch (error) {
      throw new Error(`PostgreSQL did not start on 127.0.0.1:${port}: ${logTail(join(data, "server.log"), error)}`);
    }
    running = true;
  };
  // On exit nothing asynchronous runs any more: stop synchronously, without a shutdown checkpoint.
  const onExit = (): void => {
    if (running) {
      const [file, argv] = command("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      spawnSync(file, argv, { cwd: dir, stdio: "ignore" });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", onExit);

  try {
    // --locale=C: independent of the caller's LANG/LC_*, which may name a locale that is not generated.
    const [file, argv] = command("initdb", ["-D", data, "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
    await run(file, argv, { cwd: dir }).catch((error: unknown) => {
      throw new Error(`initdb failed: ${errorOutput(error)}`);
    });
    await start();
  } catch (error) {
    process.off("exit", onExit);
    onExit();
    throw error;
  }

  let closing: Promise<void> | undefined;
  const url = (database = "postgres"): string => `postgres://${USER}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return {
    url,
    createDatabase: (prefix) => createDatabaseAt(url(), prefix),
    async stopServer() {
      await pgCtl(["-m", "fast", "-w", "-t", "60", "stop"]);
      running = false;
    },
    startServer: start,
    pid: () => postmasterPid(data),
    close() {
      closing ??= (async () => {
        process.off("exit", onExit);
        if (running) {
          // The data is about to be deleted: no need for a clean shutdown.
          await pgCtl(["-m", "immediate", "-w", "-t", "30", "stop"]).catch(() => quitPostmaster(data));
          running = false;
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}

function postmasterPid(data: string): number {
  const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${data}/postmaster.pid`);
  return pid;
}

/**
 * When pg_ctl could not stop the server: SIGQUIT (immediate shutdown, its children too) to the
 * postmaster, if that pid is still a postgres started on this data directory (pg_ctl passes -D).
 */
function quitPostmaster(data: string): void {
  try {
    const pid = postmasterPid(data);
    if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(data)) process.kill(pid, "SIGQUIT");
  } catch {
    // No pid file or no such process: the server is already gone.
  }
}

function errorOutput(error: unknown): string {
  const { stderr, stdout, message } = error as { stderr?: string; stdout?: string; message?: string };
  return (stderr || stdout || message || String(error)).trim();
}

/** The end of the server log, which says why PostgreSQL did not start (pg_ctl itself says little). */
function logTail(log: string, error: unknown): string {
  try {
    return readFileSync(log, "utf8").trim().split("\n").slice(-20).join("\n");
  } catch {
    return errorOutput(error);
  }
}
