import http from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { expect } from "chai";
import { call } from "./upstream-fixtures";

/** Reuse of an upstream connection after a body written whole whose stream had not ended (upstream-body.ts). */

describe("upstream connection reused once its body was written whole", () => {
  for (const mode of ["reads-all", "answers-at-head"] as const) {
    it(`a real instance (${mode}) sees exact bodies on a reused connection`, async () => {
      const seen: { url: string; len: number; sum: number }[] = [];
      let conns = 0;
      const server = http.createServer((req, res) => {
        let len = 0;
        let sum = 0;
        req.on("data", (c: Buffer) => {
          len += c.length;
          for (const b of c) sum = (sum + b) % 65521;
        });
        req.on("end", () => {
          seen.push({ url: req.url ?? "", len, sum });
          if (mode === "reads-all") res.end("ok");
        });
        if (mode === "answers-at-head") res.end("ok");
      });
      server.on("connection", () => conns++);
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      try {
        const size = 300_000;
        const data = Buffer.alloc(size, 7);
        let pushed = 0;
        // All bytes pushed, 'end' never emitted (as a client's body whose end is pending).
        const body = new Readable({
          read() {
            if (pushed < size) {
              const n = Math.min(16384, size - pushed);
              this.push(data.subarray(pushed, pushed + n));
              pushed += n;
            }
          },
        });
        const a = await call(url, { method: "POST", path: "/a", body, bodyLength: size });
        expect(a.status).to.equal(200);
        const small = Buffer.from("0123456789");
        const b = await call(url, { method: "POST", path: "/b", body: small, bodyLength: 10 });
        expect(b.status).to.equal(200);
        const c = await call(url, { method: "GET", path: "/c" });
        expect(c.status).to.equal(200);
        await new Promise((r) => setTimeout(r, 50));
        expect(seen.map((s) => `${s.url}:${s.len}`)).to.deep.equal([`/a:${size}`, "/b:10", "/c:0"]);
        expect(seen[0]?.sum).to.equal((7 * size) % 65521);
      } finally {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
      // informative only
      expect(conns).to.be.greaterThan(0);
    });
  }
});
