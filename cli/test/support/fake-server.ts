/**
 * A real HTTP server on a free port that records every request and answers from canned replies:
 * the registry and the gateway faked at their HTTP interface, so the CLI's actual fetch, headers
 * and body encoding are what the tests observe.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface Reply {
  status?: number;
  /** Sent as application/json. */
  json?: unknown;
  /** Sent as is, when json is not given. */
  body?: string | Buffer;
  headers?: Record<string, string>;
}

type Responder = Reply | ((req: RecordedRequest) => Reply);

export class FakeServer {
  readonly requests: RecordedRequest[] = [];
  private readonly replies = new Map<string, Responder>();

  private readonly server: Server = createServer((req, res) => this.handle(req, res));
  private port = 0;

  private constructor() {}

  static async start(): Promise<FakeServer> {
    const fake = new FakeServer();
    await new Promise<void>((resolve) => fake.server.listen(0, "127.0.0.1", resolve));
    fake.port = (fake.server.address() as AddressInfo).port;
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Registers the reply to `METHOD /path?query`; the last registration for a key wins. */
  on(method: string, url: string, reply: Responder): this {
    this.replies.set(`${method} ${url}`, reply);
    return this;
  }

  /** The requests as `METHOD /path` lines, the easiest shape to assert an order on. */
  calls(): string[] {
    return this.requests.map((r) => `${r.method} ${r.url}`);
  }

  jsonBody(index: number): unknown {
    const req = this.requests[index];
    if (!req) throw new Error(`no request #${index}; got ${JSON.stringify(this.calls())}`);
    return JSON.parse(req.body.toString("utf8"));
  }

  reset(): void {
    this.requests.length = 0;
    this.replies.clear();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const recorded: RecordedRequest = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      this.requests.push(recorded);
      const reply = this.replyFor(recorded);
      const body =
        reply.json !== undefined ? JSON.stringify(reply.json) : (reply.body ?? Buffer.alloc(0));
      res.writeHead(reply.status ?? 200, {
        ...(reply.json !== undefined ? { "content-type": "application/json" } : {}),
        ...reply.headers,
      });
      res.end(body);
    });
  }

  private replyFor(req: RecordedRequest): Reply {
    const responder = this.replies.get(`${req.method} ${req.url}`);
    if (!responder) {
      return {
        status: 404,
        json: {
          error: { code: "NOT_FOUND", message: `no fake reply for ${req.method} ${req.url}` },
        },
      };
    }
    return typeof responder === "function" ? responder(req) : responder;
  }
}

/** A URL where nothing listens: a server is started to reserve a free port, then closed. */
export async function closedUrl(): Promise<string> {
  const fake = await FakeServer.start();
  await fake.close();
  return fake.url;
}
