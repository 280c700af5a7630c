import { defineConfig } from "vitest/config";

// Tests run against the TypeScript sources of @reprise/client, not its dist/
// build: the workspace package goes through vite (inline), and vite resolves
// it with the "source" export condition, in SSR mode too (how vitest runs).
/** The suites of the retry contract that run against both stores. */
const POSTGRES_SUITES = ["retries", "retry-control", "leases", "waiters", "cancel", "submit", "crash", "shutdown", "undelivered-lease", "workers", "metrics", "retention"];

export default defineConfig({
  resolve: {
    conditions: ["source"],
  },
  ssr: {
    resolve: {
      conditions: ["source"],
    },
  },
  test: {
    // Every suite runs on SQLite; the semantic suites run again on PostgreSQL.
    projects: [
      { extends: true, test: { name: "sqlite", include: ["test/**/*.test.ts"] } },
      {
        extends: true,
        test: {
          name: "postgres",
          include: POSTGRES_SUITES.map((suite) => `test/${suite}.test.ts`),
          env: { REPRISE_TEST_STORE: "postgres" },
        },
      },
    ],
    // One private PostgreSQL server for the run; tests take databases on it with testDatabase().
    globalSetup: ["test/postgres-global-setup.ts"],
    globals: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    server: {
      deps: {
        inline: [/@reprise\/(client|wire)/],
      },
    },
  },
});
