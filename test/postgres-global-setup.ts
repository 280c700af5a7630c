// vitest globalSetup: one private PostgreSQL server for the whole run, when
// PostgreSQL is installed (or installable), unless REPRISE_TEST_POSTGRES=off.
// Test files get fresh databases on it with testDatabase() from ./postgres-server.js.
import type { TestProject } from "vitest/node";
import { postgresAvailable, startPostgres } from "./postgres-server.js";

export default async function setup({ provide }: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.env.REPRISE_TEST_POSTGRES === "off" || !postgresAvailable()) return undefined;
  const server = await startPostgres();
  provide("postgresUrl", server.url());
  return () => server.close();
}
