// What differs between running under `node` and running inside the single
// executable (`npm run build:binary`), and nothing else: how the SQLite addon
// is loaded, where the protos and migrations come from, and the version.
// Under node they are files of the checkout or package; inside the
// executable they are assets that the build embedded (scripts/build-binary.mjs
// writes the manifest read here).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { getAsset, isSea } from "node:sea";
import { fileURLToPath } from "node:url";
import { UnpackError, cacheCandidates, unpack } from "./unpack.js";

/** True inside the single executable. */
export const inExecutable = isSea();

interface PackedSet {
  /** The folder name: sha256 over the set's paths and contents. */
  id: string;
  files: { path: string; sha256: string; asset: string }[];
}

/** Written by the build into the executable as the asset "manifest.json". */
interface Manifest {
  version: string;
  commit: string;
  /** Asset names of the API's protos, "proto/reprise/v1/….proto". */
  protos: string[];
  /** Asset names of the console's files, "console/app.js" and the like. */
  console: string[];
  /** Asset names of the migrations, "migrations/sqlite/0001_….sql" and "migrations/postgres/0001_….sql". */
  migrations: string[];
  /** The SQLite addon and the better-sqlite3 code for the checkpoint thread. */
  sqlite: PackedSet;
  /** The .proto files that bundled gRPC libraries read from disk (health, reflection). */
  vendorProtos: PackedSet;
}

let manifest: Manifest | undefined;
const embedded = (): Manifest => (manifest ??= JSON.parse(getAsset("manifest.json", "utf8")) as Manifest);

/** The checkout or package root under node: the nearest folder above this module that holds proto/reprise/v1. */
function root(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (let candidate = here, up = 0; up < 5; candidate = dirname(candidate), up++) {
    if (existsSync(join(candidate, "proto/reprise/v1"))) return candidate;
  }
  throw new Error(`the Reprise protos were not found above ${here}`);
}

const unpacked = new Map<PackedSet, { folder: string; value: unknown }>();

function unpackSet<T>(set: PackedSet, accept: (folder: string) => T): { folder: string; value: T } {
  let entry = unpacked.get(set);
  if (!entry) {
    const uid = process.getuid?.() ?? 0;
    // The environment is read here rather than passed in from cli.ts: the
    // vendored protos are needed while the bundle loads, before the CLI runs.
    const files = set.files.map((file) => ({ path: file.path, sha256: file.sha256, bytes: () => new Uint8Array(getAsset(file.asset)) }));
    entry = unpack(set.id, files, cacheCandidates(process.env, homedir(), uid), uid, accept);
    unpacked.set(set, entry);
  }
  return entry as { folder: string; value: T };
}

function sqliteFolder(): { folder: string; value: object } {
  return unpackSet(embedded().sqlite, (folder) => {
    const addon = { exports: {} };
    process.dlopen(addon, join(folder, "better_sqlite3.node"));
    return addon.exports;
  });
}

/** better-sqlite3's `nativeBinding` option: the loaded addon inside the executable; undefined (its own lookup) under node. */
export function sqliteBinding(): string | undefined {
  // better-sqlite3 takes the loaded addon object as well as a path; its type declarations name only the path.
  return inExecutable ? (sqliteFolder().value as unknown as string) : undefined;
}

/** How a worker thread loads better-sqlite3: `new (require(driver))(path, { nativeBinding })`. */
export function sqliteForThreads(): { driver: string; nativeBinding: string | undefined } {
  if (!inExecutable) return { driver: createRequire(import.meta.url).resolve("better-sqlite3"), nativeBinding: undefined };
  const { folder } = sqliteFolder();
  return { driver: join(folder, "better-sqlite3.cjs"), nativeBinding: join(folder, "better_sqlite3.node") };
}

/**
 * The console's files, by name ("index.html", "app.js", "styles.css"): built
 * into dist/console by scripts/build-console.mjs, or embedded in the
 * executable. Null for a file the build does not have.
 */
export function consoleFile(name: string): Buffer | null {
  const cached = consoleFiles.get(name);
  if (cached) return cached;
  let file: Buffer | null;
  if (inExecutable) file = embedded().console.includes(`console/${name}`) ? Buffer.from(getAsset(`console/${name}`)) : null;
  else {
    const path = join(root(), "dist/console", name);
    file = existsSync(path) ? readFileSync(path) : null;
  }
  // Read once, not at every request.
  if (file !== null) consoleFiles.set(name, file);
  return file;
}
const consoleFiles = new Map<string, Buffer>();

/** Where each store's migrations live in a checkout or package. */
const migrationsDir = (store: "sqlite" | "postgres") => `server/store/${store}/migrations`;

/** A store's migrations, `0001_….sql` first. */
export function migrations(store: "sqlite" | "postgres"): { name: string; sql: string }[] {
  const named = (name: string) => /^\d{4}_.*\.sql$/.test(name);
  if (inExecutable) {
    const prefix = `migrations/${store}/`;
    return embedded()
      .migrations.filter((asset) => asset.startsWith(prefix))
      .map((asset) => ({ name: asset.slice(prefix.length), sql: getAsset(asset, "utf8") }))
      .filter((m) => named(m.name))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }
  const dir = join(root(), migrationsDir(store));
  return readdirSync(dir)
    .filter(named)
    .sort()
    .map((name) => ({ name, sql: readFileSync(join(dir, name), "utf8") }));
}

/** The API's .proto files, each with its path under the proto root ("reprise/v1/types.proto"). */
export function apiProtos(): { path: string; text: string }[] {
  if (inExecutable) return embedded().protos.map((asset) => ({ path: asset.slice("proto/".length), text: getAsset(asset, "utf8") }));
  const dir = join(root(), "proto/reprise/v1");
  return readdirSync(dir)
    .filter((name) => name.endsWith(".proto"))
    .sort()
    .map((name) => ({ path: `reprise/v1/${name}`, text: readFileSync(join(dir, name), "utf8") }));
}

/** The package version and the commit it was built from ("unknown" outside a git checkout). */
export function buildInfo(): { version: string; commit: string } {
  if (inExecutable) return { version: embedded().version, commit: embedded().commit };
  const top = root();
  const { version } = JSON.parse(readFileSync(join(top, "package.json"), "utf8")) as { version: string };
  let commit = "unknown";
  if (existsSync(join(top, ".git"))) {
    try {
      commit = execFileSync("git", ["rev-parse", "HEAD"], { cwd: top, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      // No git on this machine.
    }
  }
  return { version, commit };
}

/**
 * Inside the executable, stands in for `__dirname` in the bundled libraries
 * that read .proto files next to their code (grpc-health-check, and
 * @grpc/reflection): the build rewrites their `__dirname` to a call of this.
 * Returns where `<package>/<subdir>` would be in the unpacked copy of their protos.
 */
export function bundledPackageDir(packageName: string, subdir: string): string {
  try {
    return join(unpackSet(embedded().vendorProtos, () => undefined).folder, packageName, subdir);
  } catch (error) {
    // This runs while the bundle loads, before the CLI can catch anything: say it the way the CLI would.
    if (!(error instanceof UnpackError)) throw error;
    process.stderr.write(`reprise: ${error.message}\n`);
    process.exit(1);
  }
}
