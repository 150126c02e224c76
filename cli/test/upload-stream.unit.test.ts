/**
 * `--src <dir>` streams: a 50 MiB directory of incompressible data is packed and sent while the
 * CLI (a real `fizz` process) stays far below the archive's size in memory. The test's own HTTP
 * server counts the bytes it receives and, at the moment the body has arrived in full, reads the
 * CLI's peak resident memory (VmHWM) from /proc.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { expect } from "chai";

const BIN = resolve(import.meta.dirname, "../bin/fizz.js");
const MIB = 1024 * 1024;
const DIGEST = `sha256:${"c".repeat(64)}`;

interface Received {
  bytes: number;
  /** Peak RSS of the CLI process when the whole upload had arrived, in bytes. */
  peakRss: number;
}

/** A registry stand-in that discards upload bytes, counting them, and answers like the registry. */
async function countingRegistry(cliPid: () => number | undefined): Promise<{
  server: Server;
  url: string;
  uploads: Received[];
}> {
  const uploads: Received[] = [];
  const server = createServer((req, res) => {
    let bytes = 0;
    req.on("data", (chunk: Buffer) => (bytes += chunk.length));
    req.on("end", () => {
      void (async () => {
        const pid = cliPid();
        const peakRss = pid === undefined ? 0 : await vmHwm(pid);
        res.setHeader("content-type", "application/json");
        if (req.url?.startsWith("/v1/namespaces/default/archives")) {
          uploads.push({ bytes, peakRss });
          res.statusCode = 201;
          res.end(JSON.stringify({ archive: { digest: DIGEST, size: bytes } }));
        } else if (req.method === "POST") {
          res.statusCode = 201;
          res.end(JSON.stringify(pkgObject()));
        } else if (req.method === "GET" && req.url?.endsWith("/packages")) {
          uploads.push({ bytes: 0, peakRss });
          res.end(JSON.stringify({ items: [] }));
        } else {
          res.statusCode = 404;
          res.end(JSON.stringify({ error: { code: "NOT_FOUND", message: req.url } }));
        }
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, url, uploads };
}

function pkgObject() {
  return {
    apiVersion: "fizz.dev/v1",
    kind: "Package",
    metadata: { namespace: "default", name: "big", revision: 1 },
    spec: { environment: "node", deployment: { digest: DIGEST, size: 1 } },
    status: { buildState: "pending", buildLog: "" },
  };
}

async function vmHwm(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
  return kb === undefined ? 0 : Number(kb) * 1024;
}

function runFizz(
  args: string[],
  url: string,
  onPid: (pid: number | undefined) => void,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: {
        PATH: process.env.PATH ?? "",
        FIZZ_REGISTRY_URL: url,
        FIZZ_TOKEN: "t",
        // Packing allocates a stream of short-lived chunks, and V8 then grows its young
        // generation (up to 3 x 16 MiB) whatever the data's size; pinned small, the peak is about
        // what stays alive: buffered archive bytes.
        NODE_OPTIONS: "--max-semi-space-size=1",
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    onPid(child.pid);
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, stderr }));
  });
}

describe("fizz pkg create --deploy <dir> (streaming upload)", function () {
  this.timeout(120_000);
  let dir: string;
  let tiny: string;

  before(async function () {
    // VmHWM comes from Linux's /proc; elsewhere the memory bound cannot be observed this way.
    try {
      await readFile(`/proc/${process.pid}/status`, "utf8");
    } catch {
      this.skip();
    }
    dir = await mkdtemp(join(tmpdir(), "fizz-cli-big-"));
    tiny = await mkdtemp(join(tmpdir(), "fizz-cli-tiny-"));
    await writeFile(join(tiny, "index.js"), "module.exports = () => 'hi';\n");
    await mkdir(join(dir, "data"));
    // Random bytes: gzip cannot shrink them, so the archive on the wire is ~50 MiB too.
    for (let i = 0; i < 10; i++)
      await writeFile(join(dir, "data", `blob-${i}.bin`), randomBytes(5 * MIB));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    if (tiny) await rm(tiny, { recursive: true, force: true });
  });

  it("sends a 50 MiB directory with CLI memory bounded well below the archive's size", async () => {
    let pid: number | undefined;
    const registry = await countingRegistry(() => pid);
    try {
      // Baseline: the same command uploading a one-file directory (same modules loaded).
      const small = await runFizz(
        ["pkg", "create", "--name", "big", "--env", "node", "--deploy", tiny, "--no-wait"],
        registry.url,
        (p) => (pid = p),
      );
      expect(small.code, small.stderr).to.equal(0);
      const baseline = registry.uploads[0]?.peakRss ?? 0;
      expect(baseline).to.be.greaterThan(0);

      const big = await runFizz(
        ["pkg", "create", "--name", "big", "--env", "node", "--deploy", dir, "--no-wait"],
        registry.url,
        (p) => (pid = p),
      );

      expect(big.code, big.stderr).to.equal(0);
      const upload = registry.uploads[1];
      if (!upload) throw new Error("no upload arrived");
      expect(upload.bytes).to.be.greaterThan(50 * MIB);
      // Buffering the archive would add at least its 50 MiB; streaming adds a few buffers.
      const extra = upload.peakRss - baseline;
      expect(extra, `peak RSS grew by ${(extra / MIB).toFixed(1)} MiB`).to.be.lessThan(25 * MIB);
    } finally {
      registry.server.closeAllConnections();
      await new Promise<void>((r) => registry.server.close(() => r()));
    }
  });
});
