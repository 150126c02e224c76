// When the C# runtime gives a call's concurrency slot back (docs/runtime-contract.md: free by the
// time the client has the answer): when the function is done, before its answer is written, so an
// answer whose write waits on a client that does not read yet holds no slot, a function error's
// included (freed after that write, both tests get 429). Concurrency 1: one call runs, one waits,
// the next gets 429.
import { expect } from "chai";
import { packageArchive } from "../../contract/archive.js";
import { type Runtime, specializeArchive } from "../../contract/harness.js";
import { ME } from "../../contract/runtime-contract.js";
import { callsDuringSlowRead } from "../../contract/slot-probes.js";
import { compile, dotnetRuntime } from "./fixtures.js";

const BIG = 16 * 1024 * 1024; // far more than loopback's socket buffers hold for a client not reading

const SLOT = `using System;
using Fission.DotNetCore.Api;

public class FissionFunction
{
    public object Execute(FissionContext context)
    {
        string kind;
        context.Query.TryGetValue("kind", out kind);
        switch (kind)
        {
            case "large": return new byte[${BIG}];
            case "large-error": throw new InvalidOperationException(new string('x', ${BIG}));
            default: return "quick";
        }
    }
}
`;

describe("dotnet runtime: a call's concurrency slot", function () {
  this.timeout(180_000);
  let rt: Runtime;
  before(async () => {
    const archive = await packageArchive(await compile({ "slot.cs": SLOT }));
    rt = await dotnetRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
    const res = await specializeArchive(rt, archive, { concurrency: 1 });
    expect(res.status, res.text).to.equal(200);
  });
  after(() => rt.kill());

  it("is free while a large answer's write waits on a client that does not read yet", async () => {
    const { next, bodyBytes, status } = await callsDuringSlowRead(rt, ME, "/?kind=large", "/");
    expect(next).to.deep.equal([200, 200]);
    expect(status).to.equal("HTTP/1.1 200 OK");
    expect(bodyBytes).to.equal(BIG);
  });

  it("is free while a large FUNCTION_ERROR answer's write waits on a client that does not read yet", async () => {
    const slow = await callsDuringSlowRead(rt, ME, "/?kind=large-error", "/");
    expect(slow.next).to.deep.equal([200, 200]);
    expect(slow.status).to.equal("HTTP/1.1 500 Internal Server Error");
    expect(slow.bodyBytes).to.be.greaterThan(BIG);
  });
});
