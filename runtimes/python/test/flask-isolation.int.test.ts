// Attacks on the Flask-style path of the Python runtime: oversized requests stay inside the
// runtime's limits before Flask sees them, a header cannot pass for one the gateway sets, and one
// call's request (and g) is gone before the next call runs. A real runtime, real HTTP.
import { expect } from "chai";
import http from "node:http";
import { type Runtime, request, startRuntime } from "../../contract/harness.js";
import { ME, push } from "../../contract/runtime-contract.js";
import { FLASK_KINDS, FLASK_PYTHON, SERVER_SCRIPT, requireFlask } from "./flask-fixtures.js";

// Above the specialize body (the code, base64), which the same limit applies to.
const LIMIT = 16 * 1024;

describe("python runtime: Flask-style functions under attack", function () {
  this.timeout(30_000);
  let rt: Runtime;
  before(async () => {
    requireFlask();
    rt = await startRuntime(
      { name: "python", command: FLASK_PYTHON, script: SERVER_SCRIPT },
      { FIZZ_INSTANCE_ID: "inst-1", FIZZ_MAX_BODY_BYTES: String(LIMIT) },
    );
    const res = await push(rt, FLASK_KINDS);
    expect(res.status, res.text).to.equal(200);
  });
  after(() => rt.kill());

  const get = (path: string, headers: Record<string, string> = {}, agent?: http.Agent) =>
    request(rt.url, { path, headers: { ...ME, ...headers }, ...(agent ? { agent } : {}) });
  const calls = async () => Number((await get("/calls")).text);

  describe("request size", () => {
    it("refuses a body over the limit with 413 before the function (and Flask) runs", async () => {
      const before = await calls();
      const big = "text=" + "x".repeat(LIMIT);
      for (const body of [big, [big.slice(0, 9000), big.slice(9000)]]) {
        const res = await request(rt.url, {
          method: "POST",
          path: "/form",
          headers: { ...ME, "content-type": "application/x-www-form-urlencoded" },
          body,
        });
        expect(res.status).to.equal(413);
        expect(res.error().code).to.equal("PAYLOAD_TOO_LARGE");
      }
      expect(await calls()).to.equal(before + 1); // only the /calls just made
    });

    it("refuses a header line over 64 KiB and more than 100 headers with 431, and keeps serving", async () => {
      const long = await get("/header", { "x-custom": "a".repeat(70_000) });
      expect(long.status).to.equal(431);
      const many: Record<string, string> = {};
      for (let i = 0; i < 120; i++) many[`x-h${i}`] = "v";
      expect((await get("/header", many)).status).to.equal(431);
      expect((await get("/header", { "x-custom": "fine" })).text).to.equal("fine");
    });
  });

  describe("headers the gateway sets", () => {
    it("drops a header spelled with underscores, which WSGI would merge into the gateway's", async () => {
      const forged = await get("/params", { x_fizz_params_id: "forged" });
      expect(forged.object()).to.deep.equal({ header: null, environ: null });
      const both = await get("/params", { x_fizz_params_id: "forged", "x-fizz-params-id": "42" });
      expect(both.object()).to.deep.equal({ header: "42", environ: "42" });
    });
  });

  describe("one call's request is gone before the next", () => {
    for (const then of ["return", "raise", "abort"]) {
      it(`does not carry g into the next call on the same connection (after a ${then})`, async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
          const set = await get(`/g-set?secret=s3cret&then=${then}`, {}, agent);
          expect(set.status).to.equal({ return: 200, raise: 500, abort: 409 }[then]);
          const seen = await get("/g-get", {}, agent);
          expect(seen.localPort).to.equal(set.localPort); // same connection, same server thread
          expect(seen.text).to.equal("None");
        } finally {
          agent.destroy();
        }
      });
    }

    it("gives calls running at the same time each their own request", async () => {
      const [a, b] = await Promise.all([get("/together?id=a"), get("/together?id=b")]);
      expect([a.text, b.text]).to.deep.equal(["a", "b"]);
    });
  });
});
