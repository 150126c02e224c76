// The Node runtime when nobody reads its stdout or stderr any more (the process backend that held
// the pipes is gone, a log shipper died): what the runtime itself writes there must not take the
// instance down. A write to a pipe whose reader is gone fails (EPIPE) and the stream emits
// "error", which without a listener is thrown: plain Node's console guards its own writes, and the
// runtime's writes (its log lines, the call markers) must be guarded as well. A real process, real
// HTTP; the test closes its end of the pipes.
import { expect } from "chai";
import { type Runtime, eventually, request, sleep } from "../../contract/harness.js";
import { push } from "../../contract/runtime-contract.js";
import { nodeRuntime } from "./fixtures.js";

/** Prints a line on both streams, then answers once `ms` have passed. */
const PRINTER = {
  filename: "printer.js",
  source: `module.exports = async ({ query: { ms } }) => {
    console.log("out");
    console.error("err");
    await new Promise((r) => setTimeout(r, Number(ms)));
    return "ok";
  };\n`,
};

describe("node runtime: its stdout and stderr closed by their reader", function () {
  this.timeout(20_000);
  let rt: Runtime;
  afterEach(() => rt.kill());

  /** Whether the process has exited, without waiting for it. */
  async function gone(): Promise<boolean> {
    return Promise.race([rt.exited.then(() => true), sleep(200).then(() => false)]);
  }

  it("goes on serving with its stderr closed before the specialize: what it writes there is lost", async () => {
    // The specialized line is the first write to fail; the function's prints come after it.
    rt = await nodeRuntime.start({ FIZZ_WARM_UP: "0", FIZZ_INSTANCE_ID: "inst-1" });
    rt.proc.stderr?.destroy();
    expect((await push(rt, PRINTER)).status).to.equal(200);
    expect(await gone()).to.equal(false);
    const headers = { "x-fizz-instance": "inst-1", "x-request-id": "call-1" };
    for (let i = 0; i < 3; i++) {
      const res = await request(rt.url, { path: "/?ms=0", headers });
      expect(res.status, res.text).to.equal(200);
    }
    expect(await gone()).to.equal(false);
    expect(rt.stdout()).to.include("out\n");
  });

  it("goes on serving after a call that printed ends with its streams closed meanwhile", async () => {
    // The call printed with its request id: its end writes the streams' no-call markers
    // (call-marker.mjs), the first writes to meet the closed pipes.
    rt = await nodeRuntime.start({ FIZZ_WARM_UP: "0", FIZZ_INSTANCE_ID: "inst-1" });
    expect((await push(rt, PRINTER)).status).to.equal(200);
    const headers = { "x-fizz-instance": "inst-1", "x-request-id": "call-1" };
    // Closed while the call waits (on a machine too slow for that, its end's markers go out
    // before the close, and the next call's prints are the first writes to fail instead).
    const call = request(rt.url, { path: "/?ms=600", headers });
    await eventually(() => rt.stdout().includes("out\n") && rt.stderr().includes("err\n"), 10_000);
    rt.proc.stdout?.destroy();
    rt.proc.stderr?.destroy();
    expect((await call).status).to.equal(200);
    expect(await gone()).to.equal(false);
    const next = await request(rt.url, { path: "/?ms=0", headers });
    expect(next.status, next.text).to.equal(200);
    expect(await gone()).to.equal(false);
  });
});
