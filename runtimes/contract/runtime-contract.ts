// One contract suite for every language runtime (docs/runtime-contract.md). Each language's test
// file calls describeRuntimeContract with how to start its runtime and its own user functions
// (runtimes/<language>/test/fixtures.ts), then adds what only that language does.
import { describeCallMarkers } from "./contract-call-markers.js";
import { describeCalls } from "./contract-calls.js";
import { describeConfig } from "./contract-config.js";
import { describeLifecycle } from "./contract-lifecycle.js";
import { describePackages } from "./contract-packages.js";
import { deployer } from "./deploy.js";
import type { RuntimeUnderTest } from "./runtime-under-test.js";

export type {
  PackageFixtures,
  RuntimeFixtures,
  RuntimeUnderTest,
  Source,
} from "./runtime-under-test.js";
export { ME, healthState, push } from "./contract-lifecycle.js";
export { type Deployer, deployer } from "./deploy.js";
export {
  type CoreFixtures,
  type CoreRuntimeUnderTest,
  describeCoreContract,
} from "./contract-core.js";
export type { Files } from "./archive.js";
export {
  type CallMarkers,
  type MarkedRuntime,
  callMarker,
  checkLoadTimeWorker,
  markedRuntime,
  tagLines,
} from "./contract-call-markers.js";

export function describeRuntimeContract(runtime: RuntimeUnderTest): void {
  describe(`${runtime.name} runtime: the runtime contract`, function () {
    this.timeout(20_000);
    const deploy = deployer(runtime);
    describeLifecycle(runtime, deploy);
    describeCalls(runtime, deploy);
    describePackages(runtime, deploy);
    describeConfig(runtime, deploy);
    if (runtime.callMarkers) {
      describeCallMarkers(
        runtime.start,
        (rt, src, o) => deploy.source(rt, src, o),
        runtime.callMarkers,
      );
    }
  });
}
