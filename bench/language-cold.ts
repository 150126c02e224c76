// Cold starts from the warm pool, through the gateway, of the runtimes of issue 13: part of
// bench/run.ts (keys cold.go, cold.php, cold.ruby, cold.dotnet); alone:
// `node --import tsx bench/language-cold.ts [--lang php,ruby] [--merge]` (FIZZ_BENCH_QUICK=1: 10
// samples; `--merge` also writes the figures into bench/results/latest.json).
//
// Measured as cold.node is: each sample a function never invoked before, the warm pool refilled
// first, then one GET timed at the client. PHP and Ruby functions are single files (`spec.code`).
// Go and C# functions are packages the builder compiles (the registry refuses `code` for them):
// the hello world is built once, and each sample is a new function on that package, so a sample is
// what a user's first call costs (the deployment streamed into a warm instance, which loads it),
// never the build. The build's own time is reported beside (`build_s`).
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { packDirectory } from "@fizz/kit/archive";
import { waitFor } from "@fizz/testkit";
import { code, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { percentile, round } from "./lib/stats";

const QUICK = process.env.FIZZ_BENCH_QUICK === "1";
const SAMPLES = QUICK ? 10 : 50;
const NS = "default";
const ROOT = path.resolve(import.meta.dirname, "..");

export interface LanguageColdFigure {
  p50_ms: number;
  p99_ms: number;
  samples: number;
  errors: number;
  /** Compiled languages: seconds from the source upload to buildState=succeeded (one build). */
  build_s?: number;
  /** Why the figure is missing (NaN), when this language could not be measured. */
  error?: string;
}

export type LanguageColdFigures = Record<Language, LanguageColdFigure>;

export type Language = "go" | "php" | "ruby" | "dotnet";

interface LanguageBench {
  image: string;
  /** The source file: `spec.code` for an interpreted language, the package's one file otherwise. */
  file: string;
  source: string;
  entrypoint?: string;
  compiled: boolean;
  /** p50 target (ms) of issue 13. */
  target: number;
}

/** Each language's hello world, as its Fission users write it. */
const LANGUAGES: Record<Language, LanguageBench> = {
  go: {
    image: "fizz/env-go",
    file: "hello.go",
    source:
      'package main\n\nimport "net/http"\n\nfunc Handler(w http.ResponseWriter, r *http.Request) {\n\tw.Write([]byte("Hello, world!\\n"))\n}\n',
    entrypoint: "Handler",
    compiled: true,
    target: 30,
  },
  php: {
    image: "fizz/env-php",
    file: "hello.php",
    source: '<?php\n\necho "Hello, world!\\n";\n',
    compiled: false,
    target: 20,
  },
  ruby: {
    image: "fizz/env-ruby",
    file: "hello.rb",
    source: 'def handler\n  "Hello, world!\\n"\nend\n',
    compiled: false,
    target: 20,
  },
  dotnet: {
    image: "fizz/env-dotnet",
    file: "hello.cs",
    source:
      'using Fission.DotNetCore.Api;\n\npublic class FissionFunction\n{\n    public string Execute(FissionContext context)\n    {\n        return "Hello, world!\\n";\n    }\n}\n',
    compiled: true,
    target: 30,
  },
};

export const LANGUAGE_NAMES = Object.keys(LANGUAGES) as Language[];

async function warmPoolFull(p: BenchPlatform, env: string, size: number) {
  await waitFor(
    async () =>
      (await p.instances()).filter((i) => i.state === "warm" && i.environment.name === env)
        .length >= size,
    { timeoutMs: 60_000, intervalMs: 20, what: `warm pool of ${env}` },
  );
}

/**
 * Builds the hello world as a package once; returns the build's seconds (bench/cold-profile.ts
 * uses it for `--runtime go`).
 */
export async function buildPackage(p: BenchPlatform, lang: Language, env: string, pkg: string) {
  const l = LANGUAGES[lang];
  const work = await mkdtemp(path.join(tmpdir(), `fizz-bench-${lang}-`));
  try {
    const src = path.join(work, "src");
    await mkdir(src);
    await writeFile(path.join(src, l.file), l.source);
    await packDirectory(src, `${src}.tar.gz`);
    const t0 = performance.now();
    const source = await p.upload(NS, "source", `${src}.tar.gz`);
    await p.api("POST", `/v1/namespaces/${NS}/packages`, {
      name: pkg,
      spec: { environment: env, source },
    });
    for (;;) {
      const { status: st } = (await p.api("GET", `/v1/namespaces/${NS}/packages/${pkg}`)) as {
        status?: { buildState?: string; message?: string; buildLog?: string };
      };
      if (st?.buildState === "succeeded") return (performance.now() - t0) / 1000;
      if (st?.buildState === "failed")
        throw new Error(`build of ${pkg} failed: ${st.message}\n${st.buildLog?.slice(-2000)}`);
      if (performance.now() - t0 > 360_000) throw new Error(`build of ${pkg} not done in 360 s`);
      await sleep(50);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * One language's figure on its own environment (`bench-<lang>`, a pool of `pool`), which is
 * deleted afterwards with its functions, so the parts of the run that follow see the platform as
 * they did before these runtimes existed.
 */
async function measureOne(p: BenchPlatform, lang: Language, pool: number) {
  const l = LANGUAGES[lang];
  const env = `bench-${lang}`;
  const pkg = `cold-${lang}-hello`;
  const names: string[] = [];
  await p.api("POST", `/v1/namespaces/${NS}/environments`, {
    name: env,
    spec: { image: l.image, poolSize: pool },
  });
  try {
    await warmPoolFull(p, env, pool);
    const build_s = l.compiled ? round(await buildPackage(p, lang, env, pkg)) : undefined;
    console.log(
      `cold start from the warm pool (${lang}, ${SAMPLES} samples)${build_s !== undefined ? `, build ${build_s} s` : ""}…`,
    );
    const times: number[] = [];
    let errors = 0;
    for (let i = 0; i < SAMPLES; i++) {
      const name = `cold-${lang}-${i}`;
      await p.api("POST", `/v1/namespaces/${NS}/functions`, {
        name,
        spec: {
          environment: env,
          ...(l.compiled ? { package: { name: pkg } } : { code: code(l.file, l.source) }),
          ...(l.entrypoint !== undefined ? { entrypoint: l.entrypoint } : {}),
          idleTimeoutSeconds: 5,
        },
      });
      names.push(name);
      await warmPoolFull(p, env, pool);
      const t = performance.now();
      const res = await fetch(`${p.gatewayUrl}/function/${name}`);
      const body = await res.text();
      times.push(performance.now() - t);
      if (res.status !== 200 || !body.startsWith("Hello, world!")) {
        if (++errors <= 3)
          console.error(`${lang} sample ${i}: ${res.status} ${body.slice(0, 300)}`);
      }
    }
    return {
      p50_ms: round(percentile(times, 50)),
      p99_ms: round(percentile(times, 99)),
      samples: times.length,
      errors,
      ...(build_s !== undefined ? { build_s } : {}),
    };
  } finally {
    for (const name of names)
      await p.api("DELETE", `/v1/namespaces/${NS}/functions/${name}`).catch(() => undefined);
    if (l.compiled)
      await p.api("DELETE", `/v1/namespaces/${NS}/packages/${pkg}`).catch(() => undefined);
    await p.api("DELETE", `/v1/namespaces/${NS}/environments/${env}`).catch(() => undefined);
  }
}

/**
 * Every language's figure. A language that fails (its runtime missing on this machine, a build
 * that fails) gets NaN figures and the reason, and the run goes on: the other figures stand.
 */
export async function measureLanguageCold(
  p: BenchPlatform,
  pool: number,
  only: Language[] = LANGUAGE_NAMES,
): Promise<Partial<LanguageColdFigures>> {
  const out: Partial<LanguageColdFigures> = {};
  for (const lang of only) {
    try {
      out[lang] = await measureOne(p, lang, pool);
    } catch (err) {
      const error = (err instanceof Error ? err.message : String(err)).slice(0, 4000);
      console.error(`${lang}: cold start not measured: ${error}`);
      out[lang] = { p50_ms: NaN, p99_ms: NaN, samples: 0, errors: 0, error };
    }
  }
  return out;
}

/**
 * One `FAIL cold.<lang>: ...` line per language that was not measured or had failed requests;
 * `npm run bench` and this script print them and exit non-zero after writing their results.
 */
export function languageColdFailures(f: Partial<LanguageColdFigures>): string[] {
  return LANGUAGE_NAMES.flatMap((lang) => {
    const l = f[lang];
    if (!l) return [];
    if (l.error !== undefined)
      return [`FAIL cold.${lang}: not measured: ${l.error.split("\n")[0]?.slice(0, 200)}`];
    if (l.errors > 0) return [`FAIL cold.${lang}: ${l.errors} of its requests failed`];
    return [];
  });
}

export function languageColdRows(f: Partial<LanguageColdFigures>): [string, string, string][] {
  return LANGUAGE_NAMES.flatMap((lang): [string, string, string][] => {
    const l = f[lang];
    if (!l) return [];
    const what = `cold (warm pool) ${lang} p50 / p99 ms`;
    if (l.error !== undefined)
      return [[what, `not measured: ${l.error.split("\n")[0]?.slice(0, 100)}`, ""]];
    const extra = [
      l.errors ? `${l.errors} errors` : "",
      l.build_s !== undefined ? `build ${l.build_s} s` : "",
    ].filter(Boolean);
    return [
      [
        what,
        `${l.p50_ms} / ${l.p99_ms}${extra.length ? ` (${extra.join(", ")})` : ""}`,
        `p50 <= ${LANGUAGES[lang].target}`,
      ],
    ];
  });
}

async function standalone(only: Language[]): Promise<Partial<LanguageColdFigures>> {
  const POOL = 8;
  const p = await startBenchPlatform(path.join(ROOT, "bench/results/platform-language-cold.log"));
  try {
    return await measureLanguageCold(p, POOL, only);
  } finally {
    await p.stop();
  }
}

function merge(f: Partial<LanguageColdFigures>): void {
  const json = path.join(ROOT, "bench/results/latest.json");
  const latest = JSON.parse(readFileSync(json, "utf8")) as { cold: Record<string, unknown> };
  Object.assign(latest.cold, f);
  writeFileSync(json, JSON.stringify(latest, null, 2) + "\n");
}

function languagesArg(): Language[] {
  const at = process.argv.indexOf("--lang");
  if (at < 0) return LANGUAGE_NAMES;
  const asked = (process.argv[at + 1] ?? "").split(",").filter(Boolean);
  const unknown = asked.filter((l) => !(LANGUAGE_NAMES as string[]).includes(l));
  if (!asked.length || unknown.length)
    throw new Error(`--lang: one or more of ${LANGUAGE_NAMES.join(", ")} (got ${asked.join(",")})`);
  return asked as Language[];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  Promise.resolve()
    .then(() => standalone(languagesArg()))
    .then(
      (f) => {
        console.log(JSON.stringify(f, null, 2));
        console.log(
          languageColdRows(f)
            .map((r) => `${r[0]}  ${r[1]}  ${r[2]}`)
            .join("\n"),
        );
        if (process.argv.includes("--merge")) merge(f);
        const failures = languageColdFailures(f);
        for (const line of failures) console.error(line);
        process.exit(failures.length > 0 ? 1 : 0);
      },
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
}
