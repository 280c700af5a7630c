// One coordinator process owns one SQLite database. Two coordinators on one
// file would each decide retries and hand out the same work, so the second
// refuses to start, naming the file and the process that owns it.
//
// The claim is a write lock on a small companion database, FILE-lock, held for
// as long as the store is open. The operating system releases it when the
// process ends, however it ends, so a coordinator killed with SIGKILL leaves
// nothing to clean up. The owner's pid, host and start time are committed
// there before the lock is taken, and can be read while it is held.
import { hostname } from "node:os";
import Database from "better-sqlite3";
import { sqliteBinding } from "../../runtime/runtime.js";

export class DatabaseInUseError extends Error {}

interface Owner {
  pid: number;
  host: string;
  startedAt: string;
}

export const lockPathOf = (dbPath: string) => `${dbPath}-lock`;

export class Ownership {
  private constructor(private readonly db: Database.Database) {}

  /** Claims `dbPath` for this process, or throws DatabaseInUseError naming its owner. */
  static claim(dbPath: string): Ownership {
    const db = new Database(lockPathOf(dbPath), { nativeBinding: sqliteBinding() });
    try {
      db.pragma("busy_timeout = 0");
      claimOrThrow(db, dbPath, () => {
        db.exec("CREATE TABLE IF NOT EXISTS owner (pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL) STRICT");
        db.prepare("DELETE FROM owner").run();
        db.prepare("INSERT INTO owner (pid, host, started_at) VALUES (?, ?, ?)").run(process.pid, hostname(), new Date().toISOString());
      });
      // The owner is recorded; from here the open write transaction is the claim.
      claimOrThrow(db, dbPath, () => {}, false);
      return new Ownership(db);
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK");
      db.close();
      throw error;
    }
  }

  release(): void {
    if (this.db.inTransaction) this.db.exec("ROLLBACK");
    this.db.close();
  }
}

/** BEGIN IMMEDIATE takes the write lock, or fails at once while another process holds it. */
function claimOrThrow(db: Database.Database, dbPath: string, change: () => void, commit = true): void {
  try {
    db.exec("BEGIN IMMEDIATE");
  } catch (error) {
    if ((error as { code?: string }).code !== "SQLITE_BUSY") throw error;
    throw new DatabaseInUseError(`${dbPath} is in use by another coordinator${describeOwner(db)}; one process serves one database file`);
  }
  change();
  if (commit) db.exec("COMMIT");
}

function describeOwner(db: Database.Database): string {
  try {
    const owner = db.prepare("SELECT pid, host, started_at AS startedAt FROM owner").get() as Owner | undefined;
    return owner ? ` (pid ${owner.pid} on ${owner.host}, started ${owner.startedAt})` : "";
  } catch {
    return "";
  }
}
