import type http from "node:http";
import net from "node:net";
import { expect } from "chai";
import {
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  type Harness,
  type Instance,
} from "./harness";
import { until as untilWithin } from "./front-ends";

/** Small bodies sent whole through the real gateway (both front ends): retries, pipelining, client gone. */
function bytes(size: number, salt: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 13 + salt) & 0xff;
  return b;
}

function sum(b: Buffer): string {
  let h = 0;
  for (const x of b) h = (h * 31 + x) >>> 0;
  return `${b.length}.${h}`;
}

const digestEcho: (
  seen: string[],
) => (req: http.IncomingMessage, res: http.ServerResponse) => void = (seen) => (req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const d = `${req.url}:${sum(Buffer.concat(chunks))}`;
    seen.push(d);
    res.end(`<${d}>`);
  });
};

const until = (check: () => boolean, ms = 5000) => untilWithin(check, ms);

/** A request head with a Content-Length, then its body: one write's worth. */
function withBody(method: string, path: string, body: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n`),
    body,
  ]);
}

/** A raw client connection to the gateway, with everything it received so far as latin1. */
function rawClient(port: number): { sock: net.Socket; got: () => string } {
  const sock = net.connect(port, "127.0.0.1");
  let got = "";
  sock.on("data", (d: Buffer) => (got += d.toString("latin1")));
  return { sock, got: () => got };
}

for (const frontend of ["own", "node"] as const) {
  describe(`small bodies sent whole through the gateway (${frontend})`, function () {
    this.timeout(30_000);
    let h: Harness;
    const instances: Instance[] = [];
    const instance = async (id: string, handler?: Parameters<typeof startInstance>[1]) => {
      const i = await startInstance(id, handler);
      instances.push(i);
      return i;
    };
    before(async () => {
      h = await startHarness({
        functions: ["rmis", "rnotspec", "rpipe", "rgone"].map((n) => functionObject(n)),
        triggers: [],
        env: { FIZZ_GATEWAY_FRONTEND: frontend, FIZZ_MAX_BODY_BYTES: String(1024 * 1024) },
      });
    });
    after(async () => {
      closeClients();
      await h?.close();
      await Promise.all(instances.map((i) => i.close()));
    });

    for (const size of [7, 20_000, 65_000]) {
      it(`421 then retry: the second instance gets the same ${size} bytes, then keep-alive goes on`, async () => {
        const seen: string[] = [];
        const wrong = await instance(`rmis-new-${size}`);
        const right = await instance(`rmis-2-${size}`, digestEcho(seen));
        let n = 0;
        h.leases.set("rmis", () =>
          n++ % 2 === 0
            ? leaseOf({ id: `rmis-old-${size}`, address: wrong.address }, "rmis")
            : leaseOf(right, "rmis"),
        );
        const body = bytes(size, 3);
        const { sock, got } = rawClient(h.gateway.port);
        try {
          sock.write(withBody("POST", "/function/rmis/a", body));
          await until(() => got().includes(">"));
          expect(got()).to.include(`</a:${sum(body)}>`);
          const body2 = bytes(5, 9);
          sock.write(withBody("POST", "/function/rmis/b", body2));
          await until(() => got().includes("</b:"));
          expect(got()).to.include(`</b:${sum(body2)}>`);
          expect(wrong.hits).to.equal(0);
        } finally {
          sock.destroy();
        }
      });
    }

    it("503 NOT_SPECIALIZED then retry with a small body: same bytes", async () => {
      const seen: string[] = [];
      const generic = await instance("rns-1", (req, res) => {
        req.resume();
        req.on("end", () => {
          res.writeHead(503, { "content-type": "application/json" });
          res.end(
            JSON.stringify({ error: { code: "NOT_SPECIALIZED", message: "x", retryable: true } }),
          );
        });
      });
      const ok = await instance("rns-2", digestEcho(seen));
      let n = 0;
      h.leases.set("rnotspec", () =>
        n++ % 2 === 0 ? leaseOf(generic, "rnotspec") : leaseOf(ok, "rnotspec"),
      );
      const body = bytes(3000, 1);
      const { sock, got } = rawClient(h.gateway.port);
      try {
        sock.write(withBody("PUT", "/function/rnotspec/x", body));
        await until(() => got().includes(">"));
        expect(got()).to.include(`</x:${sum(body)}>`);
      } finally {
        sock.destroy();
      }
    });

    it("pipelined small-body POSTs: answered in order, exact bodies", async () => {
      const seen: string[] = [];
      const inst = await instance("rpipe-1", (req, res) => {
        const delay = req.url === "/1" ? 80 : 0;
        setTimeout(() => digestEcho(seen)(req, res), delay);
      });
      h.leases.set("rpipe", () => leaseOf(inst, "rpipe"));
      const parts: Buffer[] = [];
      const expected: string[] = [];
      for (let i = 1; i <= 4; i++) {
        const b = bytes(i * 1000, i);
        parts.push(withBody("POST", `/function/rpipe/${i}`, b));
        expected.push(`</${i}:${sum(b)}>`);
      }
      const { sock, got } = rawClient(h.gateway.port);
      try {
        sock.write(Buffer.concat(parts));
        await until(() => got().includes("</4:"));
        expect([...got().matchAll(/<\/\d:[^>]*>/g)].map((m) => m[0])).to.deep.equal(expected);
      } finally {
        sock.destroy();
      }
    });

    it("a client gone after sending its whole small body: the instance's request is aborted", async () => {
      let aborted = false;
      let started = false;
      const inst = await instance("rgone-1", (req, res) => {
        started = true;
        req.resume();
        res.on("close", () => {
          if (!res.writableFinished) aborted = true;
        });
      });
      h.leases.set("rgone", () => leaseOf(inst, "rgone", { timeoutMs: 20_000 }));
      const sock = net.connect(h.gateway.port, "127.0.0.1");
      sock.on("error", () => undefined);
      sock.write("POST /function/rgone HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello");
      await until(() => started);
      sock.destroy();
      await until(() => aborted, 3000);
    });
  });
}
