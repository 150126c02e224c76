import { createLogger, runService, settleMemoryAfterStart, setRequestScopes } from "@fizz/kit";
import { loadConfig, type GatewayConfig } from "./config";
import { start } from "./index";

let config: GatewayConfig;
try {
  config = loadConfig(process.env);
} catch (err) {
  // A bad variable names itself ("FIZZ_GATEWAY_PORT: must be ..."); fail at once, not later.
  createLogger("gateway").fatal({ err: (err as Error).message }, "invalid configuration");
  process.exit(1);
}
const logger = createLogger("gateway", config.logLevel);
// The proxy passes trace context explicitly; never let a traced NATS request turn on
// AsyncLocalStorage (promise hooks on every proxied request): kit tracing/scope.ts.
setRequestScopes(false);
// Start-up garbage collected once the service settled (with --expose-gc: the launcher, the image).
settleMemoryAfterStart();
void runService(logger, (signal) => start(config, { logger, signal }), {
  drainTimeoutMs: config.drainTimeoutMs + 5000,
  exitWithStdin: process.env.FIZZ_PARENT_STDIN === "1",
  tracing: { config: config.tracing, service: "gateway" },
});
