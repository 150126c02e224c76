// `node scripts/build-console.mjs [outDir]`: the web console into console/dist (or outDir).
import { buildConsole } from "./lib/console-build.mjs";

console.log(await buildConsole(process.argv[2]));
