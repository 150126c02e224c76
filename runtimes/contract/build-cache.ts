// Compiled runtimes' test builds (Go, C#): a package's files run through the language's build.sh
// as the builder runs it, with the outcome cached by content so reruns of the suite are instant.
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import type { Files } from "./archive.js";

export interface BuildOutcome {
  ok: boolean;
  /** build.sh's stdout and stderr. */
  log: string;
  /** What the build deployed (empty when it failed). */
  files: Files;
}

/** Where one build runs: the source to compile, the empty deployment dir, a private home. */
export interface BuildDirs {
  src: string;
  deploy: string;
  home: string;
}

export function readTree(dir: string, base = dir, out: Files = {}): Files {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) readTree(path, base, out);
    else out[relative(base, path)] = readFileSync(path);
  }
  return out;
}

function readCached(entry: string): BuildOutcome {
  const result = JSON.parse(readFileSync(join(entry, "result.json"), "utf8")) as {
    ok: boolean;
    log: string;
  };
  return { ...result, files: result.ok ? readTree(join(entry, "deploy")) : {} };
}

/**
 * Runs `build` over `files` in fresh directories, or answers what an earlier identical build gave.
 * The key hashes the files and `inputs` (build.sh, the runtime's prepare stamp: anything whose
 * change changes the output). Entries are staged inside `cacheDir` itself (a tmpfs /tmp could
 * not rename into it: EXDEV) and appear with one rename, never removed: a second process building
 * the same files at once loses the rename and reads the winner's, and no reader sees half a tree.
 */
export async function cachedBuild(opts: {
  cacheDir: string;
  inputs: Array<string | Buffer>;
  files: Files;
  build: (dirs: BuildDirs) => Promise<{ ok: boolean; log: string }>;
  /** false: always build (a fresh build's timing), and keep nothing. */
  cache?: boolean;
}): Promise<BuildOutcome> {
  const { cacheDir, files, cache = true } = opts;
  const hash = createHash("sha256");
  for (const input of opts.inputs) hash.update(input).update("\0");
  for (const name of Object.keys(files).sort())
    hash.update(`\0${name}\0`).update(files[name] ?? "");
  const entry = join(cacheDir, hash.digest("hex").slice(0, 32));
  if (cache && existsSync(join(entry, "result.json"))) return readCached(entry);
  mkdirSync(cacheDir, { recursive: true });
  const scratch = mkdtempSync(join(cacheDir, ".build-"));
  try {
    const dirs = {
      src: join(scratch, "src"),
      deploy: join(scratch, "deploy"),
      home: join(scratch, "home"),
    };
    for (const dir of Object.values(dirs)) mkdirSync(dir);
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(dirname(join(dirs.src, name)), { recursive: true });
      writeFileSync(join(dirs.src, name), content);
    }
    const result = await opts.build(dirs);
    if (!cache) return { ...result, files: result.ok ? readTree(dirs.deploy) : {} };
    const staged = join(scratch, "cached");
    mkdirSync(staged);
    writeFileSync(join(staged, "result.json"), JSON.stringify(result));
    if (result.ok) renameSync(dirs.deploy, join(staged, "deploy"));
    try {
      renameSync(staged, entry);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
    }
    return readCached(entry);
  } finally {
    // A build's helpers (Go's cache program, its telemetry) may still write as it exits after a
    // failure: retried, and a leftover scratch dir (.build-*, never a cache key) fails no test.
    try {
      rmSync(scratch, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    } catch {
      // left for the prepare scripts' pruning of old test builds
    }
  }
}
