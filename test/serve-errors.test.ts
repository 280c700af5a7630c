// Mistakes an operator can make when starting `reprise serve`, each answered by
// one line that names the option, exit code 2, and nothing left behind.
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { Server } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { formatDuration, loadServeConfig } from "../server/operator/config.js";
import { tempDir } from "./helpers.js";
import { CLI, spawnCoordinator } from "./process-helpers.js";

const run = promisify(execFile);

async function serve(...args: string[]) {
  return serveWith({}, ...args);
}

/** `reprise serve` with more environment variables. */
async function serveWith(env: Record<string, string>, ...args: string[]) {
  return run(process.execPath, [CLI, "serve", ...args], { timeout: 15_000, env: { ...process.env, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

/** The one line a failed start prints, from the CLI's own `reprise:` prefix. */
const repriseLines = (stderr: string) => stderr.split("\n").filter((line) => line.startsWith("reprise:"));

describe("starting reprise serve", () => {
  test("a second coordinator on the same SQLite file refuses to start, naming the file and the process that owns it", async () => {
    const db = join(tempDir(), "reprise.db");
    const first = await spawnCoordinator(db);
    try {
      const second = await serve("--listen", "127.0.0.1:0", "--db", db);
      expect(second.code).toBe(2);
      expect(repriseLines(second.stderr)).toEqual([
        expect.stringMatching(new RegExp(`^reprise: --db: ${db.replace(/[.]/g, "\\.")} is in use by another coordinator \\(pid ${first.child.pid} on .+, started .+\\)`)),
      ]);
      expect(second.stderr).not.toMatch(/\n\s+at /);
      // The first one still serves.
      expect((await first.executions.listExecutions({})).executions).toEqual([]);
    } finally {
      first.closeClients();
      first.child.kill("SIGTERM");
      await first.exited;
    }
  });

  test("once the owner has been killed with SIGKILL, the file is free for the next coordinator", async () => {
    const db = join(tempDir(), "reprise.db");
    const first = await spawnCoordinator(db);
    await first.kill();
    const next = await spawnCoordinator(db);
    next.closeClients();
    next.child.kill("SIGTERM");
    expect(await next.exited).toEqual({ code: 0, signal: null });
  });

  test("a port already in use fails naming --listen, and leaves no new database file behind", async () => {
    const dir = tempDir();
    const taken: Server = await new Promise((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => resolve(server));
    });
    try {
      const port = (taken.address() as { port: number }).port;
      const result = await serve("--listen", `127.0.0.1:${port}`, "--db", join(dir, "reprise.db"));
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(`reprise: --listen: cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)\n`);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  test("a TLS or token file that is missing, or is not what the option needs, fails naming the option and the file", async () => {
    const dir = tempDir();
    const file = (name: string) => join(dir, name);
    for (const name of ["a", "b"]) {
      execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", file(`${name}.key`), "-out", file(`${name}.pem`), "-days", "1", "-subj", "/CN=x"], { stdio: "pipe" });
    }
    writeFileSync(file("notes.txt"), "not a certificate\n");
    const db = ["--listen", "127.0.0.1:0", "--db", file("reprise.db")];
    const cases: [string[], RegExp][] = [
      [["--tls-cert", file("missing.pem"), "--tls-key", file("a.key")], /^reprise: --tls-cert: cannot read .*missing\.pem: ENOENT/],
      [["--tls-cert", file("notes.txt"), "--tls-key", file("a.key")], /^reprise: --tls-cert: .*notes\.txt is not a PEM certificate/],
      [["--tls-cert", file("a.pem"), "--tls-key", file("a.pem")], /^reprise: --tls-key: .*a\.pem is not a PEM private key/],
      [["--tls-cert", file("a.pem"), "--tls-key", file("b.key")], /^reprise: --tls-key: .*b\.key does not belong to the certificate in --tls-cert/],
      [["--tls-cert", file("a.pem"), "--tls-key", file("a.key"), "--tls-client-ca", file("notes.txt")], /^reprise: --tls-client-ca: .*notes\.txt is not a PEM certificate/],
      [["--auth-tokens", file("missing.tokens")], /^reprise: --auth-tokens: cannot read .*missing\.tokens/],
    ];
    for (const [args, message] of cases) {
      const result = await serve(...db, ...args);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr.split("\n").filter(Boolean), args.join(" ")).toEqual([expect.stringMatching(message)]);
    }
    expect(existsSync(file("reprise.db"))).toBe(false);
  });

  test("a --db that is not a database, or is a folder, fails naming --db and leaves nothing beside it", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "notes.txt"), "not a database, but long enough to be read as one: ".repeat(100));
    const notes = await serve("--listen", "127.0.0.1:0", "--db", join(dir, "notes.txt"));
    expect(notes).toMatchObject({ code: 2, stderr: `reprise: --db: cannot open ${join(dir, "notes.txt")} as a database: file is not a database\n` });
    mkdirSync(join(dir, "folder"));
    const folder = await serve("--listen", "127.0.0.1:0", "--db", join(dir, "folder"));
    expect(folder).toMatchObject({ code: 2, stderr: `reprise: --db: cannot open ${join(dir, "folder")} as a database: unable to open database file\n` });
    expect(readdirSync(dir).sort()).toEqual(["folder", "notes.txt"]);
  });

  test("a --db whose folder does not exist fails naming --db and the folder", async () => {
    const missing = join(tempDir(), "no-such-folder");
    const result = await serve("--listen", "127.0.0.1:0", "--db", join(missing, "reprise.db"));
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`reprise: --db: the folder ${missing} does not exist\n`);
    expect(existsSync(missing)).toBe(false);
  });

  test("a value that came from an environment variable is named by the variable, not the flag: REPRISE_DB, REPRISE_LISTEN, REPRISE_TLS_CERT", async () => {
    const dir = tempDir();
    const missing = join(dir, "no-such-folder");
    expect(await serveWith({ REPRISE_DB: join(missing, "reprise.db") }, "--listen", "127.0.0.1:0")).toMatchObject({
      code: 2,
      stderr: `reprise: REPRISE_DB: the folder ${missing} does not exist\n`,
    });
    const taken: Server = await new Promise((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => resolve(server));
    });
    try {
      const port = (taken.address() as { port: number }).port;
      const result = await serveWith({ REPRISE_LISTEN: `127.0.0.1:${port}` }, "--db", join(dir, "reprise.db"));
      expect(result).toMatchObject({ code: 2, stderr: `reprise: REPRISE_LISTEN: cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)\n` });
      // The HTTP address through its alias is named as the alias was given.
      const alias = await serveWith({ REPRISE_METRICS_LISTEN: `127.0.0.1:${port}` }, "--listen", "127.0.0.1:0", "--db", join(dir, "reprise.db"));
      expect(alias.stderr).toMatch(new RegExp(`^reprise: REPRISE_METRICS_LISTEN: cannot listen on 127\\.0\\.0\\.1:${port}: `));
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
    const notes = join(dir, "notes.txt");
    writeFileSync(notes, "not a certificate\n");
    const tls = await serveWith({ REPRISE_TLS_CERT: notes, REPRISE_TLS_KEY: notes }, "--listen", "127.0.0.1:0", "--db", join(dir, "reprise.db"));
    expect(tls.code).toBe(2);
    expect(tls.stderr).toMatch(new RegExp(`^reprise: REPRISE_TLS_CERT: ${notes.replace(/[.]/g, "\\.")} is not a PEM certificate`));
    // Given as a flag as well, the flag wins and is the one named.
    expect((await serveWith({ REPRISE_DB: "/elsewhere/reprise.db" }, "--listen", "127.0.0.1:0", "--db", join(missing, "reprise.db"))).stderr).toBe(
      `reprise: --db: the folder ${missing} does not exist\n`,
    );
  });

  test("a PostgreSQL --db that cannot be reached fails in one line naming --db, with the URL's password hidden, given as user:password@ or as ?password=", async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const result = await serve("--listen", "127.0.0.1:0", "--db", `postgresql://reprise:hunter2@127.0.0.1:${port}/reprise`);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `reprise: --db: cannot use the PostgreSQL database postgresql://reprise:***@127.0.0.1:${port}/reprise: the PostgreSQL database cannot be reached: connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
 
    // Given as a query parameter instead, it is hidden too.
    const query = await serve("--listen", "127.0.0.1:0", "--db", `postgresql://reprise@127.0.0.1:${port}/reprise?password=hunter2&application_name=r`);
    expect(query.stderr).toBe(
      `reprise: --db: cannot use the PostgreSQL database postgresql://reprise@127.0.0.1:${port}/reprise?password=***&application_name=r: the PostgreSQL database cannot be reached: connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
  });
});

describe("durations in serve options", () => {
  test("a duration needs its unit (ms, s, m, h or d): a bare number is refused, naming the option", () => {
    expect(loadServeConfig({ "min-lease-duration": "30s", "max-lease-duration": "2h" }, {})).toMatchObject({ minLeaseMs: 30_000, maxLeaseMs: 7_200_000 });
    expect(() => loadServeConfig({ "min-lease-duration": "30" }, {})).toThrow('--min-lease-duration: give it a unit, as in 30s or 30ms; got "30"');
    expect(() => loadServeConfig({}, { REPRISE_MAX_LEASE_DURATION: "60000" })).toThrow(/^REPRISE_MAX_LEASE_DURATION: give it a unit/);
  });

  test("the units suggested for a bare number are ones the option accepts: --retain is at least 1m, --db-timeout at least 100ms", () => {
    expect(() => loadServeConfig({ retain: "30" }, {})).toThrow('--retain: give it a unit, as in 30m or 30h; got "30"');
    expect(() => loadServeConfig({ "db-timeout": "5" }, {})).toThrow('--db-timeout: give it a unit, as in 5s or 5m; got "5"');
    expect(() => loadServeConfig({ "db-timeout": "50ms" }, {})).toThrow('--db-timeout: must be at least 100ms; got "50ms"');
  });

  test("--help shows every duration's default with its unit", async () => {
    const help = await run(process.execPath, [CLI, "serve", "--help"]);
    expect(help.stdout).toMatch(/--min-lease-duration[^\n]*\n\s+default: 10ms;/);
    expect(help.stdout).toMatch(/--max-lease-duration[^\n]*\n\s+default: 1h;/);
    expect([formatDuration(10), formatDuration(90_000), formatDuration(86_400_000), formatDuration(1500)]).toEqual(["10ms", "90s", "1d", "1500ms"]);
  });
});
