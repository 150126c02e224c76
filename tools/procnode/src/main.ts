// procnode as a process: `node --import tsx tools/procnode/src/main.ts --kubeconfig K --node-name N`.
// Flags win over env: PROCNODE_KUBECONFIG (or KUBECONFIG), PROCNODE_NODE_NAME, PROCNODE_POD_IP_BASE,
// PROCNODE_LOOKUP_KUBECONFIG, PROCNODE_LOG_LEVEL. Starts and stops through kit's runService, as every
// service does: stops (killing every pod process) on SIGINT, SIGTERM, and — with
// FIZZ_PARENT_STDIN=1 — when its parent closes stdin.
import { parseArgs } from "node:util";
import { createLogger, runService } from "@fizz/kit";
import { startProcnode } from "./procnode";

const { values } = parseArgs({
  options: {
    kubeconfig: { type: "string" },
    "node-name": { type: "string" },
    "pod-ip-base": { type: "string" },
    "lookup-kubeconfig": { type: "string" },
    "log-level": { type: "string" },
  },
});
const env = process.env;
const kubeconfig = values.kubeconfig ?? env.PROCNODE_KUBECONFIG ?? env.KUBECONFIG;
const nodeName = values["node-name"] ?? env.PROCNODE_NODE_NAME;
if (!kubeconfig || !nodeName) {
  console.error(
    "procnode: --kubeconfig (or PROCNODE_KUBECONFIG/KUBECONFIG) and --node-name (or PROCNODE_NODE_NAME) are required",
  );
  process.exit(2);
}
const logger = createLogger("procnode", values["log-level"] ?? env.PROCNODE_LOG_LEVEL ?? "info");
const podIpBase = values["pod-ip-base"] ?? env.PROCNODE_POD_IP_BASE;
const lookupKubeconfig = values["lookup-kubeconfig"] ?? env.PROCNODE_LOOKUP_KUBECONFIG;

await runService(
  logger,
  () =>
    startProcnode({
      kubeconfig,
      nodeName,
      logger,
      ...(podIpBase ? { podIpBase } : {}),
      ...(lookupKubeconfig ? { lookupKubeconfig } : {}),
    }),
  { exitWithStdin: env.FIZZ_PARENT_STDIN === "1" },
);
