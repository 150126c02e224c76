import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { readPrereqs, runProbe } from "../../../scripts/lib/runtimes.mjs";

/**
 * One row per language for the per-language suites (test/e2e/languages.e2e.test.ts and
 * test/k8s/languages.k8s.test.ts). The function sources are real files next to this one:
 * `<lang>/<case>/`, one directory per behaviour, so a compiled language deploys each directory
 * with `--src` and an interpreted one deploys its single file with `--code`.
 */
export const FIXTURES = import.meta.dirname;
const ROOT = path.resolve(FIXTURES, "../../..");

export type Behaviour = "hello" | "echo" | "error" | "timeout" | "multi";

export interface LanguageCase {
  /** Name of the environment the suites create, and of the fixture directory. */
  lang: string;
  image: string;
  /** Kubernetes builder image (compiled languages: the builder compiles every deployment). */
  builder?: string;
  /** Compiled: every deployment is a package the builder compiles (the registry refuses `code`). */
  compiled: boolean;
  /** Single-file entry of each behaviour's directory (`--code`), relative to `<lang>/<case>/`. */
  files: Record<Exclude<Behaviour, "multi">, string>;
  /** `--entrypoint` for every behaviour, when the language's default does not find it. */
  entrypoint?: string;
  /** `--entrypoint` of the multi-file package, when it differs from `entrypoint`. */
  multiEntrypoint?: string;
  /**
   * Whether a thrown error's message names the user's file and line. Required of the runtimes
   * of issue 13; the Node and Python runtimes answer the error's own message (their file:line
   * appears only in FUNCTION_LOAD_FAILED, per docs/runtime-contract.md).
   */
  errorNamesLine: boolean;
  /** Why this language cannot run here (a missing interpreter, a runtime not yet built), or undefined. */
  unavailable(): Promise<string | undefined>;
}

/**
 * A runtime of issue 13: its directory must exist, the set-up's probe pass (runtimes/<lang>/
 * prereqs.json run as the poolkeeper runs the interpreter: FIZZ_RUBY & co., /usr/bin when root),
 * and its `prepare.mjs` (when it has one: Go's warm binary, C#'s host exe) succeed; the same
 * checks `npm start` makes, so a row is skipped with the poolkeeper's reason, not a pool timeout.
 */
function newRuntime(lang: string): () => Promise<string | undefined> {
  return async () => {
    const dir = path.join(ROOT, "runtimes", lang);
    if (!existsSync(dir)) return `runtimes/${lang}/ is not in this tree`;
    const prereqs = readPrereqs(lang);
    const probed = runProbe(prereqs.probe);
    if (!probed.ok) return `${probed.why ?? "probe failed"}; needs ${prereqs.needs}`;
    const prepareFile = path.join(dir, "prepare.mjs");
    if (!existsSync(prepareFile)) return undefined;
    const mod = (await import(pathToFileURL(prepareFile).href)) as {
      prepare(opts: { log(line: string): void }): Promise<{ ok: boolean; reason?: string }>;
    };
    const lines: string[] = [];
    const r = await mod.prepare({ log: (l) => lines.push(l) });
    return r.ok ? undefined : `runtimes/${lang}/prepare.mjs: ${r.reason ?? lines.join("\n")}`;
  };
}

export const LANGUAGES: LanguageCase[] = [
  {
    lang: "node",
    image: "fizz/env-node",
    compiled: false,
    files: { hello: "hello.js", echo: "echo.js", error: "error.js", timeout: "timeout.js" },
    errorNamesLine: false,
    unavailable: () => Promise.resolve(undefined),
  },
  {
    lang: "python",
    image: "fizz/env-python",
    compiled: false,
    files: { hello: "hello.py", echo: "echo.py", error: "error.py", timeout: "timeout.py" },
    errorNamesLine: false,
    unavailable: () =>
      Promise.resolve(existsSync("/usr/bin/python3") ? undefined : "no /usr/bin/python3"),
  },
  {
    lang: "go",
    image: "fizz/env-go",
    builder: "fizz/builder-go",
    compiled: true,
    files: { hello: "hello.go", echo: "echo.go", error: "error.go", timeout: "timeout.go" },
    // As Fission's Go environment requires: the exported http.HandlerFunc by name.
    entrypoint: "Handler",
    errorNamesLine: true,
    unavailable: newRuntime("go"),
  },
  {
    lang: "php",
    image: "fizz/env-php",
    compiled: false,
    files: { hello: "hello.php", echo: "echo.php", error: "error.php", timeout: "timeout.php" },
    errorNamesLine: true,
    unavailable: newRuntime("php"),
  },
  {
    lang: "ruby",
    image: "fizz/env-ruby",
    compiled: false,
    files: { hello: "hello.rb", echo: "echo.rb", error: "error.rb", timeout: "timeout.rb" },
    multiEntrypoint: "main.handler",
    errorNamesLine: true,
    unavailable: newRuntime("ruby"),
  },
  {
    lang: "dotnet",
    image: "fizz/env-dotnet",
    builder: "fizz/builder-dotnet",
    compiled: true,
    files: { hello: "hello.cs", echo: "echo.cs", error: "error.cs", timeout: "timeout.cs" },
    errorNamesLine: true,
    unavailable: newRuntime("dotnet"),
  },
];

/**
 * The rows to run: all of them, or those FIZZ_LANGUAGES names (`FIZZ_LANGUAGES=go,php`), for a
 * developer working on one runtime. A name that is not a row is an error, not an empty run.
 */
export function selectedLanguages(): LanguageCase[] {
  const only = process.env.FIZZ_LANGUAGES?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (!only?.length) return LANGUAGES;
  const unknown = only.filter((l) => !LANGUAGES.some((c) => c.lang === l));
  if (unknown.length) throw new Error(`FIZZ_LANGUAGES: no such language: ${unknown.join(", ")}`);
  return LANGUAGES.filter((c) => only.includes(c.lang));
}

/** The fixture directory of one behaviour. */
export function caseDir(c: LanguageCase, b: Behaviour): string {
  return path.join(FIXTURES, c.lang, b);
}

/** 1-based line of the `FIZZ-E2E-THROW` marker in the error fixture: where it throws. */
export function throwLine(c: LanguageCase): number {
  const text = readFileSync(path.join(caseDir(c, "error"), c.files.error), "utf8");
  const at = text.split("\n").findIndex((l) => l.includes("FIZZ-E2E-THROW"));
  if (at < 0) throw new Error(`${c.lang}/error/${c.files.error} has no FIZZ-E2E-THROW marker`);
  return at + 1;
}
