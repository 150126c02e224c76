// `npm start`: the platform on the embedded default. Without FIZZ_NATS_URL / FIZZ_REDIS_URL it
// starts nats-server (JetStream) and redis-server itself, with data under .fizz/ so a restart keeps
// what was registered. A service, NATS or Redis that crashes is restarted with back-off while the
// others keep running (scripts/lib/supervisor.mjs). Ctrl-C stops everything.
import path from "node:path";
import { ensureBinaries, ensureNodeModules, ensurePythonFlask, ROOT } from "./lib/prereqs.mjs";

try {
  ensureNodeModules();
  if (!process.env.FIZZ_NATS_URL || !process.env.FIZZ_REDIS_URL) ensureBinaries();
  // Optional: without Flask the platform still runs, and says what Python functions then lack.
  ensurePythonFlask();
} catch (err) {
  console.error(`fizz: ${errorMessage(err)}`);
  process.exit(1);
}
// Go, PHP, Ruby and C#: Debian's packages (as root) and the compiled runtimes' prepare scripts.
// One line per environment that cannot run here, with the reason; everything else starts.
{
  const { ensureRuntimes } = await import("./lib/runtimes.mjs");
  await ensureRuntimes();
}

const { launchPlatform } = await import("./lib/platform.mjs");
const { levelOf, prettyLine } = await import("./lib/pretty.mjs");
const { chmodSync, createWriteStream, mkdirSync } = await import("node:fs");
/**
 * @param {string} name
 * @param {number} fallback
 */
const port = (name, fallback) => {
  const v = process.env[name];
  return v ? Number(v) : fallback;
};

/** @type {Awaited<ReturnType<typeof launchPlatform>> | undefined} */
let platform;
let stopping = false;
/**
 * A stop that fails is reported, and the launcher still closes its logs and exits (non-zero).
 * @param {NodeJS.Signals} sig
 */
const shutdown = async (sig) => {
  if (stopping) return;
  stopping = true;
  console.error(`\nfizz: stopping (${sig})`);
  let code = 0;
  try {
    await platform?.stop();
  } catch (err) {
    console.error(`fizz: could not stop everything cleanly: ${errorMessage(err)}`);
    code = 1;
  }
  await closeLogs();
  process.exit(code);
};
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));

// NATS and Redis talk a lot at start; their logs go to .fizz/logs. The services' logs go there
// too, and to the terminal: while the platform comes up only their warnings and errors (a normal
// start is one "ready" line per service), then everything, a function's output included.
const logDir = path.join(ROOT, ".fizz", "logs");
// Server logs name users (never passwords) but are still the platform's: owner-only.
mkdirSync(logDir, { recursive: true, mode: 0o700 });
chmodSync(logDir, 0o700);
/** @type {Map<string, import("node:fs").WriteStream>} */
const logFiles = new Map();
let logsClosed = false;
/**
 * @param {string} name  nats, redis or "services"
 * @param {string} line
 */
const toFile = (name, line) => {
  if (logsClosed) return;
  let file = logFiles.get(name);
  if (!file) {
    const at = path.join(logDir, `${name}.log`);
    file = createWriteStream(at, { flags: "a" });
    // A log file that cannot be written must not take the launcher down with it.
    file.on("error", (err) => console.error(`fizz: cannot write ${at}: ${errorMessage(err)}`));
    logFiles.set(name, file);
  }
  file.write(line + "\n");
};
/**
 * Ends the log files and waits until what they buffered is written (at most `capMs`), so an exit
 * right after keeps the last lines, the ones the user is told to read.
 * @param {number} [capMs]
 */
const closeLogs = async (capMs = 3000) => {
  logsClosed = true;
  const flushed = [...logFiles.values()].map((file) => new Promise((resolve) => file.end(resolve)));
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const cap = new Promise((resolve) => (timer = setTimeout(resolve, capMs)));
  await Promise.race([Promise.all(flushed), cap]);
  clearTimeout(timer);
};
const color = process.stdout.isTTY === true;
const json = process.env.FIZZ_LOG_FORMAT === "json";
let started = false;
const QUIET_LEVELS = new Set(["trace", "debug", "info"]);
/**
 * @param {string} name
 * @param {string} line
 */
const onLog = (name, line) => {
  // The launcher's own restart lines: one per crash and one per restart, always on the terminal.
  if (name === "supervisor") return void console.error(`fizz: ${line}`);
  if (name === "nats" || name === "redis") return toFile(name, line);
  toFile("services", line);
  // A line that is not a log record (a crash trace) always shows.
  const level = levelOf(line);
  if (!started && level !== undefined && QUIET_LEVELS.has(level)) return;
  console.log(json ? line : prettyLine(name, line, { color }));
};
/** @param {string} name */
const onReady = (name) => {
  const time = new Date().toTimeString().slice(0, 8);
  if (json)
    console.log(JSON.stringify({ level: 30, time: Date.now(), service: name, msg: "ready" }));
  else console.log(`${time} ${name.padEnd(18)} ready`);
};

try {
  platform = await launchPlatform({
    onLog,
    onReady,
    dataDir: path.join(ROOT, ".fizz"),
    natsUrl: process.env.FIZZ_NATS_URL,
    redisUrl: process.env.FIZZ_REDIS_URL,
    gatewayPort: port("FIZZ_GATEWAY_PORT", 8080),
    registryPort: port("FIZZ_REGISTRY_PORT", 8081),
  });
} catch (err) {
  console.error(`fizz: could not start: ${errorMessage(err)}`);
  await closeLogs();
  process.exit(1);
}
started = true;

const embedded = !process.env.FIZZ_NATS_URL
  ? " (embedded NATS and Redis, data and credentials in .fizz/)"
  : "";
console.log(`
Fizz is running${embedded}
  gateway   ${platform.gatewayUrl}
  registry  ${platform.registryUrl}
  console   ${platform.registryUrl}/console/  (sign in with the token in .fizz/admin-token)
  nats      ${platform.appNatsUrl ?? platform.natsUrl}${platform.appNatsUrl ? "  (the application user: publish/request on your own subjects)" : ""}
  redis     ${platform.redisUrl}
  token     .fizz/admin-token (the CLI finds it; other clients send Authorization: Bearer <token>)

Try this:
  npx fizz env create --name python --image fizz/env-python
  npx fizz fn create --name hello --env python --code examples/hello/hello.py --route /hello
  curl ${platform.gatewayUrl}/hello
  (also fizz/env-node, fizz/env-go, fizz/env-php, fizz/env-ruby, fizz/env-dotnet; Go and C# --code is built first)

A crashed service, NATS or Redis is restarted. Ctrl-C stops everything.
Logs: .fizz/logs (services.log, nats.log, redis.log).
`);

/** @param {unknown} err */
function errorMessage(err) {
  return err instanceof Error ? err.message : String(err);
}
