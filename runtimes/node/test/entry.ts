// What the runtime tests start: the one-file build the process backend launches
// (runtimes/node/prepare.mjs, built here if it is not current), or with FIZZ_NODE_TEST_SOURCES=1
// server.mjs itself, so that both forms are held to the same tests.
import { fileURLToPath } from "node:url";
import { prepare } from "../prepare.mjs";

async function entry(): Promise<string> {
  if (process.env.FIZZ_NODE_TEST_SOURCES === "1")
    return fileURLToPath(new URL("../server.mjs", import.meta.url));
  const built = await prepare();
  if (!built.ok) throw new Error(`runtimes/node/prepare.mjs: ${built.reason}`);
  return built.file;
}

export const SERVER_ENTRY = await entry();
