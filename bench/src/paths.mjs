// Where the Reprise under test lives. bench/run.sh copies the built coordinator
// and client into its temporary directory and points BENCH_REPRISE_ROOT there,
// so that a rebuild in the working tree during a run (other engineers share
// it) cannot change or break the code being measured halfway.
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** bench/, where the reports are written. */
export const benchDir = fileURLToPath(new URL("../", import.meta.url));
export const repriseRoot = process.env.BENCH_REPRISE_ROOT ?? fileURLToPath(new URL("../../", import.meta.url));
export const coordinatorCli = join(repriseRoot, "dist/server/cli.js");
export const clientModule = pathToFileURL(join(repriseRoot, "clients/ts/dist/index.js")).href;
