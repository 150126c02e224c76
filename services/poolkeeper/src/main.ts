import { createLogger, runService, settleMemoryAfterStart } from "@fizz/kit";
import { loadConfig, type PoolkeeperConfig } from "./config";
import { start } from "./index";

let config: PoolkeeperConfig;
try {
  config = loadConfig(process.env);
} catch (err) {
  console.error(`poolkeeper: ${(err as Error).message}`);
  process.exit(1);
}
const logger = createLogger("poolkeeper", config.logLevel);

// Start-up garbage collected once the service settled (with --expose-gc: the launcher, the image).
settleMemoryAfterStart();
await runService(logger, (signal) => start(config, { logger, signal }), {
  exitWithStdin: process.env.FIZZ_PARENT_STDIN === "1",
  tracing: { config: config.tracing, service: "poolkeeper" },
});
