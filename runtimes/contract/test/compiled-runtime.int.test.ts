// The suite's path for compiled runtimes (RuntimeUnderTest.compile), proved with a runtime whose
// behaviour is known: Node, treated as if it compiled. Its "build" turns a one-file package into a
// package whose package.json names that file as main, so every Source fixture goes through the
// archive form and every package through compile, as Go's and C#'s do, and the whole contract
// must still hold. A defect in the hook shows here rather than as a Go or C# failure.
import { describeRuntimeContract, type Files } from "../runtime-contract.js";
import { nodeRuntime } from "../../node/test/fixtures.js";

function build(files: Files): Promise<Files> {
  const names = Object.keys(files);
  const [only] = names;
  if (names.length === 1 && only !== undefined && !only.startsWith("index.")) {
    return Promise.resolve({ ...files, "package.json": JSON.stringify({ main: only }) });
  }
  return Promise.resolve(files);
}

describeRuntimeContract({
  ...nodeRuntime,
  name: "node (as a compiled runtime)",
  compile: build,
  loadsSource: true,
});
