// Builds the Go runtime's local artifacts into runtimes/go/.build/ (gitignored), idempotently:
// - fizz-go-warm: the warm instance (the runtime's files with -tags fizzwarm, no user code);
// - fizz-go-scan and fizz-go-cacheprog: the tools build.sh runs (handler scanner, build cache);
// - gocache-seed/: a read-only build cache of the standard library packages functions use and of
//   the runtime itself, so a function's build does not spend ~30 s compiling net/http.
// Keyed by a hash of the sources and the Go version: a rerun with nothing changed is instant.
// Usage: `node runtimes/go/prepare.mjs`, or `import { prepare }` → { ok, reason?, warm, ... }.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
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
  const st = lstatSync(path);
  if (st.isSymbolicLink()) return; // the seed link: its target is opened up on its own
  try {
    chmodSync(path, st.isDirectory() || st.mode & 0o100 ? 0o755 : 0o644);
  } catch {
    // another user's leftover (an old seed, a test build): not ours to change, and not used by us
  }
  if (st.isDirectory()) for (const entry of readdirSync(path)) openUp(join(path, entry));
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

const unique = () => `${process.pid}-${randomBytes(6).toString("hex")}`;

/** Removes what may not be ours to remove (a lock or seed left by root): left in place then. */
function tryRemove(path) {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // EACCES/EPERM: harmless leftovers under a name nothing uses
  }
}

function readOwner(dir) {
  try {
    return readFileSync(join(dir, "pid"), "utf8");
  } catch {
    return "";
  }
}

/** One prepare at a time across processes (npm start, test set-ups, CI): a second one waits,
 * then finds the stamp current. The lock is a directory holding "pid token", made complete
 * beside it and renamed in place (never seen without its owner). A lock whose pid is dead is
 * taken over by renaming it to a unique name first: of two waiters that both saw it dead only one
 * moves it; the other moves nothing or, if it moved a fresh lock, finds another owner inside and
 * puts it back. Every output is also written beside its place and renamed, so even two prepares
 * at once (a lock whose rename-back lost a race) leave complete artifacts. */
export async function withLock(fn, lock = join(HERE, ".build.lock")) {
  const token = `${process.pid} ${randomBytes(8).toString("hex")}`;
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    const fresh = mkdtempSync(`${lock}.new-`);
    writeFileSync(join(fresh, "pid"), token);
    try {
      renameSync(fresh, lock);
      break;
    } catch (error) {
      tryRemove(fresh);
      const code = error && typeof error === "object" && "code" in error ? error.code : "";
      if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR") throw error;
    }
    const owner = readOwner(lock);
    const pid = Number(owner.split(" ")[0]);
    if (pid > 0 && !alive(pid)) {
      const moved = `${lock}.stale-${unique()}`;
      try {
        renameSync(lock, moved);
      } catch {
        continue; // another waiter moved it first
      }
      if (readOwner(moved) === owner) tryRemove(moved);
      else {
        try {
          renameSync(moved, lock); // a live owner's lock: put back
        } catch {
          // a third process locked meanwhile; the outputs stay whole (see above)
        }
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${lock}: held too long by pid ${pid}`);
    await sleep(250);
  }
  try {
    return await fn();
  } finally {
    if (readOwner(lock) === token) {
      const moved = `${lock}.done-${unique()}`;
      try {
        renameSync(lock, moved);
      } catch {
        // already taken over
      }
      tryRemove(moved);
    }
  }
}

export async function prepare({ log = (line) => console.log(line) } = {}) {
  try {
    return await withLock(() => prepareLocked(log));
  } catch (error) {
    // e.g. runtimes/go not writable by this user: a reason, not an exception
    return { ok: false, reason: `go runtime: ${String(error)}` };
  }
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
    // Built beside their place and renamed: a running instance or build never sees half a file.
    const atomically = (path, build) => {
      const staged = `${path}.tmp-${unique()}`;
      try {
        build(staged);
        chmodSync(staged, 0o755);
        renameSync(staged, path);
      } finally {
        rmSync(staged, { force: true });
      }
    };
    atomically(paths.scan, (o) =>
      run(["build", "-trimpath", "-o", o, "./tools/scan/main.go"], HERE),
    );
    atomically(paths.cacheprog, (o) =>
      run(["build", "-trimpath", "-o", o, "./tools/cacheprog/main.go"], HERE),
    );
    atomically(paths.warm, (o) =>
      run(
        ["build", "-tags", "fizzwarm", "-trimpath", "-ldflags=-s -w", "-o", o, "."],
        join(HERE, "runtime"),
      ),
    );
    if (!current(seedStamp, seedKey)) {
      log("go runtime: compiling the build-cache seed (the standard library; a few minutes)");
      buildSeed(paths, env, go, run, seedKey);
    }
    pruneTestCache(join(OUT, "test-cache"));
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

/** Test builds (test/fixtures.ts) are keyed by the stamp, so a new stamp makes the old ones
 * useless; but a test process may be reading one right now: only entries a day old go. */
function pruneTestCache(dir) {
  if (!existsSync(dir)) return;
  const old = Date.now() - 24 * 3600_000;
  for (const name of readdirSync(dir)) {
    try {
      if (lstatSync(join(dir, name)).mtimeMs < old) tryRemove(join(dir, name));
    } catch {
      // gone meanwhile
    }
  }
}

/** The seed: hello built through build.sh itself (so its settings match every later build), then
 * the common packages, all through the cache tool into a fresh directory gocache-seed-<key>-<n>
 * beside the others; then the symlink gocache-seed is swapped to it by a rename (atomic). The old
 * seed is never deleted here: a build that started before the swap keeps reading it (build.sh
 * resolves the link once). Old seeds are small next to a build and left for the operator. */
function buildSeed(paths, env, go, run, seedKey) {
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
      FIZZ_GO_SEEDING: "1", // reads no seed: everything it compiles lands in the new one
      HOME: scratch,
      TMPDIR: scratch,
      PATH: `${dirname(go)}:${process.env.PATH ?? ""}`,
    };
    execFileSync("sh", [join(HERE, "build.sh")], { cwd: src, env: buildEnv, stdio: "pipe" });
    const cacheEnv = {
      GOCACHEPROG: paths.cacheprog,
      FIZZ_GOCACHE_DIR: join(scratch, "fizz-gocache"),
      HOME: scratch,
    };
    run(["build", "-trimpath", ...SEED_PACKAGES], src, cacheEnv);
    // Copied next to its final place (the same file system), complete before the link points to it.
    const fresh = mkdtempSync(`${paths.seed}-${seedKey.slice(0, 12)}-`);
    cpSync(join(scratch, "fizz-gocache"), fresh, { recursive: true });
    writeFileSync(join(fresh, ".fizz-seed-key"), seedKey);
    openUp(fresh);
    const link = `${paths.seed}.link-${unique()}`;
    symlinkSync(basename(fresh), link);
    // A seed from before the link (a plain directory) cannot be replaced by a rename: moved aside.
    try {
      if (lstatSync(paths.seed).isDirectory())
        renameSync(paths.seed, `${paths.seed}-old-${unique()}`);
    } catch {
      // none yet
    }
    renameSync(link, paths.seed);
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
