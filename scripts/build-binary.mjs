// `npm run build:binary`: the single executable dist/bin/reprise, for Linux x64.
//
// 1. esbuild bundles the built CLI (dist/server/cli.js) into one CommonJS
//    script, and better-sqlite3's JavaScript into another for the checkpoint
//    thread, which loads it from disk.
// 2. Node's single-executable support turns the script, with the assets (the
//    SQLite addon, the protos, the migrations, a manifest), into a blob.
// 3. postject injects the blob into a copy of the node that runs this script.
//    Its ELF rewriting has been seen to damage the dynamic symbol table of some
//    node builds, which native addons link against, so the build compares
//    `nm -D` before and after and fails on any difference.
//
// Everything comes from node_modules and this checkout: nothing is downloaded.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORK = join(ROOT, "dist/binary");
const OUTPUT = join(ROOT, "dist/bin/reprise");
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
const require = createRequire(join(ROOT, "package.json"));

/**
 * Bundled libraries that read .proto files next to their own code, at load
 * time or when a service is added. Their `__dirname` becomes a call that
 * unpacks the protos from the executable (server/runtime/runtime.ts:
 * bundledPackageDir). @grpc/grpc-js reads its own protos only for channelz
 * and ORCA load reports, when they are served or asked for, which the
 * coordinator and the CLI never do: never turn them on in the executable.
 */
const READS_PROTOS = [
  { name: "grpc-health-check", files: /grpc-health-check\/build\/src\/health\.js$/, protos: "proto/health" },
  { name: "@grpc/reflection", files: /@grpc\/reflection\/build\/src\/implementations\/reflection-v1(alpha)?\.js$/, protos: "build/proto/grpc/reflection" },
];

function fail(message) {
  console.error(`build-binary: ${message}`);
  process.exit(1);
}

function step(message) {
  console.error(`build-binary: ${message}`);
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const slash = (path) => path.split(sep).join("/");

function filesUnder(dir, suffix) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(suffix))
    .map((entry) => join(entry.parentPath ?? entry.path, entry.name))
    .sort();
}

function packageRoot(name) {
  return dirname(require.resolve(`${name}/package.json`));
}

function commit() {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

/** A set of files unpacked together into a cache folder named by the sha256 of the set (see server/runtime/unpack.ts). */
function packedSet(prefix, files, assets) {
  const entries = files.map(({ path, source }) => {
    const asset = `${prefix}/${path}`;
    assets[asset] = source;
    return { path, sha256: sha256(readFileSync(source)), asset };
  });
  const id = sha256(entries.map((e) => `${e.path}\0${e.sha256}\n`).join(""));
  return { id, files: entries };
}

function dynamicSymbols(file) {
  return execFileSync("nm", ["-D", file], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
}

/** The newest symbol version of `prefix` (GLIBC_, GLIBCXX_) that an ELF file asks for. */
function newestVersion(file, prefix) {
  const text = execFileSync("objdump", ["-T", file], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
  const versions = [...new Set(text.match(new RegExp(`${prefix}[0-9.]+`, "g")) ?? [])].map((v) => v.slice(prefix.length));
  const key = (v) => v.split(".").map(Number);
  versions.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
    return 0;
  });
  return versions.at(-1) ?? "none";
}

if (process.platform !== "linux" || process.arch !== "x64") fail(`the executable is built for Linux x64 only; this is ${process.platform} ${process.arch}`);
for (const built of ["dist/server/cli.js", "node_modules/better-sqlite3/build/Release/better_sqlite3.node"]) {
  try {
    statSync(join(ROOT, built));
  } catch {
    fail(`${built} is missing: run npm ci (or npm run build) first`);
  }
}
const nodeBinary = process.execPath;
if (!readFileSync(nodeBinary).includes(SEA_FUSE)) fail(`${nodeBinary} was built without single-executable support`);
if (/NEEDED.*libnode/.test(execFileSync("objdump", ["-p", nodeBinary], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }))) {
  fail(`${nodeBinary} links a shared libnode, which the executable would need beside it; build with a node that has it built in`);
}

rmSync(WORK, { recursive: true, force: true });
mkdirSync(WORK, { recursive: true });
mkdirSync(dirname(OUTPUT), { recursive: true });

step("bundling the CLI and better-sqlite3 with esbuild");
const runtimeModule = join(ROOT, "dist/server/runtime/runtime.js");
const rewritten = new Set();
const protoDirPlugin = {
  name: "unpacked-proto-dirs",
  setup(build) {
    for (const { name, files } of READS_PROTOS) {
      build.onLoad({ filter: files }, (args) => {
        rewritten.add(name);
        const subdir = slash(relative(packageRoot(name), dirname(args.path)));
        const source = readFileSync(args.path, "utf8");
        if (!source.includes("__dirname")) fail(`${args.path} no longer uses __dirname; check how it finds its protos`);
        const header = `var __reprisePackageDir = require(${JSON.stringify(runtimeModule)}).bundledPackageDir(${JSON.stringify(name)}, ${JSON.stringify(subdir)});\n`;
        return { contents: header + source.replaceAll("__dirname", "__reprisePackageDir"), loader: "js" };
      });
    }
  },
};
const common = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  legalComments: "eof",
  logLevel: "warning",
  // server/runtime/runtime.ts reads import.meta.url only under node, never inside the executable.
  logOverride: { "empty-import-meta": "silent" },
};
// pg loads pg-native only when asked for it, which Reprise never does.
await esbuild.build({ ...common, entryPoints: [join(ROOT, "dist/server/cli.js")], outfile: join(WORK, "reprise.cjs"), plugins: [protoDirPlugin], external: ["pg-native"] });
await esbuild.build({ ...common, entryPoints: [require.resolve("better-sqlite3")], outfile: join(WORK, "better-sqlite3.cjs") });
for (const { name } of READS_PROTOS) if (!rewritten.has(name)) fail(`no module of ${name} was rewritten to find its protos; check READS_PROTOS`);

