import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { createLogger } from "@fizz/kit";
import { expect } from "chai";
import { Agent, request } from "undici";
import { instanceAgent } from "../src/instance-http";
import { loadConfig } from "../src/config";
import { instanceBaseEnv, wrapCommand, type IsolationOptions } from "../src/isolation";
import { ProcessBackend } from "../src/process-backend";
import { env } from "./fake-backend";
import {
  canForkBomb,
  capturingLogger,
  expectRefused,
  FORK_BOMB_PY,
  isRoot,
  LIMIT,
  nprocLimitLine,
  ownHardNproc,
  PRLIMIT,
  PYTHON,
  SETPRIV,
} from "./fork-bomb";
import { liveOfUid } from "./harness";

/** The backend's client for its instances; the test's own requests go over undici. */
const instancesAgent = instanceAgent();

/**
 * A stand-in instance (spec.command): GET /bomb?n=N forks N children that sleep 60 s, not holding
 * its socket (FORK_BOMB_PY), and answers how many forks succeeded and the errno of the first that
 * failed; any other path answers its uid.
 */
const BOMB =
  FORK_BOMB_PY +
  String.raw`
import json
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        out = {"uid": os.getuid()}
        if self.path.startswith("/bomb"):
            forked, err = bomb(int(self.path.split("=")[1]), 60, close=True)
            out.update(forked=forked, error=err)
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`;

async function get(address: string, p: string, agent: Agent): Promise<Record<string, unknown>> {
  const res = await request(`${address}${p}`, { dispatcher: agent });
  return (await res.body.json()) as Record<string, unknown>;
}

