import { expect } from "chai";
import { startEchoGateway, type EchoGateway } from "./echo-gateway";
import { RawClient } from "./raw-http";

/**
 * A function may answer before it has read the request's body (a refusal, a redirect, an upload
 * it does not want). The client's connection must go on to its next request: node's server
 * treats a body someone listened to as consumed and never drains its rest, so a kept-alive
 * client's next request sat behind the unread bytes and was never answered (found by the
 * load-balancer canary: nginx answered 504).
 */
for (const frontend of ["node", "own"] as const)
  describe(`gateway answering before the body is read (${frontend} front end)`, function () {
    this.timeout(60_000);
    let g: EchoGateway;
    before(async () => {
      g = await startEchoGateway(frontend, { FIZZ_MAX_BODY_BYTES: String(64 << 20) });
    });
    after(async () => g?.close());

    for (const size of [1 << 20, 4 << 20])
      it(`serves the next request on the connection after an early answer to a ${size} B upload`, async () => {
        const c = new RawClient(g.port);
        try {
          for (let i = 0; i < 5; i++) {
            const head =
              `PUT /function/lb/echo?id=a${i}&early=1 HTTP/1.1\r\nHost: x\r\n` +
              `Content-Length: ${size}\r\n\r\n`;
            c.send(Buffer.concat([Buffer.from(head), Buffer.alloc(size, 97)]));
            const r1 = await c.readReply({ timeoutMs: 5000 });
            expect(r1.status, `round ${i}: the upload's answer`).to.equal(200);
            expect(r1.headers["x-echo-id"]).to.equal(`a${i}`);
            c.send(`GET /function/lb/echo?id=b${i}&size=3 HTTP/1.1\r\nHost: x\r\n\r\n`);
            const r2 = await c.readReply({ timeoutMs: 5000 }).catch((e: Error) => {
              throw new Error(`round ${i}: the next request was not answered: ${e.message}`);
            });
            expect(r2.status, `round ${i}`).to.equal(200);
            expect(r2.headers["x-echo-id"]).to.equal(`b${i}`);
          }
        } finally {
          c.destroy();
        }
      });
  });
