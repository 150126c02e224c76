// Builds the Go runtime's local artifacts into runtimes/go/.build/ (gitignored), idempotently:
// - fizz-go-warm: the warm instance (the runtime's files with -tags fizzwarm, no user code);
// - fizz-go-scan and fizz-go-cacheprog: the tools build.sh runs (handler scanner, build cache);
// - gocache-seed/: a read-only build cache of the standard library packages functions use and of
//   the runtime itself, so a function's build does not spend ~30 s compiling net/http.
// Keyed by a hash of the sources and the Go version: a rerun with nothing changed is instant.
// Usage: `node runtimes/go/prepare.mjs`, or `import { prepare }` → { ok, reason?, warm, ... }.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  cpSync,
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
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const OUT = join(HERE, ".build");
const RUNTIMES = dirname(HERE);

// What functions commonly import, compiled into the seed beyond what hello needs.
// build.sh's settings that decide whether a cached package matches (see its go build line).
const SEED_SETTINGS = "CGO_ENABLED=0 GOTOOLCHAIN=local -trimpath -ldflags=-s -w";

const SEED_PACKAGES = [
  "net/http",
  "encoding/json",
  "encoding/xml",
  "encoding/csv",
  "encoding/base64",
  "encoding/hex",
  "html/template",
  "text/template",
  "log",
  "log/slog",
  "math/rand/v2",
  "regexp",
  "crypto/sha256",
  "crypto/hmac",
  "crypto/rand",
  "net/url",
  "mime/multipart",
  "os/exec",
  "time",
  "sort",
  "slices",
  "maps",
];

export function findGo() {
  const candidates = [process.env.FIZZ_GO, "/usr/local/go/bin/go", "go"].filter(Boolean);
  for (const go of candidates) {
    const res = spawnSync(go, ["env", "GOVERSION", "GOROOT"], { encoding: "utf8" });
    if (res.status === 0) {
      const [version = "", goroot = ""] = res.stdout.trim().split("\n");
      return { go, version, goroot };
    }
  }
  return undefined;
}

function sourceHash(version) {
  const hash = createHash("sha256").update(version);
  const files = [
    "prepare.mjs",
    "build.sh",
    ...readdirSync(join(HERE, "runtime")).map((f) => join("runtime", f)),
    "tools/scan/main.go",
    "tools/cacheprog/main.go",
  ];
  for (const file of files.sort()) {
    hash.update(file).update(readFileSync(join(HERE, file)));
  }
  return hash.digest("hex");
}

/** Everyone may read and traverse: instances and builds run as other uids. */
function openUp(path) {
  const st = statSync(path);
  if (st.isDirectory()) {
    chmodSync(path, 0o755);
    for (const entry of readdirSync(path)) openUp(join(path, entry));
  } else {
    chmodSync(path, st.mode & 0o100 ? 0o755 : 0o644);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error && typeof error === "object" && "code" in error && error.code === "EPERM";
  }
}

/** One prepare at a time across processes (npm start, test set-ups, CI): a second one waits,
 * then finds the stamp current. A lock left by a dead process is taken over. */
async function withLock(fn) {
  const lock = join(HERE, ".build.lock");
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, "pid"), String(process.pid));
      break;
    } catch {
      let owner = 0;
      try {
        owner = Number(readFileSync(join(lock, "pid"), "utf8"));
      } catch {
        // being created or removed right now
      }
      if (owner > 0 && !alive(owner)) rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`${lock}: held too long by pid ${owner}`);
      else await sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export async function prepare({ log = (line) => console.log(line) } = {}) {
  return withLock(() => prepareLocked(log));
}