step("collecting the assets");
const assets = {};
const protoRoot = join(ROOT, "proto");
const protos = filesUnder(join(protoRoot, "reprise/v1"), ".proto").map((file) => {
  const asset = `proto/${slash(relative(protoRoot, file))}`;
  assets[asset] = file;
  return asset;
});
const migrations = ["sqlite", "postgres"].flatMap((store) =>
  filesUnder(join(ROOT, `server/store/${store}/migrations`), ".sql").map((file) => {
    const asset = `migrations/${store}/${slash(relative(join(ROOT, `server/store/${store}/migrations`), file))}`;
    assets[asset] = file;
    return asset;
  }),
);
const sqlite = packedSet(
  "sqlite",
  [
    { path: "better_sqlite3.node", source: join(packageRoot("better-sqlite3"), "build/Release/better_sqlite3.node") },
    { path: "better-sqlite3.cjs", source: join(WORK, "better-sqlite3.cjs") },
  ],
  assets,
);
const vendorProtos = packedSet(
  "vendor-protos",
  READS_PROTOS.flatMap(({ name, protos }) =>
    filesUnder(join(packageRoot(name), protos), ".proto").map((source) => ({ path: `${name}/${slash(relative(packageRoot(name), source))}`, source })),
  ),
  assets,
);
const consoleFiles = ["index.html", "app.js", "styles.css"].map((name) => {
  const file = join(ROOT, "dist/console", name);
  if (!existsSync(file)) fail(`${file} is missing: npm run build writes it`);
  assets[`console/${name}`] = file;
  return `console/${name}`;
});
const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
const manifest = { version, commit: commit(), protos, console: consoleFiles, migrations, sqlite, vendorProtos };
writeFileSync(join(WORK, "manifest.json"), JSON.stringify(manifest, null, 2));
assets["manifest.json"] = join(WORK, "manifest.json");

step("building the single-executable blob");
const seaConfig = join(WORK, "sea-config.json");
writeFileSync(
  seaConfig,
  JSON.stringify(
    {
      // Relative, run from WORK: the name is what stack traces show.
      main: "reprise.cjs",
      output: "sea-prep.blob",
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      assets,
    },
    null,
    2,
  ),
);
execFileSync(nodeBinary, ["--experimental-sea-config", seaConfig], { cwd: WORK, stdio: ["ignore", "inherit", "inherit"] });

step(`injecting it into a copy of ${nodeBinary} (node ${process.versions.node})`);
rmSync(OUTPUT, { force: true });
copyFileSync(nodeBinary, OUTPUT);
chmodSync(OUTPUT, 0o755);
const symbolsBefore = dynamicSymbols(nodeBinary);
const { inject } = require("postject");
// postject's ELF library warns about every note section of node that it cannot
// name; they are harmless, and the nm -D comparison below is the check that counts.
const warn = console.warn;
console.warn = (...args) => {
  if (!/Can't find string offset for section name/.test(String(args[0]))) warn(...args);
};
try {
  await inject(OUTPUT, "NODE_SEA_BLOB", readFileSync(join(WORK, "sea-prep.blob")), { sentinelFuse: SEA_FUSE });
} finally {
  console.warn = warn;
}
const symbolsAfter = dynamicSymbols(OUTPUT);
if (symbolsAfter !== symbolsBefore) {
  const before = new Set(symbolsBefore.split("\n"));
  const after = new Set(symbolsAfter.split("\n"));
  const lost = [...before].filter((s) => !after.has(s));
  const gained = [...after].filter((s) => !before.has(s));
  rmSync(OUTPUT, { force: true });
  fail(
    `injection changed the dynamic symbol table (nm -D) of ${nodeBinary}: ${lost.length} symbols lost, ${gained.length} gained; ` +
      `native addons would fail to load. First lost: ${lost.slice(0, 5).join(" | ")}; first gained: ${gained.slice(0, 5).join(" | ")}`,
  );
}
step(`nm -D unchanged (${symbolsBefore.split("\n").length - 1} dynamic symbols)`);

const versionText = execFileSync(OUTPUT, ["--version"], { encoding: "utf8", env: { PATH: "/nonexistent", HOME: WORK, REPRISE_CACHE_DIR: join(WORK, "cache") } });
const addon = join(packageRoot("better-sqlite3"), "build/Release/better_sqlite3.node");
const glibc = [newestVersion(OUTPUT, "GLIBC_"), newestVersion(addon, "GLIBC_")];
const glibcxx = [newestVersion(OUTPUT, "GLIBCXX_"), newestVersion(addon, "GLIBCXX_")];
step(
  `wrote ${relative(ROOT, OUTPUT)}: ${(statSync(OUTPUT).size / 1048576).toFixed(1)} MiB; ` +
    `needs glibc ${glibc[0]} (node) / ${glibc[1]} (SQLite addon), libstdc++ GLIBCXX ${glibcxx[0]} / ${glibcxx[1]}\n` +
    versionText.replace(/^/gm, "  "),
);
