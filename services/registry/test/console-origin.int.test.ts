import http from "node:http";
import { expect } from "chai";
import {
  envBody,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

/**
 * A write as a browser sends it, with the Host and Origin it would send. DNS rebinding is a page
 * at http://rebound.example:<port> whose name now resolves to the registry: the browser then sends
 * that name as both Origin and Host, so "Origin equals Host" alone proves nothing about who asks.
 */
function post(
  port: number,
  host: string,
  origin: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: string }> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path,
        headers: { host, origin, "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

describe("console same-origin writes on a registry without tokens (FIZZ_AUTH_DISABLED=true)", function () {
  this.timeout(60_000);
  let stack: Stack;
  let reg: Running;
  const envs = "/v1/namespaces/default/environments";

  before(async () => {
    stack = await startStack();
    const env = registryEnv(stack, { FIZZ_AUTH_DISABLED: "true" });
    delete env.FIZZ_ADMIN_TOKEN;
    delete env.FIZZ_READ_TOKEN;
    reg = await startRegistry(env);
  });

  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("refuses a write from a page rebound to the registry by DNS, and creates nothing", async () => {
    const port = reg.svc.port;
    for (const name of [`rebound.example:${port}`, `127.0.0.1.nip.example:${port}`]) {
      const res = await post(port, name, `http://${name}`, envs, envBody("rebound"));
      expect(res.status, name).to.equal(403);
      expect(JSON.parse(res.body)).to.deep.nested.include({ "error.field": "Origin" });
    }
    const list = await reg.api.as(null).call("GET", envs);
    expect(list.body.items).to.deep.equal([]);
  });

  it("still takes the console's own write when it is served on an address no site can rebind", async () => {
    const port = reg.svc.port;
    const host = `127.0.0.1:${port}`;
    const res = await post(port, host, `http://${host}`, envs, envBody("own"));
    expect(res.status, res.body).to.equal(201);
    const local = await post(
      port,
      `localhost:${port}`,
      `http://localhost:${port}`,
      envs,
      envBody("own-local"),
    );
    expect(local.status, local.body).to.equal(201);
  });
});
