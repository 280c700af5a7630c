// Where the executable puts what cannot be used from inside it: the SQLite
// addon must be a file for the dynamic loader, and the protos that gRPC
// libraries read with fs must be files too. Each set of files goes to a folder
// named by its sha256, so a new build never reuses an old build's files and two
// builds can share a cache folder.
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";

export interface CacheCandidate {
  path: string;
  /** In a folder others can write to (the temporary folder): only used when it is ours alone. */
  shared: boolean;
}

/** The cache folders to try, in order: REPRISE_CACHE_DIR, $XDG_CACHE_HOME/reprise, ~/.cache/reprise, $TMPDIR/reprise-<uid>. */
export function cacheCandidates(env: NodeJS.ProcessEnv, home: string | undefined, uid: number): CacheCandidate[] {
  const candidates: CacheCandidate[] = [];
  if (env.REPRISE_CACHE_DIR) candidates.push({ path: resolve(env.REPRISE_CACHE_DIR), shared: false });
  // The XDG base directory rules ignore a relative path.
  if (env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME)) candidates.push({ path: join(env.XDG_CACHE_HOME, "reprise"), shared: false });
  if (home && isAbsolute(home)) candidates.push({ path: join(home, ".cache", "reprise"), shared: false });
  candidates.push({ path: join(env.TMPDIR && isAbsolute(env.TMPDIR) ? env.TMPDIR : "/tmp", `reprise-${uid}`), shared: true });
  return candidates;
}

/** No cache folder could take the files: the message lists each folder tried and why it failed. */
export class UnpackError extends Error {}

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code;

/**
 * Creates `dir` and any missing parents, one level at a time. Not
 * mkdirSync's `recursive`: on Node 20 that loops forever on some paths under
 * /proc, and a HOME there would hang the process instead of falling back.
 */
export function makeDirectory(dir: string, mode = 0o777): void {
  const missing: string[] = [];
  for (let current = resolve(dir); ; current = dirname(current)) {
    try {
      if (!statSync(current).isDirectory()) throw new Error(`${current} is not a folder`);
      break;
    } catch (error) {
      if (errorCode(error) !== "ENOENT" || dirname(current) === current) throw error;
      missing.push(current);
    }
  }
  for (const folder of missing.reverse()) {
    try {
      mkdirSync(folder, { mode });
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
    }
  }
}

/** A folder in /tmp that another user made, or can write to, could hand us a planted addon. */
function checkOwnership(dir: string, uid: number): void {
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) throw new Error(`${dir} is not a folder`);
  if (stat.uid !== uid) throw new Error(`${dir} belongs to another user`);
  if ((stat.mode & 0o022) !== 0) throw new Error(`${dir} can be written by other users`);
}

export interface PackedFile {
  /** Relative path inside the unpacked folder; "/" separated. */
  path: string;
  sha256: string;
  bytes(): Uint8Array;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function hasContent(file: string, expected: string): boolean {
  try {
    return sha256(readFileSync(file)) === expected;
  } catch {
    return false;
  }
}

/**
 * Writes `files` under `<candidate>/<id>/` in the first candidate where that
 * works and `accept` (given the folder) does not throw, and returns that
 * folder. A file already there with the right content is kept; any other is
 * replaced by writing a temporary file and renaming it, so a process starting
 * at the same moment never sees half a file.
 */
export function unpack<T>(
  id: string,
  files: readonly PackedFile[],
  candidates: readonly CacheCandidate[],
  uid: number,
  accept: (folder: string) => T,
): { folder: string; value: T } {
  const failures: string[] = [];
  for (const candidate of candidates) {
    try {
      makeDirectory(candidate.path, 0o700);
      if (candidate.shared) checkOwnership(candidate.path, uid);
      const folder = join(candidate.path, id);
      for (const file of files) {
        const target = join(folder, ...file.path.split("/"));
        if (hasContent(target, file.sha256)) continue;
        makeDirectory(dirname(target), 0o700);
        const temporary = join(dirname(target), `.${process.pid}-${randomBytes(6).toString("hex")}.tmp`);
        try {
          writeFileSync(temporary, file.bytes(), { mode: 0o600, flag: "wx" });
          renameSync(temporary, target);
        } catch (error) {
          try {
            unlinkSync(temporary);
          } catch {
            // It was never written.
          }
          throw error;
        }
      }
      return { folder, value: accept(folder) };
    } catch (error) {
      failures.push(`${candidate.path}: ${(error as Error).message}`);
    }
  }
  throw new UnpackError(`no usable cache folder to unpack into (set REPRISE_CACHE_DIR to a writable folder); tried ${failures.join("; ")}`);
}
