import { expect } from "chai";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  connectNats,
  connectRedis,
  loadCommon,
  natsConnected,
  redisReady,
  silentLogger,
} from "@fizz/kit";
import { NATS_SERVER_BIN, REDIS_SERVER_BIN, freePort, portOpen, waitFor } from "@fizz/testkit";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function openssl(dir: string, ...args: string[]): void {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/**
 * TLS to NATS and Redis with a CA generated here by openssl: services verify the server against
 * FIZZ_NATS_TLS_CA / FIZZ_REDIS_TLS_CA, and refuse a server their CA did not sign.
 */
describe("TLS to NATS and Redis with a private CA (shared/kit)", function () {
  this.timeout(60_000);
  let dir: string;
  let natsPort: number;
  let redisPort: number;
  const children: ChildProcess[] = [];
  const cleanup: Array<() => void> = [];

  before(async function () {
    if (spawnSync("openssl", ["version"]).status !== 0) this.skip();
    dir = await mkdtemp(path.join(tmpdir(), "fizz-tls-"));
    await writeFile(path.join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    for (const ca of ["ca", "other-ca"])
      openssl(
        dir,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        `/CN=${ca}`,
        "-keyout",
        `${ca}.key`,
        "-out",
        `${ca}.pem`,
      );
    openssl(
      dir,
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
    );
    openssl(
      dir,
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      "san.ext",
      "-out",
      "server.pem",
    );

    natsPort = await freePort();
    const conf = path.join(dir, "nats.conf");
    await writeFile(
      conf,
      `listen: "127.0.0.1:${natsPort}"\ntls { cert_file: "${dir}/server.pem", key_file: "${dir}/server.key" }\n`,
    );
    children.push(spawn(NATS_SERVER_BIN, ["-c", conf], { stdio: "ignore" }));
    redisPort = await freePort();
    children.push(
      spawn(
        REDIS_SERVER_BIN,
        [
          "--port",
          "0",
          "--tls-port",
          String(redisPort),
          "--bind",
          "127.0.0.1",
          "--tls-cert-file",
          `${dir}/server.pem`,
          "--tls-key-file",
          `${dir}/server.key`,
          "--tls-ca-cert-file",
          `${dir}/ca.pem`,
          "--tls-auth-clients",
          "no",
          "--save",
          "",
          "--dir",
          dir,
        ],
        { stdio: "ignore" },
      ),
    );
    await waitFor(() => portOpen(natsPort), { timeoutMs: 10_000, what: "nats-server with TLS" });
    await waitFor(() => portOpen(redisPort), { timeoutMs: 10_000, what: "redis-server with TLS" });
  });
  after(async () => {
    for (const c of cleanup) c();
    for (const c of children) c.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const config = (ca: string) =>
    loadCommon({
      FIZZ_NATS_URL: `tls://127.0.0.1:${natsPort}`,
      FIZZ_NATS_TLS_CA: path.join(dir, ca),
      FIZZ_REDIS_URL: `rediss://127.0.0.1:${redisPort}`,
      FIZZ_REDIS_TLS_CA: path.join(dir, ca),
    });

  it("connects to both over TLS, verifying them against the configured CA", async () => {
    const c = config("ca.pem");
    const nc = await connectNats({ url: c.natsUrl, name: "t", logger: silentLogger() });
    cleanup.push(() => void nc.close());
    expect(natsConnected(nc)).to.equal(true);
    const r = connectRedis({ url: c.redisUrl, name: "t", logger: silentLogger() });
    cleanup.push(() => r.disconnect());
    await waitFor(() => redisReady(r), { timeoutMs: 10_000, what: "redis over TLS" });
    expect(await r.ping()).to.equal("PONG");
  });

  it("refuses a server its CA did not sign", async () => {
    const c = config("other-ca.pem");
    const abort = new AbortController();
    let connected = false;
    const pending = connectNats({
      url: c.natsUrl,
      name: "t",
      logger: silentLogger(),
      signal: abort.signal,
    }).then(
      (nc) => {
        connected = true;
        return nc.close();
      },
      () => undefined,
    );
    const r = connectRedis({ url: c.redisUrl, name: "t", logger: silentLogger() });
    cleanup.push(() => r.disconnect());
    await sleep(1500);
    abort.abort();
    await pending;
    expect(connected).to.equal(false);
    expect(redisReady(r)).to.equal(false);
  });
});
