import http from "node:http";
import { expect } from "chai";
import {
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  triggerObject,
  type Harness,
  type Instance,
} from "./harness";

/** Every byte value, then UTF-8 that is not latin1, then the bytes again reversed. */
function awkwardBytes(size: number): Buffer {
  const out = Buffer.alloc(size);
  const utf8 = Buffer.from("héllo ✓ 𝄞 ", "utf8");
  for (let i = 0; i < size; i++)
    out[i] = i < 256 ? i : i < 256 + utf8.length ? utf8[i - 256]! : 255 - (i % 256);
  return out;
}

function getBytes(port: number, path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}

/**
 * The client gets exactly the instance's bytes, whatever they are (every byte value, UTF-8 that
 * is not latin1), for a body that comes whole with its head (one end()) and for one streamed in
 * chunks. Guards any change to how onData hands a body to node (a string there must be latin1).
 */
describe("gateway proxy: response bytes (real NATS)", function () {
  this.timeout(30_000);
  let h: Harness;
  let inst: Instance;

  before(async () => {
    h = await startHarness({
      functions: [functionObject("bytes")],
      triggers: [triggerObject("bytes", { function: "bytes", prefix: "/bytes" })],
    });
    inst = await startInstance("bytes-1", (req, res) => {
      const q = new URL(req.url ?? "/", "http://x").searchParams;
      const body = awkwardBytes(Number(q.get("size")));
      const piece = Number(q.get("piece") ?? 0);
      if (piece > 0) {
        // No Content-Length: the gateway sends its client chunked, a chunk per piece that
        // comes (a small one inside its size line's string, a large one as it is).
        res.writeHead(200, { "content-type": "application/octet-stream" });
        let at = 0;
        const next = (): void => {
          if (at >= body.length) return void res.end();
          res.write(body.subarray(at, at + piece));
          at += piece;
          setTimeout(next, 2);
        };
        next();
        return;
      }
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": body.length,
      });
      res.end(body);
    });
    h.leases.set("bytes", () => leaseOf(inst, "bytes"));
  });

  after(async () => {
    closeClients();
    await h?.close();
    await inst?.close();
  });

  for (const size of [1, 300, 4095, 4096, 4097, 70_000]) {
    it(`passes a ${size}-byte body byte for byte`, async () => {
      const r = await getBytes(h.gateway.port, `/bytes?size=${size}`);
      expect(r.status).to.equal(200);
      expect(r.body.length).to.equal(size);
      expect(r.body.equals(awkwardBytes(size))).to.equal(true);
    });
  }

  for (const [size, piece] of [
    [600, 300],
    [70_000, 20_000],
  ] as const) {
    it(`passes a ${size}-byte body streamed chunked in ${piece}-byte pieces byte for byte`, async () => {
      const r = await getBytes(h.gateway.port, `/bytes?size=${size}&piece=${piece}`);
      expect(r.status).to.equal(200);
      expect(r.body.length).to.equal(size);
      expect(r.body.equals(awkwardBytes(size))).to.equal(true);
    });
  }
});
