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
 * A `registry.list` page is cut by the bytes its reply carries, not by the bytes stored: another
 * writer may leave bytes that are not UTF-8 in an object (an operator's tool), which decode to
 * U+FFFD, three bytes each in the answer. Counting the stored bytes, a page of such objects came
 * to up to 1.5 × max_payload, the reply could not be sent, and the kind could not be listed.
 */
describe("registry.list pages of objects stored with bytes that are not UTF-8", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const COUNT = 30;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    expect((await reg.api.ns().create("environments", envBody("py"))).status).to.equal(201);
    // ~60 KB each of "~", then each "~" byte replaced in Redis by 0xFF (same stored length).
    const filler = "~".repeat(3_000);
    const env: Record<string, string> = {};
    for (let v = 0; v < 20; v++) env[`V${v}`] = filler;
    for (let i = 0; i < COUNT; i++) {
      const res = await reg.api
        .ns()
        .create("functions", fnBody(`f-${String(i).padStart(2, "0")}`, "py", { env }));
      expect(res.status, JSON.stringify(res.body).slice(0, 200)).to.equal(201);
    }
    const keys = await stack.client.keys("*obj:functions:*");
    expect(keys).to.have.length(COUNT);
    for (const key of keys) {
      const raw = (await stack.client.getBuffer(key))!;
      for (let j = 0; j < raw.length; j++) if (raw[j] === 0x7e) raw[j] = 0xff;
      await stack.client.set(key, raw);
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
      expect(reply.skipped ?? []).to.deep.equal([]);
      for (const o of reply.items) {
        expect((o.spec as { env: Record<string, string> }).env.V0).to.equal("\ufffd".repeat(3_000));
        names.push(o.metadata.name);
      }
      token = reply.continue;
      pages++;
    } while (token !== undefined && pages < 50);
    expect(names).to.have.length(COUNT);
  });
});
