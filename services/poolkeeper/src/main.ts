import { createLogger, runService, settleMemoryAfterStart } from "@fizz/kit";
import { loadConfig, type PoolkeeperConfig } from "./config";
import { start } from "./index";
import { closeInheritedDescriptors } from "./inherited-fds";

let config: PoolkeeperConfig;
try {
  config = loadConfig(process.env);
} catch (err) {
  console.error(`poolkeeper: ${(err as Error).message}`);
  process.exit(1);
}
const logger = createLogger("poolkeeper", config.logLevel);
// Before anything is spawned: what this process inherited open would reach every instance.
const inherited = closeInheritedDescriptors();
if (inherited.length)
  logger.info({ fds: inherited }, "closed descriptors inherited open across exec");

// Start-up garbage collected once the service settled (with --expose-gc: the launcher, the image).
settleMemoryAfterStart();
await runService(logger, (signal) => start(config, { logger, signal }), {
  exitWithStdin: process.env.FIZZ_PARENT_STDIN === "1",
  tracing: { config: config.tracing, service: "poolkeeper" },
});
