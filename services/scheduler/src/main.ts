import { createLogger, runService, settleMemoryAfterStart } from "@fizz/kit";
import { loadConfig, type SchedulerConfig } from "./config";
import { start } from "./index";

let config: SchedulerConfig;
try {
  config = loadConfig(process.env);
} catch (err) {
  // A bad variable must stop the process with its name, before anything connects.
  createLogger("scheduler").fatal({ err }, "invalid configuration");
  process.exit(1);
}
const logger = createLogger("scheduler", config.logLevel);
// Start-up garbage collected once the service settled (with --expose-gc: the launcher, the image).
settleMemoryAfterStart();
void runService(logger, (signal) => start(config, { logger, signal }), {
  exitWithStdin: process.env.FIZZ_PARENT_STDIN === "1",
  tracing: { config: config.tracing, service: "scheduler" },
});
