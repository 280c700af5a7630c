import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // Resolve @reprise/client to its TypeScript sources, not its build output.
    conditions: ["source"],
  },
  test: {
    include: ["test/**/*.test.ts"],
    globals: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
  },
});
