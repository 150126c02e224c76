/** The package's entry for other workspaces (e.g. e2e tests driving the CLI in-process). */
export { run, DEFAULT_GATEWAY_URL, DEFAULT_REGISTRY_URL, type RunIO } from "./main.js";
