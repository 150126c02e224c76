// What the runtime tests start: the one-file build as the process backend launches it
// (runtimes/node/prepare.mjs, built here if it is not current): through start-cached.cjs with its
// V8 code cache when there is one, as a verified cache is started. With FIZZ_NODE_TEST_SOURCES=1
// server.mjs itself, so that both forms are held to the same tests.
import { fileURLToPath } from "node:url";
import { prepare } from "../prepare.mjs";

async function entry(): Promise<string> {
  if (process.env.FIZZ_NODE_TEST_SOURCES === "1")
    return fileURLToPath(new URL("../server.mjs", import.meta.url));
  const built = await prepare();
  if (!built.ok) throw new Error(`runtimes/node/prepare.mjs: ${built.reason}`);
  // Without a cache the loader would go untested: a build that cannot make one fails here.
  if (!built.cache) throw new Error("runtimes/node/prepare.mjs made no code cache");
  return built.cache.loader;
}

export const SERVER_ENTRY = await entry();
