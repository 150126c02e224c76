import net from "node:net";

/** One HTTP response as read off the wire. */
export interface RawReply {
  status: number;
  /** Lower-case names; repeated ones joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** The head as sent (status line and header lines). */
  head: string;
}

/**
 * A client on a plain socket, for what node's http client hides: pipelining, interim 100
 * answers, the exact framing, the server closing the connection. Responses are parsed off the
 * bytes as they come (Content-Length, chunked, or to the close).
 */
export class RawClient {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  isClosed = false;
  /** Received, not yet taken: joined only when read (a large body arrives in many pieces). */
  private parts: Buffer[] = [];
  private size = 0;
  private wake: (() => void) | undefined;

  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.on("error", () => undefined);
    this.socket.on("data", (d: Buffer) => {
      this.parts.push(d);
      this.size += d.length;
      this.wake?.();
    });
    this.closed = new Promise((resolve) =>
      this.socket.on("close", () => {
        this.isClosed = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  private get buf(): Buffer {
    if (this.parts.length !== 1) this.parts = [Buffer.concat(this.parts, this.size)];
    return this.parts[0] as Buffer;
  }

  private set buf(b: Buffer) {
    this.parts = [b];
    this.size = b.length;
  }

  /** Every byte received and not yet taken by readReply. */
  get pending(): string {
    return this.buf.toString("latin1");
  }

  /** Waits until `ready()` holds over the received bytes, or the socket closed. */
  private async until(ready: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const got = (): string => JSON.stringify(this.pending.slice(0, 300));
      if (this.isClosed) throw new Error(`closed with ${got()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no full answer in ${timeoutMs} ms: ${got()}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  /** The next response; `bodyless` for the answer to HEAD. Interim 1xx answers are returned too. */
  async readReply(opts: { bodyless?: boolean; timeoutMs?: number } = {}): Promise<RawReply> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    let end = -1;
    await this.until(() => (end = this.buf.indexOf("\r\n\r\n")) >= 0, timeoutMs);
    const head = this.buf.subarray(0, end).toString("latin1");
    const [statusLine, ...lines] = head.split("\r\n");
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1]);
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(":");
      const k = l.slice(0, i).toLowerCase();
      const v = l.slice(i + 1).trim();
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    }
    let rest = this.buf.subarray(end + 4);
    this.buf = rest;
    const take = (n: number): Buffer => {
      const b = this.buf.subarray(0, n);
      this.buf = this.buf.subarray(n);
      return b;
    };
    if (opts.bodyless || status < 200 || status === 204 || status === 304)
      return { status, headers, body: Buffer.alloc(0), head };
    if (headers["content-length"] !== undefined) {
      const n = Number(headers["content-length"]);
      await this.until(() => this.size >= n, timeoutMs);
      return { status, headers, body: take(n), head };
    }
    if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
      const parts: Buffer[] = [];
      for (;;) {
        let eol = -1;
        await this.until(() => (eol = this.buf.indexOf("\r\n")) >= 0, timeoutMs);
        const size = parseInt(take(eol + 2).toString("latin1"), 16);
        await this.until(() => this.buf.length >= size + 2, timeoutMs);
        const chunk = take(size + 2);
        if (size === 0) break;
        parts.push(chunk.subarray(0, size));
      }
      return { status, headers, body: Buffer.concat(parts), head };
    }
    // Delimited by the close.
    await this.closed;
    rest = this.buf;
    this.buf = Buffer.alloc(0);
    return { status, headers, body: rest, head };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A GET request's bytes. */
export function get(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
}
