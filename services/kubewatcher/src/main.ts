import { createLogger, runService, settleMemoryAfterStart } from "@fizz/kit";
import { loadConfig, start } from "./index";

const config = loadConfig(process.env);
const logger = createLogger("kubewatcher", config.logLevel);
// Start-up garbage collected once the service settled (with --expose-gc: the launcher, the image).
settleMemoryAfterStart();
await runService(logger, () => start(config, { logger }), {
  exitWithStdin: process.env.FIZZ_PARENT_STDIN === "1",
  tracing: { config: config.tracing, service: "kubewatcher" },
});
