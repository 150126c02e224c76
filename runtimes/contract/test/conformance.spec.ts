// The entry of `npm run test:runtime -- --env <name>` (scripts/test-runtime.mjs), which passes the
// environment in FIZZ_CONFORMANCE_ENV: one of our six runs the full contract suite with its own
// fixtures (runtimes/<name>/test/fixtures.ts, after runtimes/<name>/prepare.mjs when it has one);
// a directory with fizz-runtime.json (a custom environment) runs the core suite. Not an
// *.int.test.ts file: the integration stage runs each language's own test file instead.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { loadCustomEnv } from "../custom-env.js";
import {
  type RuntimeUnderTest,
  describeCoreContract,
  describeRuntimeContract,
} from "../runtime-contract.js";

export const BUILT_IN = ["node", "python", "go", "php", "ruby", "dotnet"];
const RUNTIMES = fileURLToPath(new URL("../../", import.meta.url));

function isRuntime(value: unknown, name: string): value is RuntimeUnderTest {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as Partial<RuntimeUnderTest>;
  return (
    candidate.name === name &&
    typeof candidate.start === "function" &&
    typeof candidate.fixtures === "object"
  );
}

async function builtIn(name: string): Promise<RuntimeUnderTest> {
  const prepareFile = path.join(RUNTIMES, name, "prepare.mjs");
  if (existsSync(prepareFile)) {
    const { prepare } = (await import(pathToFileURL(prepareFile).href)) as {
      prepare: (options: {
        log: (line: string) => void;
      }) => Promise<{ ok: boolean; reason?: string }>;
    };
    const result = await prepare({ log: (line) => console.error(line) });
    if (!result.ok)
      throw new Error(`${name} environment unavailable: ${result.reason ?? "prepare failed"}`);
  }
  const fixtures = path.join(RUNTIMES, name, "test", "fixtures.ts");
  const module = (await import(pathToFileURL(fixtures).href)) as Record<string, unknown>;
  const runtime = Object.values(module).find((value) => isRuntime(value, name));
  if (!runtime) throw new Error(`${fixtures} exports no RuntimeUnderTest named "${name}"`);
  return runtime;
}

const target = process.env.FIZZ_CONFORMANCE_ENV;
if (!target) {
  throw new Error("FIZZ_CONFORMANCE_ENV is not set; run `npm run test:runtime -- --env <name>`");
}
if (BUILT_IN.includes(target)) describeRuntimeContract(await builtIn(target));
else describeCoreContract(loadCustomEnv(target));
