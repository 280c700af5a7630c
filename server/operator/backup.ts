// `reprise backup`: an online, consistent copy of a database while the
// coordinator serves it, through SQLite's backup API.
import Database from "better-sqlite3";
import { existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { ConfigError } from "./config.js";
import { sqliteBinding } from "../runtime/runtime.js";

export interface BackupResult {
  pages: number;
  bytes: number;
  ms: number;
}

/** Throws ConfigError, naming the argument, for a backup that cannot start. */
export function checkBackupPaths(source: string, destination: string): void {
  if (!existsSync(source)) throw new ConfigError(`--db: ${source} does not exist`);
  if (existsSync(destination)) throw new ConfigError(`backup: ${destination} already exists; choose a new file`);
  if (!existsSync(dirname(destination))) throw new ConfigError(`backup: the folder ${dirname(destination)} does not exist`);
}

export const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;

/** The database file's size with its write-ahead log, which the copy includes. */
export function databaseBytes(source: string): number {
  return [source, `${source}-wal`].reduce((sum, path) => sum + (existsSync(path) ? statSync(path).size : 0), 0);
}

export async function backupDatabase(source: string, destination: string, onStep: (step: string) => void = () => {}): Promise<BackupResult> {
  checkBackupPaths(source, destination);
  const started = Date.now();
  const db = new Database(source, { readonly: true, fileMustExist: true, nativeBinding: sqliteBinding() });
  try {
    try {
      db.pragma("busy_timeout = 5000");
      db.pragma("schema_version");
    } catch (error) {
      if ((error as { code?: unknown }).code === "SQLITE_NOTADB") throw new ConfigError(`--db: ${source} is not a SQLite database`);
      throw error;
    }
    // Copy every page in one step: a step holds a read snapshot, and in WAL
    // mode readers do not block the coordinator's writes. Smaller steps would
    // restart whenever the coordinator commits, and might never finish.
    const pageSize = db.pragma("page_size", { simple: true }) as number;
    const { totalPages } = await db.backup(destination, { progress: ({ remainingPages }) => Math.max(remainingPages, 1) });
    // Read-write, so that closing it removes the -wal and -shm files that
    // opening a WAL database makes: the copy is one file.
    const copy = new Database(destination, { nativeBinding: sqliteBinding() });
    onStep(`copied ${totalPages} pages (${mib(totalPages * pageSize)}) in ${Date.now() - started} ms; checking the copy's integrity`);
    try {
      const check = copy.pragma("integrity_check", { simple: true });
      if (check !== "ok") throw new Error(`the copy failed its integrity check: ${String(check)}`);
    } finally {
      copy.close();
    }
    return { pages: totalPages, bytes: totalPages * pageSize, ms: Date.now() - started };
  } finally {
    db.close();
  }
}
