import type http from "node:http";
import net from "node:net";
import type { Readable } from "node:stream";
import { expect } from "chai";
import { BodySource } from "../src/front-door/body";
import { collectBytes, listen, until } from "./front-ends";

/**
 * The client's body as the proxy takes it (body.ts), on both front ends, with real sockets: whole
 * when the client sent it all with its head, streamed when it is still coming.
 */
interface Seen {
  whole: Buffer | undefined;
  replays: string[];
  replayable: boolean;
}

const collect = async (stream: Readable): Promise<string> =>
  (await collectBytes(stream)).toString();

/** A server whose handler takes the body as the proxy does, after the turn that parsed the head. */
async function serve(
  frontend: "node" | "own",
  replayLimit: number,
): Promise<{ port: number; seen: Promise<Seen>; close(): Promise<void> }> {
  let done!: (s: Seen) => void;
  const seen = new Promise<Seen>((r) => (done = r));
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const length = Number(req.headers["content-length"]);
    const body = new BodySource(req, 1024 * 1024, replayLimit, 0, length);
    // The proxy dispatches after its lease lookup's await, not inside the parser's callback.
    setImmediate(() => {
      const whole = body.whole();
      void (async () => {
        const replays = [await collect(body.open()), await collect(body.open())];
        done({ whole, replays, replayable: body.replayable });
        res.end("ok");
      })();
    });
  };
  const server = await listen(frontend, handler);
  return { ...server, seen };
}

/** Sends the head, then the body in `parts`, `gapMs` apart; resolves with the answer's status line. */
function post(port: number, body: string, parts: number, gapMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    let got = "";
    sock.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (got.includes("\r\n\r\n")) {
        resolve(got.split("\r\n")[0]!);
        sock.destroy();
      }
    });
    sock.on("error", reject);
    const head = `POST /f HTTP/1.1\r\nhost: x\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;
    const size = Math.ceil(body.length / parts);
    const pieces = Array.from({ length: parts }, (_, i) => body.slice(i * size, (i + 1) * size));
    if (gapMs === 0) {
      sock.write(head + pieces.join(""));
      return;
    }
    sock.write(head);
    let i = 0;
    const next = (): void => {
      if (i < pieces.length) sock.write(pieces[i++]!);
      if (i < pieces.length) setTimeout(next, gapMs);
    };
    setTimeout(next, gapMs);
  });
}

for (const frontend of ["own", "node"] as const) {
  describe(`request body source (${frontend} front end)`, () => {
    it("takes a body sent with its head whole, and gives the same bytes to every attempt", async () => {
      const s = await serve(frontend, 256 * 1024);
      try {
        const body = "x".repeat(512) + "ünïcödé";
        expect(await post(s.port, body, 1, 0)).to.equal("HTTP/1.1 200 OK");
        const seen = await s.seen;
        expect(seen.whole?.toString()).to.equal(body);
        expect(seen.replays).to.deep.equal([body, body]);
        expect(seen.replayable).to.equal(true);
      } finally {
        await s.close();
      }
    });

    it("streams a body still coming when the request is proxied, every byte of it", async () => {
      const s = await serve(frontend, 256 * 1024);
      try {
        const body = "abcdefghij".repeat(30);
        expect(await post(s.port, body, 3, 40)).to.equal("HTTP/1.1 200 OK");
        const seen = await s.seen;
        expect(seen.whole).to.equal(undefined);
        expect(seen.replays).to.deep.equal([body, body]);
      } finally {
        await s.close();
      }
    });

    it("reads the client's next request after a body past the request's buffer that its handler read late", async () => {
      // A cold start's wait: the body (20 KiB, over a stream's 16 KiB buffer) is all in before
      // anyone reads it, so the front end stops reading the socket for it meanwhile.
      const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
        setTimeout(() => {
          let n = 0;
          req.on("data", (c: Buffer) => (n += c.length));
          req.on("end", () => res.end(`${req.url} ${n}`));
        }, 30);
      };
      const server = await listen(frontend, handler);
      const sock = net.connect(server.port, "127.0.0.1");
      try {
        let got = "";
        sock.on("data", (d: Buffer) => (got += d.toString("latin1")));
        const body = "z".repeat(20_000);
        sock.write(`POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        await until(() => got.includes("/a 20000"));
        sock.write("GET /b HTTP/1.1\r\nhost: x\r\n\r\n");
        await until(() => got.includes("/b 0"));
      } finally {
        sock.destroy();
        await server.close();
      }
    });

    it("streams a whole body larger than a replay may hold (it is not kept for a retry)", async () => {
      const s = await serve(frontend, 100);
      try {
        const body = "y".repeat(300);
        expect(await post(s.port, body, 1, 0)).to.equal("HTTP/1.1 200 OK");
        const seen = await s.seen;
        expect(seen.whole).to.equal(undefined);
        expect(seen.replays[0]).to.equal(body);
        expect(seen.replayable).to.equal(false);
      } finally {
        await s.close();
      }
    });
  });
}

describe("request body source (own front end: when the handler starts)", () => {
  async function heads(): Promise<{
    port: number;
    seen: { complete: boolean; whole: string | undefined }[];
    close(): Promise<void>;
  }> {
    const seen: { complete: boolean; whole: string | undefined }[] = [];
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const length = Number(req.headers["content-length"] ?? 0);
      const body = new BodySource(req, 1024 * 1024, 256 * 1024, 0, length);
      // Synchronously, as the proxy's warm path dispatches.
      seen.push({ complete: req.complete, whole: body.whole()?.toString() });
      void collect(body.open()).then((all) => res.end(all));
    };
    const server = await listen("own", handler);
    return { ...server, seen };
  }

  it("starts the handler with the request complete when its small body came with its head", async () => {
    const s = await heads();
    try {
      expect(await post(s.port, "hello world", 1, 0)).to.equal("HTTP/1.1 200 OK");
      expect(s.seen).to.deep.equal([{ complete: true, whole: "hello world" }]);
    } finally {
      await s.close();
    }
  });

  it("starts the handler at the read's end when the body is still coming, and streams it", async () => {
    const s = await heads();
    try {
      expect(await post(s.port, "abcdefghij".repeat(5), 2, 40)).to.equal("HTTP/1.1 200 OK");
      expect(s.seen).to.deep.equal([{ complete: false, whole: undefined }]);
    } finally {
      await s.close();
    }
  });

  it("starts the handler before the body for Expect: 100-continue (its client waits for it)", async () => {
    const s = await heads();
    const sock = net.connect(s.port, "127.0.0.1");
    try {
      let got = "";
      sock.on("data", (d: Buffer) => (got += d.toString("latin1")));
      sock.write(
        "POST /f HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n",
      );
      await until(() => got.includes("100 Continue"));
      sock.write("hello");
      await until(() => got.includes("\r\n\r\nhello"));
      expect(s.seen).to.deep.equal([{ complete: false, whole: undefined }]);
    } finally {
      sock.destroy();
      await s.close();
    }
  });
});
