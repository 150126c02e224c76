import { expect } from "chai";
import { Codecs, subjects, type FunctionObject } from "@fizz/events";
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

const COUNT = 30;

interface PageCase {
  /** Each function's environment variables (~60 KB of text per function). */
  env: Record<string, string>;
  /** What the test does to the stored objects after creating them. */
  alter?: (stack: Stack) => Promise<void>;
  /** Checks each listed object. */
  item?: (o: FunctionObject) => void;
  /** The listing must take more than one page. */
  severalPages?: boolean;
}

/**
 * Creates COUNT functions, lists them over `registry.list` page by page, and asserts every page
 * fits the connection's max_payload, nothing is skipped, and every function is listed.
 */
function describePages(title: string, c: PageCase): void {
  describe(title, () => {
    let stack: Stack;
    let reg: Running;
    let nc: NatsConnection;

    before(async () => {
      stack = await startStack();
      reg = await startRegistry(registryEnv(stack));
      nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
      expect((await reg.api.ns().create("environments", envBody("py"))).status).to.equal(201);
      for (let i = 0; i < COUNT; i++) {
        const name = `f-${String(i).padStart(2, "0")}`;
        const res = await reg.api.ns().create("functions", fnBody(name, "py", { env: c.env }));
        expect(res.status, JSON.stringify(res.body).slice(0, 200)).to.equal(201);
      }
      await c.alter?.(stack);
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
        const req = {
          kind: "functions" as const,
          limit: 100,
          ...(token ? { continue: token } : {}),
        };
        const msg = await nc.request(subject, Codecs.registryList.request.encode(req, "test"), {
          timeout: 10_000,
        });
        expect(msg.data.length).to.be.at.most(max);
        const reply = Codecs.registryList.reply.decode(msg.data).data;
        expect(reply.skipped ?? []).to.deep.equal([]);
        for (const o of reply.items) {
          c.item?.(o as FunctionObject);
          names.push(o.metadata.name);
        }
        token = reply.continue;
        pages++;
      } while (token !== undefined && pages < 50);
      expect(names).to.have.length(COUNT);
      if (c.severalPages) expect(pages).to.be.greaterThan(1);
    });
  });
}

/**
 * A `registry.list` page is cut at half the connection's max_payload, counted in the bytes the
 * reply carries (UTF-8), not in string length: an object's text of non-ASCII characters (an
 * environment variable in Japanese) is up to three bytes per character, so a page cut by length
 * was up to 1.5 × max_payload, and the reply could not be sent: the kind could not be listed.
 */
describePages("registry.list pages of non-ASCII objects", {
  // ~60 KB of UTF-8 each, ~20,000 UTF-16 units: 25 fit half a MB by length, 1.5 MB by bytes.
  env: { BIG: "語".repeat(20_000) },
  severalPages: true,
});

/**
 * A `registry.list` page is cut by the bytes its reply carries, not by the bytes stored: another
 * writer may leave bytes that are not UTF-8 in an object (an operator's tool), which decode to
 * U+FFFD, three bytes each in the answer. Counting the stored bytes, a page of such objects came
 * to up to 1.5 × max_payload, the reply could not be sent, and the kind could not be listed.
 */
describePages("registry.list pages of objects stored with bytes that are not UTF-8", {
  // ~60 KB each of "~", then each "~" byte replaced in Redis by 0xFF (same stored length).
  env: Object.fromEntries(Array.from({ length: 20 }, (_, v) => [`V${v}`, "~".repeat(3_000)])),
  alter: async (stack) => {
    const keys = await stack.client.keys("*obj:functions:*");
    expect(keys).to.have.length(COUNT);
    for (const key of keys) {
      const raw = (await stack.client.getBuffer(key))!;
      for (let j = 0; j < raw.length; j++) if (raw[j] === 0x7e) raw[j] = 0xff;
      await stack.client.set(key, raw);
    }
  },
  item: (o) => {
    expect((o.spec as { env: Record<string, string> }).env.V0).to.equal("\ufffd".repeat(3_000));
  },
});
