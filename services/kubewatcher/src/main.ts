import { createLogger, runService } from "@fizz/kit";
import { loadConfig, start } from "./index";

const config = loadConfig(process.env);
const logger = createLogger("kubewatcher", config.logLevel);
await runService(logger, () => start(config, { logger }), {
  exitWithStdin: process.env.FIZZ_PARENT_STDIN === "1",
  tracing: { config: config.tracing, service: "kubewatcher" },
});
