import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { expect } from "chai";
import { run } from "../src/main.js";
import { apiError, NOW } from "./support/cli.js";

/** The registry's logs endpoint faked at HTTP: each request is handed to the test's handler. */
class LogsServer {
  readonly urls: string[] = [];
  handler: (req: IncomingMessage, res: ServerResponse, n: number) => void = (_q, res) => res.end();
  private readonly server: Server = createServer((req, res) => {
    this.urls.push(req.url ?? "");
    this.handler(req, res, this.urls.length);
  });

  static async start(): Promise<LogsServer> {
    const s = new LogsServer();
    await new Promise<void>((resolve) => s.server.listen(0, "127.0.0.1", resolve));
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const line = (text: string, extra: Record<string, unknown> = {}) => ({
  namespace: "default",
  function: "hello",
  revision: 3,
  instanceId: "hello-abc123",
  stream: "stdout",
  line: text,
  ts: NOW,
  ...extra,
});
const ndjson = (...lines: object[]) => lines.map((l) => JSON.stringify(l) + "\n").join("");

async function fizz(
  registry: string,
  argv: string[],
  opts: { interrupt?: AbortSignal; onStdout?: (all: string) => void } = {},
) {
  let stdout = "";
  let stderr = "";
  const code = await run(argv, {
    env: { FIZZ_REGISTRY_URL: registry, FIZZ_TOKEN: "t".repeat(32) },
    cwd: tmpdir(),
    stdout: {
      write(c: string | Uint8Array) {
        stdout += Buffer.from(c).toString("utf8");
        opts.onStdout?.(stdout);
        return true;
      },
    },
    stderr: {
      write(c: string | Uint8Array) {
        stderr += Buffer.from(c).toString("utf8");
        return true;
      },
    },
    now: () => NOW,
    ...(opts.interrupt ? { interrupt: opts.interrupt } : {}),
  });
  return { code, stdout, stderr };
}

const TS = new Date(NOW).toISOString();
const PATH = "/v1/namespaces/default/functions/hello/logs";

describe("fizz fn logs", () => {
  let reg: LogsServer;
  beforeEach(async () => {
    reg = await LogsServer.start();
  });
  afterEach(() => reg.close());

  it("prints one line per log line: time, stream, short request id, text; platform lines marked ***", async () => {
    reg.handler = (_req, res) =>
      res.end(
        ndjson(
          line("hello world"),
          line("oops", { stream: "stderr", requestId: "3f2a9b1c4d5e6f70" }),
          line("fizz: instance exited with code 1", { stream: "system" }),
        ),
      );
    const r = await fizz(reg.url, ["fn", "logs", "--name", "hello"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(reg.urls).to.deep.equal([PATH]);
    expect(r.stdout).to.equal(
      `${TS} stdout hello world\n` +
        `${TS} stderr [req 3f2a9b1c…] oops\n` +
        `${TS} system *** fizz: instance exited with code 1\n`,
    );
  });

  it("prints the registry's NDJSON unchanged with -o json, without its keep-alive lines", async () => {
    const body = ndjson(line("a"), line("b", { requestId: "r1" }));
    reg.handler = (_req, res) => res.end("\n" + body);
    const r = await fizz(reg.url, ["fn", "logs", "--name", "hello", "-o", "json"]);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.equal(body);
  });

  it("sends --since, --tail, --instance and the namespace to the registry", async () => {
    const r = await fizz(reg.url, [
      "-n",
      "team-a",
      "fn",
      "logs",
      "--name",
      "hello",
      "--since",
      "10m",
      "--tail",
      "5",
      "--instance",
      "hello-1",
    ]);
    expect(r.code, r.stderr).to.equal(0);
    expect(reg.urls).to.deep.equal([
      "/v1/namespaces/team-a/functions/hello/logs?since=10m&tail=5&instance=hello-1",
    ]);
  });

  it("takes Fission's spelling: fn log with --pod, --recordcount and -d (instance and whole request id)", async () => {
    reg.handler = (_req, res) => res.end(ndjson(line("x", { requestId: "3f2a9b1c4d5e6f70" })));
    const r = await fizz(reg.url, [
      "fn",
      "log",
      "--name",
      "hello",
      "--pod",
      "hello-abc123",
      "--recordcount",
      "20",
      "-d",
    ]);
    expect(r.code, r.stderr).to.equal(0);
    expect(reg.urls).to.deep.equal([`${PATH}?tail=20&instance=hello-abc123`]);
    expect(r.stdout).to.equal(`${TS} stdout [hello-abc123] [req 3f2a9b1c4d5e6f70] x\n`);
  });

  it("shows control characters of a function's output escaped, so it cannot drive the terminal", async () => {
    reg.handler = (_req, res) =>
      res.end(
        ndjson(line("\u001b]0;pwned\u0007\u001b[2Jtext\rover", { instanceId: "i\u001b[1m" })),
      );
    const r = await fizz(reg.url, ["fn", "logs", "--name", "hello", "-d"]);
    expect(r.stdout).to.equal(`${TS} stdout [i\\x1b[1m] \\x1b]0;pwned\\x07\\x1b[2Jtext\\x0dover\n`);
    expect(r.stdout).to.not.include("\u001b");
  });

  it("shows bidi controls of a function's output escaped, so a line cannot read unlike its text", async () => {
    reg.handler = (_req, res) => res.end(ndjson(line("ok \u202ereversed\u202c \u2066x\u2069")));
    const r = await fizz(reg.url, ["fn", "logs", "--name", "hello"]);
    expect(r.stdout).to.equal(`${TS} stdout ok \\u202ereversed\\u202c \\u2066x\\u2069\n`);
  });

  for (const [flag, value] of [
    ["--tail", "-1"],
    ["--tail", "10001"],
    ["--tail", "many"],
    ["--since", "yesterday"],
  ])
    it(`refuses ${flag} ${value} as a usage error before sending anything`, async () => {
      const r = await fizz(reg.url, ["fn", "logs", "--name", "hello", flag!, value!]);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.include(flag);
      expect(reg.urls).to.deep.equal([]);
    });

  it("reports the registry's refusal (unknown function) with its code and exit 1", async () => {
    reg.handler = (_req, res) => {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify(apiError("NOT_FOUND", 'functions "hello" not found')));
    };
    const r = await fizz(reg.url, ["fn", "logs", "--name", "hello", "-f"]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include("(NOT_FOUND)");
    expect(reg.urls).to.have.length(1);
  });

  it("with -f reconnects after the connection drops, resumes before the last line without repeating one, and exits 0 on Ctrl-C", async () => {
    const a = line("a", { ts: NOW - 3000 });
    const b = line("b", { ts: NOW });
    const c = line("c", { ts: NOW + 1000 });
    reg.handler = (_req, res, n) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      if (n === 1) {
        res.write(ndjson(a, b));
        // The registry goes away mid-stream.
        setImmediate(() => res.socket?.destroy());
        return;
      }
      // Sent again from the resume point, then a new line; the answer stays open.
      res.write(ndjson(a, b, c));
    };
    const ctrlC = new AbortController();
    const r = await fizz(reg.url, ["fn", "logs", "--name", "hello", "-f", "--tail", "2"], {
      interrupt: ctrlC.signal,
      onStdout: (all) => {
        if (all.includes(" c\n")) ctrlC.abort();
      },
    });
    expect(r.code, r.stderr).to.equal(0);
    expect(
      r.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" ").pop()),
    ).to.deep.equal(["a", "b", "c"]);
    expect(r.stderr).to.match(/reconnecting/);
    expect(reg.urls).to.deep.equal([
      `${PATH}?tail=2&follow=true`,
      `${PATH}?since=${encodeURIComponent(new Date(NOW - 5000).toISOString())}&follow=true`,
    ]);
  });
});
