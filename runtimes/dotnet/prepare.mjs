// Builds the C# runtime's artifacts into runtimes/dotnet/.build/ with Mono's mcs: the API library
// functions compile against (Fission.DotNetCore.Api.dll) and the host (fizz-dotnet.exe). Keyed
// by a hash of the sources and the compiler's version, so a rerun with nothing changed is
// instant. Files are world-readable and directories world-traversable: instances run as other
// uids. Usage: `node runtimes/dotnet/prepare.mjs`, or `await prepare({ log })`.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const here = fileURLToPath(new URL(".", import.meta.url));
const buildDir = join(here, ".build");

/** @param {string} dir */
function sources(dir) {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".cs"))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * @param {{ log?: (line: string) => void }} [options]
 * @returns {Promise<{ ok: boolean, reason?: string, exe?: string, apiDll?: string, buildScript?: string }>}
 */
export async function prepare({ log = () => {} } = {}) {
  let version;
  try {
    const [mono, mcs] = await Promise.all([run("mono", ["--version"]), run("mcs", ["--version"])]);
    version = `${mono.stdout.split("\n")[0]}|${mcs.stdout.trim()}`;
  } catch (err) {
    const reason = `mono or mcs is missing (install the Debian packages mono-runtime and mono-mcs): ${
      /** @type {Error} */ (err).message.split("\n")[0]
    }`;
    return { ok: false, reason };
  }
  const api = sources(join(here, "api"));
  const host = sources(join(here, "host"));
  const hash = createHash("sha256")
    .update(version)
    .update(readFileSync(fileURLToPath(import.meta.url)));
  for (const file of [...api, ...host]) hash.update(file).update(readFileSync(file));
  const key = hash.digest("hex").slice(0, 16);
  // Paths everyone else uses (the poolkeeper's command, build.sh's API library): symlinks through
  // `current` into the versioned directory .build/v-<key>/. A rebuild makes a new directory and
  // swaps `current` with one rename, so a concurrent build.sh or a starting instance always
  // resolves a complete build, and no directory in use is deleted (only old, unused versions).
  const exe = join(buildDir, "fizz-dotnet.exe");
  const apiDll = join(buildDir, "Fission.DotNetCore.Api.dll");
  const result = { ok: true, exe, apiDll, buildScript: join(here, "build.sh") };
  const name = `v-${key}`;
  const versionDir = join(buildDir, name);
  if (isComplete(versionDir, key)) {
    if (!linksAreCurrent(name)) switchTo(name);
    return result;
  }
  log(`[dotnet] compiling the C# runtime with mcs (${api.length + host.length} files)`);
  mkdirSync(buildDir, { recursive: true });
  chmodSync(buildDir, 0o755);
  // Staged inside .build (same filesystem, so the rename is atomic), private to this process.
  const tmp = mkdtempSync(join(buildDir, ".tmp-"));
  try {
    // Absolute source paths: the runtime tells its own frames from a function's (relative) ones.
    const common = ["-debug", "-optimize+", "-nologo", "-unsafe"];
    await run("mcs", [
      ...common,
      "-target:library",
      `-out:${join(tmp, "Fission.DotNetCore.Api.dll")}`,
      ...api,
    ]);
    const refs = [
      `-r:${join(tmp, "Fission.DotNetCore.Api.dll")}`,
      "-r:System.dll",
      "-r:System.Core.dll",
    ];
    await run("mcs", [
      ...common,
      "-target:exe",
      ...refs,
      `-out:${join(tmp, "fizz-dotnet.exe")}`,
      ...host,
    ]);
    writeFileSync(join(tmp, "stamp"), key);
    for (const f of readdirSync(tmp)) chmodSync(join(tmp, f), 0o644);
    chmodSync(tmp, 0o755);
    try {
      renameSync(tmp, versionDir);
    } catch (err) {
      // Another prepare finished the same version first: its directory is complete; keep it.
      const code = /** @type {NodeJS.ErrnoException} */ (err).code;
      if ((code !== "ENOTEMPTY" && code !== "EEXIST") || !isComplete(versionDir, key)) throw err;
    }
  } catch (err) {
    const e = /** @type {Error & { stdout?: string, stderr?: string }} */ (err);
    return {
      ok: false,
      reason: `mcs failed: ${e.stdout ?? ""}${e.stderr ?? ""}${e.message}`.trim(),
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  switchTo(name);
  pruneOldVersions(name);
  return result;
}

/** The files a build makes, all present, for this key. @param {string} dir @param {string} key */
function isComplete(dir, key) {
  try {
    return (
      readFileSync(join(dir, "stamp"), "utf8") === key &&
      BUILT.every((f) => f === "stamp" || existsSync(join(dir, f)))
    );
  } catch {
    return false;
  }
}

const BUILT = [
  "Fission.DotNetCore.Api.dll",
  "Fission.DotNetCore.Api.dll.mdb",
  "fizz-dotnet.exe",
  "fizz-dotnet.exe.mdb",
  "stamp",
];

/** @param {string} version */
function linksAreCurrent(version) {
  try {
    if (readlinkSync(join(buildDir, "current")) !== version) return false;
    return BUILT.every((f) => readlinkSync(join(buildDir, f)) === join("current", f));
  } catch {
    return false;
  }
}

/** Points `current` at `version`, and the fixed paths through it; every step one rename(2). @param {string} version */
function switchTo(version) {
  swapLink(version, join(buildDir, "current"));
  for (const f of BUILT) {
    let target;
    try {
      target = readlinkSync(join(buildDir, f));
    } catch {
      target = undefined; // absent, or a regular file left by an older prepare: replaced atomically
    }
    if (target !== join("current", f)) swapLink(join("current", f), join(buildDir, f));
  }
}

/** @param {string} target @param {string} path */
function swapLink(target, path) {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  symlinkSync(target, tmp);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Versions other than the current one, and stale staging directories, once untouched for a day:
 * an instance starting from one resolved it through `current` long before.
 * @param {string} keep
 */
function pruneOldVersions(keep) {
  const dayAgo = Date.now() - 24 * 3600 * 1000;
  for (const name of readdirSync(buildDir)) {
    if (name === keep || !(name.startsWith("v-") || name.startsWith(".tmp-"))) continue;
    try {
      if (lstatSync(join(buildDir, name)).mtimeMs < dayAgo) {
        rmSync(join(buildDir, name), { recursive: true, force: true });
      }
    } catch {
      // Another prepare pruned it first.
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const result = await prepare({ log: (line) => console.error(line) });
  if (!result.ok) {
    console.error(`[dotnet] not prepared: ${result.reason}`);
    process.exit(1);
  }
  console.log(JSON.stringify(result));
}
