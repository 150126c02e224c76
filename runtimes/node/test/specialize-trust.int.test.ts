// The runtimes' side of containment (docs/runtime-contract.md): only the holder of the instance's
// specialize token may load code into it, the token is gone before user code runs, and code that
// does not hash to its digest is never loaded. Both runtimes, real processes.
import { createHash } from "node:crypto";
import { expect } from "chai";
import { type Runtime, postJson, request, specializeBody, startRuntime } from "./harness.js";

const TOKEN = "per-instance-token-0123456789abcdef";
const SOURCES = {
  node: {
    filename: "leak.js",
    source: `module.exports = async () => ({ status: 200, body: process.env.FIZZ_SPECIALIZE_TOKEN ?? "absent" });\n`,
  },
  python: {
    filename: "leak.py",
    source: `import os\n\ndef main():\n    return os.environ.get("FIZZ_SPECIALIZE_TOKEN", "absent")\n`,
  },
} as const;

const sha256 = (s: string) => `sha256:${createHash("sha256").update(s).digest("hex")}`;

for (const kind of ["node", "python"] as const) {
  describe(`${kind} runtime: specialize token and code digest`, function () {
    this.timeout(20_000);
    let rt: Runtime;
    const { filename, source } = SOURCES[kind];
    const body = () => ({ ...specializeBody(filename, source), digest: sha256(source) });
    const state = async () => (await request(rt.url, { path: "/healthz" })).json.state as string;

    before(async () => (rt = await startRuntime(kind, { FIZZ_SPECIALIZE_TOKEN: TOKEN })));
    after(() => rt.kill());

    it("refuses a specialize without the token, or with a wrong one, with 401, and stays warm", async () => {
      for (const headers of <Array<Record<string, string>>>[
        {},
        { "x-fizz-specialize-token": "guess" },
        { "x-fizz-specialize-token": "" },
      ]) {
        const res = await postJson(rt.url, "/v2/specialize", body(), headers);
        expect(res.status).to.equal(401);
        expect(res.json.error.code).to.equal("UNAUTHENTICATED");
      }
      expect(await state()).to.equal("warm");
    });

    it("refuses code that does not hash to its digest with 400 DIGEST_MISMATCH, and stays warm", async () => {
      const tampered = { ...body(), digest: sha256("something else") };
      const res = await postJson(rt.url, "/v2/specialize", tampered, {
        "x-fizz-specialize-token": TOKEN,
      });
      expect(res.status).to.equal(400);
      expect(res.json.error).to.include({ code: "DIGEST_MISMATCH", field: "digest" });
      expect(await state()).to.equal("warm");
    });

    it("specializes with the token, and the function cannot see the token", async () => {
      const res = await postJson(rt.url, "/v2/specialize", body(), {
        "x-fizz-specialize-token": TOKEN,
      });
      expect(res.status, res.text).to.equal(200);
      const call = await request(rt.url, { path: "/" });
      expect(call.status).to.equal(200);
      expect(call.text).to.equal("absent");
    });
  });
}
