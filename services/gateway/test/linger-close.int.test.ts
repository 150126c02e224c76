import net from "node:net";
import { expect } from "chai";
import { startEchoGateway, type EchoGateway } from "./echo-gateway";

/**
 * Sends a whole upload before reading anything (as a load balancer with request buffering on
 * does), then reads what the gateway answered until the connection ends.
 */
async function uploadThenRead(
  port: number,
  head: string,
  body: Buffer,
): Promise<{ answer: string; writeError: string | undefined; readError: string | undefined }> {
  const s = net.connect(port, "127.0.0.1");
  s.pause();
  let writeError: string | undefined;
  let readError: string | undefined;
  s.on("error", (e: NodeJS.ErrnoException) => {
    if (writeError === undefined && !s.readableFlowing) writeError = e.code ?? e.message;
    else readError ??= e.code ?? e.message;
  });
  await new Promise<void>((resolve) => s.once("connect", () => resolve()));
  await new Promise<void>((resolve) => {
    s.write(head);
    // In pieces, as a proxy streams a buffered body: the gateway answers after the first.
    let off = 0;
    const next = () => {
      if (off >= body.length || s.destroyed) return resolve();
      const piece = body.subarray(off, off + 256 * 1024);
      off += piece.length;
      s.write(piece, () => setTimeout(next, 2));
    };
    next();
    s.once("close", () => resolve());
  });
  const parts: Buffer[] = [];
  s.on("data", (d: Buffer) => parts.push(d));
  s.resume();
  await new Promise<void>((resolve) => {
    if (s.destroyed) return resolve();
    s.once("close", () => resolve());
    s.once("end", () => resolve());
    setTimeout(resolve, 10_000);
  });
  s.destroy();
  return { answer: Buffer.concat(parts).toString("latin1"), writeError, readError };
}

/**
 * A refused upload (413, or an answer before the body was read that closes the connection) must
 * reach a client that sends its whole body before it reads. Closing right after the answer, with
 * the client's bytes still arriving, makes the kernel reset the connection, which throws away the
 * answer not yet read: behind nginx the client got 502 instead of 413 (the load-balancer canary).
 * The gateway lingers: it ends its side, reads and drops the rest for a while, then closes.
 */
for (const frontend of ["node", "own"] as const)
  describe(`gateway closing after a refused upload (${frontend} front end)`, function () {
    this.timeout(90_000);
    let g: EchoGateway;
    before(async () => {
      g = await startEchoGateway(frontend, { FIZZ_MAX_BODY_BYTES: String(1 << 20) });
    });
    after(async () => g?.close());

    it("delivers the 413 of an over-limit upload to a client that sends it all before reading", async () => {
      for (let i = 0; i < 5; i++) {
        const size = 4 << 20;
        const r = await uploadThenRead(
          g.port,
          `PUT /function/lb/echo?id=t${i} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`,
          Buffer.alloc(size, 97),
        );
        expect(r.answer.slice(0, 12), `round ${i}: ${JSON.stringify(r)}`.slice(0, 300)).to.equal(
          "HTTP/1.1 413",
        );
        expect(r.writeError, `round ${i}`).to.equal(undefined);
      }
    });

    it("delivers the 413 of a chunked upload that outgrows the limit", async () => {
      const piece = Buffer.alloc(64 * 1024, 98);
      const chunk = Buffer.concat([
        Buffer.from(`${piece.length.toString(16)}\r\n`),
        piece,
        Buffer.from("\r\n"),
      ]);
      const body = Buffer.concat([
        ...Array.from({ length: 40 }, () => chunk),
        Buffer.from("0\r\n\r\n"),
      ]);
      for (let i = 0; i < 3; i++) {
        const r = await uploadThenRead(
          g.port,
          `POST /function/lb/echo?id=c${i} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`,
          body,
        );
        expect(r.answer.slice(0, 12), `round ${i}: ${JSON.stringify(r)}`.slice(0, 300)).to.equal(
          "HTTP/1.1 413",
        );
        expect(r.writeError, `round ${i}`).to.equal(undefined);
      }
    });

    it("closes a refused upload's connection that keeps sending, after lingering", async () => {
      // Half-open allowed: the gateway's FIN must not end this side (a client that keeps sending).
      const s = net.connect({ port: g.port, host: "127.0.0.1", allowHalfOpen: true });
      s.on("error", () => undefined);
      let answer = "";
      s.on("data", (d: Buffer) => (answer += d.toString("latin1")));
      const closed = new Promise<number>((resolve) => s.once("close", () => resolve(Date.now())));
      s.write(`PUT /function/lb/echo HTTP/1.1\r\nHost: x\r\nContent-Length: ${1 << 30}\r\n\r\n`);
      const started = Date.now();
      const filler = Buffer.alloc(16 * 1024, 99);
      const timer = setInterval(() => {
        if (!s.destroyed) s.write(filler);
      }, 5);
      try {
        const at = await Promise.race([
          closed,
          new Promise<number>((r) => setTimeout(() => r(-1), 20_000)),
        ]);
        expect(answer.slice(0, 12)).to.equal("HTTP/1.1 413");
        expect(at, "the connection was still open after 20 s").to.not.equal(-1);
        // It lingers (LINGER_MS, 5 s) rather than cutting at once or never.
        expect(at - started).to.be.within(3000, 15_000);
      } finally {
        clearInterval(timer);
        s.destroy();
      }
    });
  });
