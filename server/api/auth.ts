// Bearer-token auth with roles. Tokens come from the file given to
// `reprise serve --auth-tokens`: one `ROLE TOKEN` pair per line, `#` comments.
//   worker  WorkerService
//   caller  all of ExecutionService (Submit, SubmitBatch, Get, List, Watch, Cancel, Rerun, ListWorkers, ListTasks)
//   admin   everything
// Health and reflection stay open. Tokens are compared in constant time (as
// SHA-256 digests, against every known token) and never logged.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { status } from "@grpc/grpc-js";
import type { Metadata } from "@grpc/grpc-js";
import { ExecutionService, StatusError, WorkerService } from "@reprise/wire";

export const ROLES = ["worker", "caller", "admin"] as const;
export type Role = (typeof ROLES)[number];

const SERVICE_OF_ROLE: Record<Role, string | null> = {
  worker: WorkerService.typeName,
  caller: ExecutionService.typeName,
  admin: null,
};

export class AuthFileError extends Error {}

const digest = (token: string) => createHash("sha256").update(token, "utf8").digest();

export class Authorizer {
  private readonly entries: { digest: Buffer; role: Role }[];

  constructor(tokens: { token: string; role: Role }[]) {
    this.entries = tokens.map(({ token, role }) => ({ digest: digest(token), role }));
  }

  static fromFile(path: string): Authorizer {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      throw new AuthFileError(`--auth-tokens: cannot read ${path}: ${(error as Error).message}`);
    }
    const tokens: { token: string; role: Role }[] = [];
    text.split("\n").forEach((raw, i) => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return;
      const [role, token, ...rest] = line.split(/\s+/);
      if (!ROLES.includes(role as Role) || !token || rest.length > 0) {
        throw new AuthFileError(`--auth-tokens: ${path} line ${i + 1}: expected "ROLE TOKEN" with ROLE one of ${ROLES.join(", ")}`);
      }
      if (token.length < 16) throw new AuthFileError(`--auth-tokens: ${path} line ${i + 1}: tokens must be at least 16 characters`);
      tokens.push({ token, role: role as Role });
    });
    if (tokens.length === 0) throw new AuthFileError(`--auth-tokens: ${path} has no tokens`);
    return new Authorizer(tokens);
  }

  private roleOf(token: string): Role | null {
    const presented = digest(token);
    let found: Role | null = null;
    // No early exit: the time taken does not depend on which token matched.
    for (const entry of this.entries) if (timingSafeEqual(entry.digest, presented)) found ??= entry.role;
    return found;
  }

  /** Throws UNAUTHENTICATED or PERMISSION_DENIED unless the call's bearer token allows `service`. */
  check(service: string, method: string, metadata: Metadata): void {
    const header = metadata.get("authorization")[0];
    const match = typeof header === "string" ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match) throw new StatusError(status.UNAUTHENTICATED, "authorization: a bearer token is required");
    const role = this.roleOf(match[1]!);
    if (role === null) throw new StatusError(status.UNAUTHENTICATED, "authorization: unknown token");
    const allowed = SERVICE_OF_ROLE[role];
    if (allowed !== null && allowed !== service) {
      throw new StatusError(status.PERMISSION_DENIED, `authorization: the ${role} role may not call ${service}/${method}`);
    }
  }
}
