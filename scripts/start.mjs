// `npm start`: the platform on the embedded default. Without FIZZ_NATS_URL / FIZZ_REDIS_URL it
// starts nats-server (JetStream) and redis-server itself, with data under .fizz/ so a restart keeps
// what was registered. A service, NATS or Redis that crashes is restarted with back-off while the
// others keep running (scripts/lib/supervisor.mjs). Ctrl-C stops everything.
import path from "node:path";
import { ensureBinaries, ensureNodeModules, ROOT } from "./lib/prereqs.mjs";

try {
  ensureNodeModules();
  if (!process.env.FIZZ_NATS_URL || !process.env.FIZZ_REDIS_URL) ensureBinaries();
} catch (err) {
  console.error(`fizz: ${err.message}`);
  process.exit(1);
}

const { launchPlatform } = await import("./lib/platform.mjs");
const { prettyLine } = await import("./lib/pretty.mjs");
const { chmodSync, createWriteStream, mkdirSync } = await import("node:fs");
const port = (name, fallback) => {
  const v = process.env[name];
  return v ? Number(v) : fallback;
};

let platform;
let stopping = false;
const shutdown = async (sig) => {
  if (stopping) return;
  stopping = true;
  console.error(`\nfizz: stopping (${sig})`);
  await platform?.stop();
  process.exit(0);
};
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));

// NATS and Redis talk a lot at start; their logs go to .fizz/logs, the services' to the terminal.
const logDir = path.join(ROOT, ".fizz", "logs");
// Server logs name users (never passwords) but are still the platform's: owner-only.
mkdirSync(logDir, { recursive: true, mode: 0o700 });
chmodSync(logDir, 0o700);
const serverLogs = {};
const color = process.stdout.isTTY === true;
const onLog = (name, line) => {
  // The launcher's own restart lines: one per crash and one per restart, always on the terminal.
  if (name === "supervisor") return void console.error(`fizz: ${line}`);
  if (name === "nats" || name === "redis") {
    (serverLogs[name] ??= createWriteStream(path.join(logDir, `${name}.log`), {
      flags: "a",
    })).write(line + "\n");
    return;
  }
  if (process.env.FIZZ_LOG_FORMAT === "json") console.log(line);
  else console.log(prettyLine(name, line, { color }));
};

try {
  platform = await launchPlatform({
    onLog,
    dataDir: path.join(ROOT, ".fizz"),
    natsUrl: process.env.FIZZ_NATS_URL,
    redisUrl: process.env.FIZZ_REDIS_URL,
    gatewayPort: port("FIZZ_GATEWAY_PORT", 8080),
    registryPort: port("FIZZ_REGISTRY_PORT", 8081),
  });
} catch (err) {
  console.error(`fizz: could not start: ${err.message}`);
  process.exit(1);
}

const embedded = !process.env.FIZZ_NATS_URL
  ? " (embedded NATS and Redis, data and credentials in .fizz/)"
  : "";
console.log(`
Fizz is running${embedded}
  gateway   ${platform.gatewayUrl}
  registry  ${platform.registryUrl}
  nats      ${platform.appNatsUrl ?? platform.natsUrl}${platform.appNatsUrl ? "  (the application user: publish/request on your own subjects)" : ""}
  redis     ${platform.redisUrl}
  token     .fizz/admin-token (the CLI finds it; other clients send Authorization: Bearer <token>)

Try this:
  npx fizz env create --name python --image fizz/env-python
  npx fizz fn create --name hello --env python --code examples/hello/hello.py --route /hello
  curl ${platform.gatewayUrl}/hello

A crashed service, NATS or Redis is restarted. Ctrl-C stops everything.
`);
