// Builds the C# runtime's artifacts into runtimes/dotnet/.build/ with Mono's mcs: the API library
// functions compile against (Fission.DotNetCore.Api.dll) and the host (fizz-dotnet.exe). Keyed
// by a hash of the sources and the compiler's version, so a rerun with nothing changed is
// instant. Files are world-readable and directories world-traversable: instances run as other
// uids. Usage: `node runtimes/dotnet/prepare.mjs`, or `await prepare({ log })`.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
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
  const exe = join(buildDir, "fizz-dotnet.exe");
  const apiDll = join(buildDir, "Fission.DotNetCore.Api.dll");
  const stamp = join(buildDir, "stamp");
  const result = { ok: true, exe, apiDll, buildScript: join(here, "build.sh") };
  if (
    existsSync(stamp) &&
    readFileSync(stamp, "utf8") === key &&
    existsSync(exe) &&
    existsSync(apiDll)
  ) {
    return result;
  }
  log(`[dotnet] compiling the C# runtime with mcs (${api.length + host.length} files)`);
  // Built beside, then renamed: a running instance keeps its files, a reader never sees half.
  const tmp = join(here, `.build-tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
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
    // Keep the test cache across rebuilds: it is keyed by content, not by the runtime.
    const cache = join(buildDir, "test-cache");
    if (existsSync(cache)) renameSync(cache, join(tmp, "test-cache"));
    rmSync(buildDir, { recursive: true, force: true });
    renameSync(tmp, buildDir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    // Another prepare (a parallel test run, npm start) finished the same build first.
    if (existsSync(stamp) && readFileSync(stamp, "utf8") === key && existsSync(exe)) return result;
    const e = /** @type {Error & { stdout?: string, stderr?: string }} */ (err);
    return {
      ok: false,
      reason: `mcs failed: ${e.stdout ?? ""}${e.stderr ?? ""}${e.message}`.trim(),
    };
  }
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const result = await prepare({ log: (line) => console.error(line) });
  if (!result.ok) {
    console.error(`[dotnet] not prepared: ${result.reason}`);
    process.exit(1);
  }
  console.log(JSON.stringify(result));
}
