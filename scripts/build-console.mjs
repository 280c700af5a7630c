// Builds the console: type-checks console/src, bundles it with Preact into
// dist/console/app.js, and copies index.html and styles.css beside it. The
// coordinator serves dist/console (or, in the single executable, the same files
// embedded as assets) at / on its --http-listen port.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(ROOT, "dist/console");

execFileSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "console")], { stdio: "inherit" });
mkdirSync(OUT, { recursive: true });
await esbuild.build({
  entryPoints: [join(ROOT, "console/src/main.tsx")],
  outfile: join(OUT, "app.js"),
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "eof",
  logLevel: "warning",
});
for (const file of ["index.html", "styles.css"]) copyFileSync(join(ROOT, "console", file), join(OUT, file));
