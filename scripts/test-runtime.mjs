// `npm run test:runtime -- --env <name>`: the runtime conformance suite for one environment.
// <name> is one of ours (node, python, go, php, ruby, dotnet: the full contract suite with that
// language's fixtures) or the path of a custom environment's directory holding fizz-runtime.json
// (the core suite with the fixtures it names; docs/runtime-contract.md, "Conformance suite").
// Exits with mocha's status: non-zero when any check fails.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./lib/prereqs.mjs";

const BUILT_IN = ["node", "python", "go", "php", "ruby", "dotnet"];
const USAGE =
  "usage: npm run test:runtime -- --env <name> [--grep <test name pattern>]\n" +
  `  <name>: ${BUILT_IN.join(", ")}, or the path of a custom environment's directory with fizz-runtime.json`;

/** @param {string} message */
function usage(message) {
  console.error(`fizz test:runtime: ${message}\n${USAGE}`);
  process.exit(2);
}

/** @param {string[]} argv @returns {{ name: string | undefined, grep: string[] }} */
function parseArguments(argv) {
  /** @type {string | undefined} */
  let name;
  /** @type {string[]} */
  const grep = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--env" || arg === "--grep") {
      const value = argv[++i];
      if (value === undefined) usage(`${arg} needs a value`);
      else if (arg === "--env") name = value;
      else grep.push("--grep", value);
    } else if (arg.startsWith("--env=")) name = arg.slice("--env=".length);
    else if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else usage(`unexpected argument "${arg}"`);
  }
  return { name, grep };
}

const { name, grep } = parseArguments(process.argv.slice(2));
if (!name) usage("--env is required");
else {
  let target = name;
  if (!BUILT_IN.includes(name)) {
    const dir = path.resolve(name);
    const isDir = existsSync(dir) && statSync(dir).isDirectory();
    if (!isDir || !existsSync(path.join(dir, "fizz-runtime.json"))) {
      usage(
        `--env "${name}" is neither one of ours nor a directory with fizz-runtime.json` +
          (isDir ? ` (${dir} has no fizz-runtime.json)` : ""),
      );
    }
    target = dir;
  }
  const mocha = spawnSync(
    "npx",
    [
      "mocha",
      "--node-option",
      "import=tsx",
      "--timeout",
      "120000",
      "--exit",
      "--reporter",
      "spec",
      ...grep,
      "runtimes/contract/test/conformance.spec.ts",
    ],
    { cwd: ROOT, stdio: "inherit", env: { ...process.env, FIZZ_CONFORMANCE_ENV: target } },
  );
  process.exit(mocha.status ?? 1);
}
