import http from "node:http";
import {
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { Codecs, LOG_STREAM, subjects, type LogLine } from "@fizz/events";
import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { ADMIN_TOKEN } from "./helpers";

const NS = 1_000_000;

/** The poolkeeper's side of FIZZ_LOGS, as the registry's tests need it: the stream and lines. */
export class LogPublisher {
  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
  ) {}

  static async open(natsUrl: string): Promise<LogPublisher> {
    const nc = await connectNats({ url: natsUrl, name: "test-logs", logger: silentLogger() });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name: LOG_STREAM.name,
      subjects: [subjects().logsAll],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: LOG_STREAM.maxAgeMs * NS,
      max_bytes: LOG_STREAM.maxBytes,
      max_msgs_per_subject: LOG_STREAM.maxMsgsPerSubject,
    });
    return new LogPublisher(nc, jetstream(nc), jsm);
  }

  async publish(
    fn: string,
    lines: string[],
    extra: Partial<LogLine> = {},
    ns = "default",
  ): Promise<LogLine[]> {
    const out: LogLine[] = [];
    for (const text of lines) {
      const line: LogLine = {
        namespace: ns,
        function: fn,
        revision: 1,
        instanceId: "inst-a",
        stream: "stdout",
        line: text,
        ts: Date.now(),
        ...extra,
      };
      await this.js.publish(subjects().logs(ns, fn), Codecs.logs.encode(line, "test-poolkeeper"));
      out.push(line);
    }
    return out;
  }

  async consumers(): Promise<number> {
    return (await this.jsm.streams.info(LOG_STREAM.name)).state.consumer_count;
  }

  close(): Promise<void> {
    return this.nc.close();
  }
}

/** A logs answer read as it arrives (a follow never ends on its own). */
export class LogClient {
  readonly lines: LogLine[] = [];
  /** Empty keep-alive lines seen. */
  blanks = 0;
  status = 0;
  contentType = "";
  body = "";
  ended = false;
  private req: http.ClientRequest | undefined;

  static async open(
    port: number,
    path: string,
    token: string | null = ADMIN_TOKEN,
  ): Promise<LogClient> {
    const c = new LogClient();
    await new Promise<void>((resolve, reject) => {
      c.req = http.get(
        {
          host: "127.0.0.1",
          port,
          path,
          headers: token === null ? {} : { authorization: `Bearer ${token}` },
        },
        (res) => {
          c.status = res.statusCode ?? 0;
          c.contentType = String(res.headers["content-type"] ?? "");
          let rest = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            c.body += chunk;
            rest += chunk;
            const parts = rest.split("\n");
            rest = parts.pop() ?? "";
            if (c.status !== 200) return;
            for (const p of parts) {
              if (p === "") c.blanks++;
              else c.lines.push(JSON.parse(p) as LogLine);
            }
          });
          res.on("end", () => {
            c.ended = true;
          });
          res.on("error", () => undefined);
          resolve();
        },
      );
      c.req.on("error", reject);
    });
    return c;
  }

  /** The whole answer of a request that ends. */
  static async read(port: number, path: string, token?: string | null): Promise<LogClient> {
    const c = await LogClient.open(port, path, token);
    await waitFor(() => c.ended, { what: `end of GET ${path}`, timeoutMs: 30_000 });
    return c;
  }

  texts(): string[] {
    return this.lines.map((l) => l.line);
  }

  error(): { code: string; field?: string; message: string } {
    return (JSON.parse(this.body) as { error: { code: string; field?: string; message: string } })
      .error;
  }

  close(): void {
    this.req?.destroy();
  }
}
