import { expect } from "chai";
import { Codecs, subjects } from "@fizz/events";
import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

/**
 * A `registry.list` page is cut at half the connection's max_payload, counted in the bytes the
 * reply carries (UTF-8), not in string length: an object's text of non-ASCII characters (an
 * environment variable in Japanese) is up to three bytes per character, so a page cut by length
 * was up to 1.5 × max_payload, and the reply could not be sent: the kind could not be listed.
 */
describe("registry.list pages of non-ASCII objects", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const COUNT = 30;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    expect((await reg.api.ns().create("environments", envBody("py"))).status).to.equal(201);
    // ~60 KB of UTF-8 each, ~20,000 UTF-16 units: 25 fit half a MB by length, 1.5 MB by bytes.
    const big = "語".repeat(20_000);
    for (let i = 0; i < COUNT; i++) {
      const res = await reg.api
        .ns()
        .create(
          "functions",
          fnBody(`f-${String(i).padStart(2, "0")}`, "py", { env: { BIG: big } }),
        );
      expect(res.status, JSON.stringify(res.body).slice(0, 200)).to.equal(201);
    }
  });

  after(async () => {
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("lists every object in pages that each fit max_payload", async () => {
    const max = nc.info!.max_payload;
    const subject = subjects("fizz.v1").registryList;
    const names: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const req = { kind: "functions" as const, limit: 100, ...(token ? { continue: token } : {}) };
      const msg = await nc.request(subject, Codecs.registryList.request.encode(req, "test"), {
        timeout: 10_000,
      });
      expect(msg.data.length).to.be.at.most(max);
      const reply = Codecs.registryList.reply.decode(msg.data).data;
      names.push(...reply.items.map((o) => o.metadata.name));
      token = reply.continue;
      pages++;
    } while (token !== undefined && pages < 50);
    expect(names).to.have.length(COUNT);
    expect(pages).to.be.greaterThan(1);
  });
});
