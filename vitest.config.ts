import { defineConfig } from "vitest/config";

// Tests run against the TypeScript sources of @reprise/client, not its dist/
// build: the workspace package goes through vite (inline), and vite resolves
// it with the "source" export condition, in SSR mode too (how vitest runs).
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
    include: ["test/**/*.test.ts"],
    globals: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    server: {
      deps: {
        inline: [/@reprise\/client/],
      },
    },
  },
});
