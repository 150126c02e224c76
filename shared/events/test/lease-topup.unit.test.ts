import { expect } from "chai";
import { Codecs } from "@fizz/events";

/**
 * The top-up fields of scheduler.lease (issue 15) are additive: a message without them decodes as
 * before, an old peer's decoder drops them (zod strips unknown keys), and they round-trip.
 */

const lease = {
  instanceId: "i-1",
  address: "http://127.0.0.1:4000",
  function: { namespace: "default", name: "hello", revision: 2 },
  slots: 1,
  concurrency: 10,
  timeoutMs: 60000,
};

describe("codecs: lease top-up", () => {
  it("round-trips a request with partial and topUp", () => {
    const c = Codecs.schedulerLease.request;
    const req = {
      namespace: "default",
      function: "hello",
      gateway: "gw-1",
      exclude: [],
      failed: [],
      partial: true,
      topUp: { instanceId: "i-1", claim: "2:0:1:s1/3" },
    };
    expect(c.decode(c.encode(req, "gw-1")).data).to.deep.equal(req);
  });

  it("decodes a request of an older gateway without the new fields", () => {
    const c = Codecs.schedulerLease.request;
    const data = c.decode(
      c.encode({ namespace: "default", function: "f", gateway: "g" }, "g"),
    ).data;
    expect(data.partial).to.equal(undefined);
    expect(data.topUp).to.equal(undefined);
  });

  it("round-trips a reply with more, and one without it as before", () => {
    const c = Codecs.schedulerLease.reply;
    const partial = { ...lease, more: "2:0:1:s1/3" };
    expect(c.decode(c.encode({ lease: partial }, "s")).data.lease).to.deep.equal(partial);
    expect(c.decode(c.encode({ lease }, "s")).data.lease).to.deep.equal(lease);
  });

  it("refuses a top-up without its claim", () => {
    const c = Codecs.schedulerLease.request;
    const raw = new TextEncoder().encode(
      JSON.stringify({
        v: 1,
        type: "scheduler.lease.request.v1",
        sender: "g",
        ts: 1,
        data: { namespace: "default", function: "f", gateway: "g", topUp: { instanceId: "i" } },
      }),
    );
    expect(() => c.decode(raw)).to.throw(/claim/);
  });
});