async function prepareLocked(log) {
  const found = findGo();
  const paths = {
    warm: join(OUT, "fizz-go-warm"),
    scan: join(OUT, "fizz-go-scan"),
    cacheprog: join(OUT, "fizz-go-cacheprog"),
    seed: join(OUT, "gocache-seed"),
  };
  if (!found) {
    return { ok: false, reason: "no Go toolchain (go on PATH or /usr/local/go/bin/go)", ...paths };
  }
  const { go, version } = found;
  const key = sourceHash(version);
  const stamp = join(OUT, "stamp");
  // The seed depends only on the Go release and the build settings, not on the runtime's
  // sources: it is rebuilt (minutes) only when those change.
  const seedKey = createHash("sha256")
    .update(`${version}\n${SEED_PACKAGES.join(" ")}\n${SEED_SETTINGS}`)
    .digest("hex");
  const seedStamp = join(paths.seed, ".fizz-seed-key");
  const current = (file, value) => existsSync(file) && readFileSync(file, "utf8") === value;
  const binaries = [paths.warm, paths.scan, paths.cacheprog];
  if (current(stamp, key) && current(seedStamp, seedKey) && binaries.every((p) => existsSync(p))) {
    return { ok: true, ...paths };
  }
  const started = Date.now();
  mkdirSync(OUT, { recursive: true });
  const env = { ...process.env, CGO_ENABLED: "0", GOTOOLCHAIN: "local", GOFLAGS: "-modcacherw" };
  const run = (args, cwd, extra = {}) =>
    execFileSync(go, args, { cwd, env: { ...env, ...extra }, stdio: ["ignore", "pipe", "pipe"] });
  try {
    log(`go runtime: building with ${version}`);
    rmSync(stamp, { force: true });
    run(["build", "-trimpath", "-o", paths.scan, "./tools/scan/main.go"], HERE);
    run(["build", "-trimpath", "-o", paths.cacheprog, "./tools/cacheprog/main.go"], HERE);
    run(
      ["build", "-tags", "fizzwarm", "-trimpath", "-ldflags=-s -w", "-o", paths.warm, "."],
      join(HERE, "runtime"),
    );
    if (!current(seedStamp, seedKey)) {
      log("go runtime: compiling the build-cache seed (the standard library; a few minutes)");
      buildSeed(paths, env, go, run);
      writeFileSync(seedStamp, seedKey);
    }
    // Test builds are keyed by the stamp too: the old ones can never be used again.
    rmSync(join(OUT, "test-cache"), { recursive: true, force: true });
    openUp(OUT);
    writeFileSync(stamp, key);
    log(`go runtime: built in ${Math.round((Date.now() - started) / 1000)}s`);
    return { ok: true, ...paths };
  } catch (error) {
    const stderr =
      error && typeof error === "object" && "stderr" in error ? String(error.stderr) : "";
    return { ok: false, reason: `go build failed: ${String(error)} ${stderr}`.trim(), ...paths };
  }
}

/** The seed: hello built through build.sh itself (so its settings match every later build), then
 * the common packages, all through the cache tool into a fresh directory, then moved in place. */
function buildSeed(paths, env, go, run) {
  const scratch = mkdtempSync(join(tmpdir(), "fizz-go-seed-"));
  try {
    const src = join(scratch, "src");
    const deploy = join(scratch, "deploy");
    mkdirSync(src);
    mkdirSync(deploy);
    writeFileSync(
      join(src, "hello.go"),
      'package main\n\nimport "net/http"\n\nfunc Handler(w http.ResponseWriter, r *http.Request) {\n\tw.Write([]byte("Hello, world!\\n"))\n}\n',
    );
    const buildEnv = {
      ...env,
      SRC_PKG: src,
      DEPLOY_PKG: deploy,
      FIZZ_RUNTIMES_DIR: RUNTIMES,
      HOME: scratch,
      TMPDIR: scratch,
      PATH: `${dirname(go)}:${process.env.PATH ?? ""}`,
    };
    // build.sh writes its cache to $TMPDIR/fizz-gocache; with no seed yet, that is the seed.
    rmSync(paths.seed, { recursive: true, force: true });
    execFileSync("sh", [join(HERE, "build.sh")], { cwd: src, env: buildEnv, stdio: "pipe" });
    const cacheEnv = {
      GOCACHEPROG: paths.cacheprog,
      FIZZ_GOCACHE_DIR: join(scratch, "fizz-gocache"),
      HOME: scratch,
    };
    run(["build", "-trimpath", ...SEED_PACKAGES], src, cacheEnv);
    // Copied next to its final place, then renamed: a build never sees half a seed.
    const staged = `${paths.seed}.tmp`;
    rmSync(staged, { recursive: true, force: true });
    cpSync(join(scratch, "fizz-gocache"), staged, { recursive: true });
    renameSync(staged, paths.seed);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const result = await prepare();
  if (!result.ok) {
    console.error(`go runtime unavailable: ${result.reason}`);
    process.exit(1);
  }
  console.log(`go runtime ready: ${result.warm}`);
}
