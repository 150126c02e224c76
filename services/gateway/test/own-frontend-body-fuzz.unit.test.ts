import type http from "node:http";
import net from "node:net";
import { expect } from "chai";
import { BodySource } from "../src/front-door/body";
import { collectBytes as collect, listen, parserProto } from "./front-ends";

/** Random (seeded) pipelines and splits on the own front end: answers in order with exact bodies. */
const consume = parserProto?.consume;

let seed = 12345;
function rnd(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}

function digest(b: Buffer): string {
  let h = 0;
  for (const x of b) h = (h * 31 + x) >>> 0;
  return `${b.length}.${h}`;
}

for (const reads of ["consume", "data"] as const) {
  describe(`random pipelines of bodies around the 16 KiB and 64 KiB edges keep order and bytes (own, ${reads})`, () => {
    before(() => {
      if (reads === "data" && parserProto) parserProto.consume = undefined;
    });
    after(() => {
      if (parserProto) parserProto.consume = consume;
    });
    for (let round = 0; round < 12; round++) {
      it(`answers round ${round} in order with exact bodies, replays equal`, async () => {
        const starts: string[] = [];
        const handler: http.RequestListener = (req, res) => {
          starts.push(req.url ?? "");
          const length = Number(req.headers["content-length"] ?? 0);
          const body = length > 0 ? new BodySource(req, 1 << 20, 256 * 1024, 0, length) : null;
          const delay = rnd(4) === 0 ? rnd(30) : 0;
          const go = (): void => {
            const w = body?.whole();
            const p =
              body === null
                ? Promise.resolve(Buffer.alloc(0))
                : w
                  ? Promise.resolve(w)
                  : collect(body.open());
            void p.then(async (b) => {
              const again = body === null ? b : await collect(body.open());
              const out = `<${req.url} ${digest(b)} ${b.equals(again) ? "same" : "DIFF"}>`;
              res.end(out);
            });
          };
          if (delay > 0 || rnd(2) === 0) setTimeout(go, delay);
          else go();
        };
        const server = await listen("own", handler);
        const sock = net.connect(server.port, "127.0.0.1");
        let got = "";
        sock.on("data", (d: Buffer) => (got += d.toString("latin1")));
        sock.on("error", () => undefined);
        try {
          const n = 3 + rnd(6);
          const expected: string[] = [];
          const parts: Buffer[] = [];
          for (let i = 0; i < n; i++) {
            const sizes = [0, 1, 5, 100, 4000, 16383, 16385, 30000, 65535, 65536, 65537, 70000];
            const size = sizes[rnd(sizes.length)]!;
            const body = Buffer.alloc(size);
            for (let j = 0; j < size; j++) body[j] = (j * 7 + i) & 0xff;
            const url = `/r${i}`;
            const head =
              size > 0 || rnd(2) === 0
                ? `POST ${url} HTTP/1.1\r\nhost: x\r\ncontent-length: ${size}\r\n\r\n`
                : `GET ${url} HTTP/1.1\r\nhost: x\r\n\r\n`;
            parts.push(Buffer.from(head, "latin1"), body);
            expected.push(`<${url} ${digest(body)} same>`);
          }
          const all = Buffer.concat(parts);
          // random split points, random gaps
          let off = 0;
          while (off < all.length) {
            const step = rnd(3) === 0 ? all.length : 1 + rnd(Math.min(all.length, 40000));
            sock.write(all.subarray(off, off + step));
            off += step;
            if (rnd(2) === 0) await new Promise((r) => setTimeout(r, rnd(15)));
          }
          const end = Date.now() + 6000;
          while (!got.includes(`<\/r${n - 1} `) && Date.now() < end)
            await new Promise((r) => setTimeout(r, 5));
          const answers = [...got.matchAll(/<[^>]*>/g)].map((m) => m[0]);
          expect(answers).to.deep.equal(expected);
          expect(starts).to.deep.equal(expected.map((_, i) => `/r${i}`));
        } finally {
          sock.destroy();
          await server.close();
        }
      });
    }
  });
}
