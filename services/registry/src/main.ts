import { createLogger, runService, settleMemoryAfterStart } from "@fizz/kit";
import { loadConfig, type RegistryConfig } from "./config";
import { start } from "./index";

let config: RegistryConfig;
try {
  config = loadConfig(process.env);
} catch (err) {
  // No logger yet: its level is part of the config that just failed.
  console.error(`registry: ${(err as Error).message}`);
  process.exit(1);
}
const logger = createLogger("registry", config.logLevel);
// Start-up garbage collected once the service settled (with --expose-gc: the launcher, the image).
settleMemoryAfterStart();
await runService(logger, (signal) => start(config, { logger, signal }), {
  exitWithStdin: process.env.FIZZ_PARENT_STDIN === "1",
});