describe("instance process limit (RLIMIT_NPROC through prlimit)", function () {
  this.timeout(60_000);

  it("puts prlimit before setpriv, only for an instance with its own uid", () => {
    const nproc = { limit: 256, prlimit: PRLIMIT };
    expect(wrapCommand(["run"], 200_001, SETPRIV, nproc).slice(0, 4)).to.deep.equal([
      PRLIMIT,
      "--nproc=256:256",
      "--",
      SETPRIV,
    ]);
    expect(wrapCommand(["run"], undefined, SETPRIV, nproc)[0]).to.equal(SETPRIV);
    expect(wrapCommand(["run"], 200_001, SETPRIV, { limit: 256, prlimit: undefined })[0]).to.equal(
      SETPRIV,
    );
    expect(wrapCommand(["run"], 200_001, SETPRIV, { limit: 0, prlimit: PRLIMIT })[0]).to.equal(
      SETPRIV,
    );
  });

  it("asks prlimit for no more than the poolkeeper's own hard limit (raising it needs CAP_SYS_RESOURCE)", async function () {
    const own = ownHardNproc();
    if (own === undefined || !isRoot || ![SETPRIV, PRLIMIT].every((f) => existsSync(f)))
      this.skip();
    const chain = wrapCommand(["/bin/true"], 256_999, SETPRIV, {
      limit: own + 1000,
      prlimit: PRLIMIT,
    });
    expect(chain[1]).to.equal(`--nproc=${own}:${own}`);
    // Root without CAP_SYS_RESOURCE (not in Docker's default set): the chain still starts.
    await promisify(execFile)(SETPRIV, ["--bounding-set=-sys_resource", "--", ...chain]);
  });

  it("configures the limit as root (FIZZ_INSTANCE_NPROC, 0 = none) and names a bad value", () => {
    const root = { isRoot: true, exists: () => true };
    expect(loadConfig({}, "/", root).isolation.nproc).to.deep.equal({
      limit: 256,
      prlimit: PRLIMIT,
    });
    expect(loadConfig({ FIZZ_INSTANCE_NPROC: "0" }, "/", root).isolation.nproc).to.equal(undefined);
    const noPrlimit = { isRoot: true, exists: (f: string) => f !== PRLIMIT };
    expect(loadConfig({}, "/", noPrlimit).isolation.nproc).to.deep.equal({
      limit: 256,
      prlimit: undefined,
    });
    // Not root: instances run as the poolkeeper's own user, whose other processes would count.
    expect(loadConfig({}, "/", { isRoot: false, exists: () => true }).isolation.nproc).to.equal(
      undefined,
    );
    expectRefused(
      () => loadConfig({ FIZZ_INSTANCE_NPROC: "lots" }, "/", root),
      "FIZZ_INSTANCE_NPROC",
    );
  });

  it("warns once when prlimit is missing, and starts instances without it", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "fizz-nproc-"));
    const { logger, lines } = capturingLogger();
    const backend = new ProcessBackend({
      workDir: path.join(dir, "work"),
      runtimesDir: "/nonexistent-runtimes",
      python: "python3",
      spawnTimeoutMs: 5000,
      killGraceMs: 100,
      baseEnv: instanceBaseEnv({}),
      isolation: {
        uids: { base: 255_000, count: 2, lockDir: path.join(dir, "locks") },
        setpriv: SETPRIV,
        nproc: { limit: LIMIT, prlimit: undefined },
      },
      allowEnvCommand: true,
      agent: instancesAgent,
      logger,
    });
    try {
      expect(lines.filter((l) => l.includes("prlimit (util-linux) not found"))).to.have.length(1);
    } finally {
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe("as root, with real instances", () => {
    let dir: string;
    let agent: Agent;
    let backend: ProcessBackend | undefined;

    beforeEach(async function () {
      if (!canForkBomb()) this.skip();
      dir = await mkdtemp(path.join(tmpdir(), "fizz-nproc-"));
      agent = new Agent();
    });
    afterEach(async () => {
      await backend?.close();
      await agent?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("stops a fork bomb at the limit with EAGAIN; the poolkeeper and other instances stay healthy", async () => {
      const base = 257_000 + Math.floor(Math.random() * 900);
      const isolation: IsolationOptions = {
        uids: { base, count: 2, lockDir: path.join(dir, "locks") },
        setpriv: SETPRIV,
        nproc: { limit: LIMIT, prlimit: PRLIMIT },
      };
      backend = new ProcessBackend({
        workDir: path.join(dir, "work"),
        runtimesDir: "/nonexistent-runtimes",
        python: PYTHON,
        spawnTimeoutMs: 20_000,
        killGraceMs: 100,
        baseEnv: instanceBaseEnv({}),
        isolation,
        allowEnvCommand: true,
        agent: instancesAgent,
        logger: createLogger("poolkeeper", "warn", { write: () => undefined }),
      });
      const bomb = env("bomb", { image: "acme/custom", command: [PYTHON, "-c", BOMB] });
      const attacker = await backend.spawn(bomb, { taken: true });
      expect(attacker.uid).to.be.a("number");

      // Set before the drop to the uid, and inherited through setpriv's exec: the instance itself.
      const limits = readFileSync(`/proc/${attacker.pid}/limits`, "utf8");
      expect(limits).to.match(nprocLimitLine(LIMIT));

      const attack = await get(attacker.address, "/bomb?n=400", agent);
      expect(attack.error, JSON.stringify(attack)).to.equal("EAGAIN");
      expect(attack.forked).to.be.below(LIMIT);
      expect(liveOfUid(attacker.uid!)).to.be.at.most(LIMIT);

      // While its processes still hold the limit: the attacker answers, another instance (its
      // own uid, its own count) starts and forks, and the poolkeeper itself still forks.
      expect((await get(attacker.address, "/", agent)).uid).to.equal(attacker.uid);
      const other = await backend.spawn(bomb, { taken: true });
      expect(other.uid).to.not.equal(attacker.uid);
      expect(await get(other.address, "/bomb?n=3", agent)).to.deep.include({
        forked: 3,
        error: null,
      });
      await promisify(execFile)("/bin/true");

      // The instance's exit empties its uid: the clean-up is not stopped by the limit.
      await backend.kill(attacker.id, "test done");
      await backend.close();
      backend = undefined;
      expect(liveOfUid(attacker.uid!)).to.equal(0);
    });
  });
});
