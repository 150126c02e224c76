// Set-up that `npm start` and `npm test` do on a fresh clone, before anything else is importable:
// node_modules, nats-server and redis-server. Plain JavaScript with no dependencies on purpose.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

export const ROOT = path.resolve(new URL("../..", import.meta.url).pathname);

/**
 * @typedef {object} Binary
 * @property {string} bin    the command
 * @property {string} apt    the Debian package that has it
 * @property {string[]} paths  where to look before PATH
 * @property {string} [asRoot]  the path it must have when running as root
 */

/** @type {Binary[]} */
const RUNTIME_BINARIES = [
  {
    bin: "nats-server",
    apt: "nats-server",
    paths: ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"],
  },
  {
    bin: "redis-server",
    apt: "redis-server",
    paths: ["/usr/bin/redis-server", "/usr/local/bin/redis-server"],
  },
  // As root the poolkeeper runs each instance as its own unprivileged uid, which cannot use an
  // interpreter under root's home (pyenv): it needs the system's /usr/bin/python3.
  { bin: "python3", apt: "python3", paths: [], asRoot: "/usr/bin/python3" },
  // Python package builds run `python3 -m pip install --target` with the system interpreter.
  {
    bin: "pip3",
    apt: "python3-pip",
    paths: ["/usr/lib/python3/dist-packages/pip"],
    asRoot: "/usr/lib/python3/dist-packages/pip",
  },
  // Drops each instance to its own uid and ties it to the poolkeeper's life (util-linux).
  { bin: "setpriv", apt: "util-linux", paths: ["/usr/bin/setpriv"] },
];
// Only the tests need these: compose.dev.yml is validated with `docker-compose config` (no
// engine); the TLS tests make a CA with openssl.
/** @type {Binary[]} */
const TEST_BINARIES = [
  { bin: "docker-compose", apt: "docker-compose", paths: [] },
  { bin: "openssl", apt: "openssl", paths: [] },
  // The build tests make a local wheel (PyPI is not reachable): `pip wheel` needs both.
  { bin: "wheel", apt: "python3-wheel", paths: ["/usr/lib/python3/dist-packages/wheel"] },
  {
    bin: "setuptools",
    apt: "python3-setuptools",
    paths: ["/usr/lib/python3/dist-packages/setuptools"],
  },
];

/**
 * @param {string} bin
 * @param {string[]} [paths]  checked before PATH
 * @returns {string | undefined}
 */
export function findBinary(bin, paths = []) {
  for (const p of paths) if (existsSync(p)) return p;
  const r = spawnSync("sh", ["-c", `command -v ${bin}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function isDebianLike() {
  try {
    return /ID(_LIKE)?=.*(debian|ubuntu)/.test(readFileSync("/etc/os-release", "utf8"));
  } catch {
    return false;
  }
}

/** Installs what is missing where we can (Debian/Ubuntu as root); elsewhere says what to install. */
export function ensureBinaries(log = console.error, { forTests = false } = {}) {
  const wanted = forTests ? [...RUNTIME_BINARIES, ...TEST_BINARIES] : RUNTIME_BINARIES;
  const root = process.getuid?.() === 0;
  const missing = wanted.filter((b) =>
    root && b.asRoot ? !existsSync(b.asRoot) : !findBinary(b.bin, b.paths),
  );
  if (missing.length === 0) return;
  const names = missing.map((b) => b.apt);
  if (process.getuid?.() === 0 && isDebianLike() && findBinary("apt-get")) {
    log(`fizz: installing ${names.join(", ")} with apt-get`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const upd = spawnSync("apt-get", ["update", "-q"], { stdio: "inherit", env });
    const ins = spawnSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...names], {
      stdio: "inherit",
      env,
    });
    if (upd.status === 0 && ins.status === 0 && missing.every((b) => findBinary(b.bin, b.paths)))
      return;
    throw new Error(`apt-get could not install ${names.join(", ")}; install them and run again`);
  }
  throw new Error(
    `fizz needs ${names.join(", ")} on PATH. Install them (Debian/Ubuntu: apt-get install ${names.join(" ")}; ` +
      `macOS: brew install nats-server redis python) and run again, or point FIZZ_NATS_URL / FIZZ_REDIS_URL at running servers.`,
  );
}

/** Runs `npm install` when node_modules is missing or older than package-lock.json. */
export function ensureNodeModules(log = console.error) {
  const marker = path.join(ROOT, "node_modules", ".package-lock.json");
  const lock = path.join(ROOT, "package-lock.json");
  if (existsSync(marker) && existsSync(path.join(ROOT, "node_modules", "tsx"))) return;
  log("fizz: installing node modules (npm install)");
  const args = existsSync(lock)
    ? ["ci", "--no-audit", "--no-fund"]
    : ["install", "--no-audit", "--no-fund"];
  const r = spawnSync("npm", args, { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`npm ${args[0]} failed (exit ${r.status})`);
}
