// Set-up that `npm start` and `npm test` do on a fresh clone, before anything else is importable:
// node_modules, nats-server and redis-server, and Flask and redis-py for the Python environment.
// Plain JavaScript with no dependencies on purpose.
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
  // The guestbook's browser test drives Debian's Chromium.
  { bin: "chromium", apt: "chromium", paths: ["/usr/bin/chromium"] },
  // The bench's cold-start comparison serves through nginx.
  { bin: "nginx", apt: "nginx", paths: ["/usr/sbin/nginx"] },
];

/**
 * @typedef {object} PythonModule
 * @property {string} module  what a function imports
 * @property {string} apt     the Debian package that has it for /usr/bin/python3
 */

/**
 * What functions written for Fission's Python environment import: Flask (`def main()` runs in a
 * Flask request context, runtimes/python/fizz_flask.py) and redis-py (the guestbook).
 * @type {PythonModule[]}
 */
const FLASK_MODULES = [
  { module: "flask", apt: "python3-flask" },
  { module: "redis", apt: "python3-redis" },
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

const isRoot = () => process.getuid?.() === 0;
export const canApt = () => isRoot() && isDebianLike() && findBinary("apt-get") !== undefined;

let aptUpdated = false;
/**
 * `apt-get install` (after one `apt-get update` per process).
 * @param {string[]} names
 * @param {(line: string) => void} log
 * @returns {boolean} whether apt-get succeeded
 */
export function aptInstall(names, log) {
  log(`fizz: installing ${names.join(", ")} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  if (!aptUpdated) {
    if (spawnSync("apt-get", ["update", "-q"], { stdio: "inherit", env }).status !== 0)
      return false;
    aptUpdated = true;
  }
  const args = ["install", "-y", "-q", "--no-install-recommends", ...names];
  return spawnSync("apt-get", args, { stdio: "inherit", env }).status === 0;
}

/** The interpreter the poolkeeper runs Python instances with (services/poolkeeper/src/config.ts). */
function instancePython() {
  if (process.env.FIZZ_PYTHON) return process.env.FIZZ_PYTHON;
  return isRoot() && existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

/**
 * @param {string} python
 * @returns {PythonModule[]} the modules `python` cannot import (all of them without `python`)
 */
function missingModules(python) {
  const probe =
    "import importlib.util as u, sys\nfor m in sys.argv[1:]:\n    if u.find_spec(m) is None: print(m)";
  const r = spawnSync(python, ["-c", probe, ...FLASK_MODULES.map((m) => m.module)], {
    encoding: "utf8",
  });
  if (r.status !== 0) return FLASK_MODULES;
  const absent = r.stdout.split(/\s+/);
  return FLASK_MODULES.filter((m) => absent.includes(m.module));
}

/** Installs what is missing where we can (Debian/Ubuntu as root); elsewhere says what to install. */
export function ensureBinaries(log = console.error, { forTests = false } = {}) {
  const wanted = forTests ? [...RUNTIME_BINARIES, ...TEST_BINARIES] : RUNTIME_BINARIES;
  const root = isRoot();
  const missing = wanted.filter((b) =>
    root && b.asRoot ? !existsSync(b.asRoot) : !findBinary(b.bin, b.paths),
  );
  // The tests run Flask-style functions: for them Flask is required, not optional.
  const python = instancePython();
  const modules = forTests ? missingModules(python) : [];
  if (missing.length === 0 && modules.length === 0) return;
  const names = [...missing.map((b) => b.apt), ...modules.map((m) => m.apt)];
  if (canApt()) {
    if (
      aptInstall(names, log) &&
      missing.every((b) => findBinary(b.bin, b.paths)) &&
      (modules.length === 0 || missingModules(python).length === 0)
    )
      return;
    throw new Error(`apt-get could not install ${names.join(", ")}; install them and run again`);
  }
  throw new Error(
    `fizz needs ${names.join(", ")} on PATH. Install them (Debian/Ubuntu: apt-get install ${names.join(" ")}; ` +
      `macOS: brew install nats-server redis python) and run again, or point FIZZ_NATS_URL / FIZZ_REDIS_URL at running servers.`,
  );
}

/**
 * `npm start`: gives the Python environment Flask and redis-py (Debian's packages, as root), so
 * functions written for Fission's Python environment run. Where that cannot be done, one line
 * says so and why, and the platform starts anyway: `def main(context)` functions do not need them.
 */
export function ensurePythonFlask(log = console.error) {
  const python = instancePython();
  const missing = missingModules(python);
  if (missing.length === 0) return;
  const names = missing.map((m) => m.apt);
  /** @type {string} */
  let why;
  if (!isRoot()) why = `not root, so not installing ${names.join(" ")}`;
  else if (!isDebianLike() || !findBinary("apt-get")) why = "not Debian/Ubuntu (no apt-get)";
  else if (python !== "/usr/bin/python3") why = `FIZZ_PYTHON is not Debian's /usr/bin/python3`;
  else if (!aptInstall(names, log)) why = `apt-get could not install ${names.join(" ")}`;
  else if (missingModules(python).length > 0) why = `${names.join(" ")} installed, still missing`;
  else return;
  const what = missing.map((m) => m.module).join(" and ");
  log(
    `fizz: ${python} has no ${what} (${why}): Python functions importing it (Fission's Flask-style def main(), the guestbook) will not load; def main(context) ones run`,
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
