import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import {
  chmod,
  chown,
  lchown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createLogger } from "@fizz/kit";
import { expect } from "chai";
import { instanceAgent, type InstanceAgent } from "../src/instance-http";
import { instanceBaseEnv, type IsolationOptions } from "../src/isolation";
import { removeTreeNoFollow } from "../src/remove-tree";
import { ProcessBackend } from "../src/process-backend";
import { killUid } from "../src/uid-cleanup";
import { env } from "./fake-backend";
import { liveOfUid } from "./harness";

const SETPRIV = "/usr/bin/setpriv";
const isRoot = process.getuid?.() === 0;
const FIXTURE = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "fixtures/fake-runtime.mjs",
);
const fake = env("fake", { image: "acme/custom", command: [process.execPath, FIXTURE] });

function alive(pid: number): boolean {
  try {
    return !/^State:\s+[ZX]/m.test(readFileSync(`/proc/${pid}/status`, "latin1"));
  } catch {
    return false;
  }
}

/**
 * Exchanges d (a directory) and l (a link to outside) in each directory named, in a loop until
 * killed, through a descriptor opened first (as a process with its cwd there would: no path from
 * the top is needed once it is open); prints one line after the first round.
 */
const SWAPPER = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE = 2
fds = [os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in sys.argv[1:]]
first = True
while True:
    for fd in fds:
        libc.renameat2(fd, b"d", fd, b"l", RENAME_EXCHANGE)
    if first:
        print("swapping", flush=True)
        first = False
`;

async function chownTree(p: string, uid: number): Promise<void> {
  await lchown(p, uid, uid);
  const st = await lstat(p);
  if (!st.isDirectory()) return;
  for (const name of await readdir(p)) await chownTree(path.join(p, name), uid);
}

describe("what a dead poolkeeper left: stale instance directories and uids", function () {
  this.timeout(60_000);
  let dir: string;
  let agent: InstanceAgent;
  let backend: ProcessBackend | undefined;
  let lines: string[];
  let base: number;

  function make(isolation: IsolationOptions): ProcessBackend {
    backend = new ProcessBackend({
      workDir: path.join(dir, "work"),
      runtimesDir: "/nonexistent-runtimes",
      python: "python3",
      spawnTimeoutMs: 20_000,
      killGraceMs: 100,
      baseEnv: instanceBaseEnv({}),
      isolation,
      allowEnvCommand: true,
      agent,
      logger: createLogger("poolkeeper", "info", { write: (l: string) => void lines.push(l) }),
    });
    return backend;
  }
  const own = (): IsolationOptions =>
    isRoot && existsSync(SETPRIV)
      ? { uids: { base, count: 2, lockDir: path.join(dir, "locks") }, setpriv: SETPRIV }
      : { uids: undefined, setpriv: undefined };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-leftovers-"));
    agent = instanceAgent();
    lines = [];
    base = 259_000 + Math.floor(Math.random() * 900);
  });
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
    agent.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it("removes the instance directories it finds at start, not what their links point to, nor a live instance's", async () => {
    // Outside the work directory: what the stale tree's links point to.
    const outside = path.join(dir, "outside");
    await mkdir(path.join(outside, "sub"), { recursive: true });
    await writeFile(path.join(outside, "precious"), "keep me");
    await writeFile(path.join(outside, "sub", "also"), "keep me too");

    const instances = path.join(dir, "work", "instances");
    const stale = path.join(instances, "hello-0badf00d");
    await mkdir(path.join(stale, "deep", "er"), { recursive: true });
    await writeFile(path.join(stale, "deep", "er", "file"), "x");
    await symlink(outside, path.join(stale, "deep", "to-outside"));
    await symlink(path.join(outside, "precious"), path.join(stale, "to-file"));
    await symlink(outside, path.join(instances, "hello-5ymlink0")); // an entry that is a link
    if (isRoot) {
      // Owned by another uid, as an instance's files are (and a directory it made 0500).
      await chown(path.join(stale, "deep", "er", "file"), base + 500, base + 500);
      await chown(path.join(stale, "deep"), base + 500, base + 500);
    }
    await chmod(path.join(stale, "deep"), 0o500);

    const b = make(own());
    const live = await b.spawn(fake, { taken: true });
    await b.swept;

    expect(existsSync(stale), "the stale directory").to.equal(false);
    expect(existsSync(path.join(instances, "hello-5ymlink0")), "the stale link").to.equal(false);
    expect(await readFile(path.join(outside, "precious"), "utf8")).to.equal("keep me");
    expect(await readFile(path.join(outside, "sub", "also"), "utf8")).to.equal("keep me too");
    expect(existsSync(live.dir!), "the live instance's directory").to.equal(true);
    expect(lines.join("")).to.include("removed instance directories a previous poolkeeper left");

    // A second poolkeeper on the same work directory while this one lives: nothing of it is stale.
    const first = backend;
    const second = make(own());
    try {
      await second.swept;
      expect(existsSync(live.dir!), "the live instance's directory, after a second start").to.equal(
        true,
      );
      expect(lines.join("")).to.include("another live poolkeeper uses this work directory");
    } finally {
      await second.close();
      backend = first;
    }
  });

  it("never follows a directory swapped for a link while it walks (rename races by a uid that can write there)", async () => {
    // What root's removal must survive: a process that can write in a stale tree (a pool uid handed
    // out again after the start-up scan, a process with its cwd inside that no kill reached, or
    // another uid let in by a 0777 directory) exchanging a directory with a link to outside, over
    // and over (renameat2 RENAME_EXCHANGE). A path-based walk that lstat()s "d" as a directory and
    // then readdir()s and unlink()s through "d" can be sent outside by the swap in between.
    const outside = path.join(dir, "outside");
    await mkdir(outside, { recursive: true });
    const precious = Array.from({ length: 20 }, (_, i) => `precious-${i}`);
    for (const f of precious) await writeFile(path.join(outside, f), "keep me");
    const instances = path.join(dir, "work", "instances");
    const pairs: string[] = [];
    for (let i = 0; i < 150; i++) {
      const stale = path.join(instances, `hello-${String(i).padStart(8, "0")}`);
      const w = path.join(stale, "w");
      await mkdir(path.join(w, "d"), { recursive: true });
      for (const f of precious) await writeFile(path.join(w, "d", f), "mine");
      await symlink(outside, path.join(w, "l"));
      pairs.push(w);
    }
    const attackerUid = base + 500;
    if (isRoot) for (const p of pairs) await chownTree(path.dirname(p), attackerUid);
    const script = path.join(dir, "swap.py");
    await writeFile(script, SWAPPER);
    await chmod(dir, 0o755);
    await chmod(script, 0o644);
    const argv = ["/usr/bin/python3", script, ...pairs];
    const swapper = spawn(
      isRoot ? SETPRIV : argv[0]!,
      isRoot
        ? [`--reuid=${attackerUid}`, `--regid=${attackerUid}`, "--clear-groups", "--", ...argv]
        : argv.slice(1),
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      // It says when it has swapped every pair at least once (no timing: a line it writes).
      await new Promise<void>((resolve, reject) => {
        swapper.stdout.once("data", () => resolve());
        swapper.once("exit", (code) => reject(new Error(`the swapper exited (${code})`)));
      });
      const b = make({ uids: undefined, setpriv: undefined });
      await b.swept;
    } finally {
      swapper.kill("SIGKILL");
    }
    const left = precious.filter((f) => !existsSync(path.join(outside, f)));
    expect(left, "files outside the work directory deleted by the removal").to.deep.equal([]);
  });

  it("removeTreeNoFollow (for an instance's own directory) removes a tree, not what its links point to, and a missing one is no error", async () => {
    const outside = path.join(dir, "outside");
    await mkdir(outside, { recursive: true });
    await writeFile(path.join(outside, "precious"), "keep me");
    const tree = path.join(dir, "tree");
    await mkdir(path.join(tree, "a", "b"), { recursive: true });
    await symlink(outside, path.join(tree, "a", "b", "link"));
    await chmod(path.join(tree, "a"), 0o500);
    await removeTreeNoFollow(tree);
    expect(existsSync(tree)).to.equal(false);
    expect(await readFile(path.join(outside, "precious"), "utf8")).to.equal("keep me");
    await removeTreeNoFollow(tree);
  });

  it("removeTreeNoFollow removes a tree deeper than it keeps directories open", async () => {
    // It threw there: an instance's uid then stayed reserved for good (and a build's failed), so
    // one mkdir loop per instance drained the pool one uid at a time (fs.rm had removed it).
    const tree = path.join(dir, "deep");
    let deepest = tree;
    for (let i = 0; i < 1100; i++) deepest = path.join(deepest, "d");
    await mkdir(deepest, { recursive: true });
    await writeFile(path.join(deepest, "f"), "x");
    await removeTreeNoFollow(tree);
    expect(existsSync(tree)).to.equal(false);
  });

  it("removeTreeNoFollow keeps few directories open (instances' removals run side by side)", async () => {
    // One descriptor per level up to 1024: a few instances ending together with deep trees took
    // the poolkeeper to its descriptor limit (EMFILE for every accept, spawn, clean-up). Run
    // under a 256-descriptor limit here.
    let deepest = path.join(dir, "deep");
    for (let i = 0; i < 400; i++) deepest = path.join(deepest, "d");
    await mkdir(deepest, { recursive: true });
    const src = path.resolve(__dirname, "../src/remove-tree.ts");
    const script = `import(${JSON.stringify(src)}).then((m) => m.removeTreeNoFollow(${JSON.stringify(path.join(dir, "deep"))}))`;
    execFileSync(
      "prlimit",
      ["--nofile=256:256", process.execPath, "--import", "tsx", "-e", script],
      {
        stdio: "pipe",
      },
    );
    expect(existsSync(path.join(dir, "deep"))).to.equal(false);
  });

  it("removeTreeNoFollow as the instances' own user moves up a deep directory it made read-only", async function () {
    // Without root (instances run as the poolkeeper's user) moving a directory to another parent
    // needs write permission on it: the chmod must come before the move.
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // stands in for that user with setpriv
    const tree = path.join(dir, "home", "ro"); // home: the user's, as its work directory is
    let at64 = tree;
    for (let i = 0; i < 64; i++) at64 = path.join(at64, "d");
    await mkdir(path.join(at64, "d", "d"), { recursive: true });
    await chownTree(path.join(dir, "home"), base);
    await chmod(dir, 0o755);
    await chmod(at64, 0o500);
    const src = path.resolve(__dirname, "../src/remove-tree.ts");
    const script = `import(${JSON.stringify(src)}).then((m) => m.removeTreeNoFollow(${JSON.stringify(tree)}))`;
    execFileSync(
      SETPRIV,
      [
        `--reuid=${base}`,
        `--regid=${base}`,
        "--clear-groups",
        "--",
        process.execPath,
        "--import",
        "tsx",
        "-e",
        script,
      ],
      { stdio: "pipe", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir } },
    );
    expect(existsSync(tree)).to.equal(false);
  });

  describe("as root", () => {
    let leftover: ChildProcess | undefined;
    beforeEach(function () {
      if (!isRoot || !existsSync(SETPRIV)) this.skip(); // needs root to run as pool uids
    });
    afterEach(async () => {
      leftover?.kill("SIGKILL");
      leftover = undefined;
      await killUid(base, undefined);
    });

    /**
     * A daemon of a dead poolkeeper's instance: out of its group, no claim on its uid left.
     * Resolves once it runs as `uid` (it says so), not after some time.
     */
    async function startLeftover(uid: number): Promise<ChildProcess> {
      const p = spawn(
        SETPRIV,
        [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--"].concat([
          "setsid",
          "sh",
          "-c",
          "echo up; exec sleep 60",
        ]),
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      await new Promise<void>((resolve, reject) => {
        p.stdout.once("data", () => resolve());
        p.once("exit", (code) => reject(new Error(`the leftover exited (${code})`)));
      });
      return p;
    }

    it("does not hand out a pool uid with a process left running until it is emptied", async () => {
      leftover = await startLeftover(base);
      expect(liveOfUid(base), "the leftover started").to.be.above(0);

      const b = make(own());
      // Round robin hands out `base` first: only once the leftover is gone (it is held for its
      // clean-up meanwhile, and the first instance gets the next uid if that is not done yet).
      const first = await b.spawn(fake, { taken: true });
      const ran = alive(leftover.pid!);
      expect(first.uid === base && ran, "base handed out while its leftover ran").to.equal(false);
      await b.swept;
      expect(alive(leftover.pid!), "the leftover is killed").to.equal(false);
      expect(lines.join("")).to.include("killed processes a previous poolkeeper's instance left");
      // And the uid, emptied, is back in the pool: both uids are handed out.
      const second = await b.spawn(fake, { taken: true });
      expect([first.uid, second.uid].sort()).to.deep.equal([base, base + 1]);
    });

    it("does not hand out a pool uid whose dead instance left a file in /tmp until it is removed", async () => {
      // No process of it is left, only a file: the uid's next holder, maybe another tenant,
      // must not find it.
      const left = path.join("/tmp", `fizz-leftover-${base}-${process.pid}`);
      await writeFile(left, "a dead instance's secret");
      await chown(left, base, base);
      try {
        const b = make(own());
        const first = await b.spawn(fake, { taken: true });
        expect(first.uid === base && existsSync(left), "base handed out with its file").to.equal(
          false,
        );
        await b.swept;
        expect(existsSync(left), "the file is removed at start").to.equal(false);
      } finally {
        await rm(left, { force: true });
      }
    });

    it("removes a stale tree deeper than it keeps directories open, and hands out its uid only once it is gone", async () => {
      // The start-up removal once refused a tree this deep and left it for a later start, root's
      // only at its top, while its uid went to new instances at once, maybe another tenant's.
      const stale = path.join(dir, "work", "instances", "hello-0000dee9");
      let deepest = stale;
      for (let i = 0; i < 1100; i++) deepest = path.join(deepest, "d");
      await mkdir(deepest, { recursive: true });
      await writeFile(path.join(deepest, "secret"), "tenant A");
      await chownTree(stale, base);
      await chmod(stale, 0o700);

      const b = make(own());
      const next = await b.spawn(fake, { taken: true });
      expect(
        next.uid === base && existsSync(stale),
        "base handed out with its stale tree",
      ).to.equal(false);
      await b.swept;
      expect(existsSync(stale), "the stale tree").to.equal(false);
      const second = await b.spawn(fake, { taken: true });
      expect([next.uid, second.uid].sort()).to.deep.equal([base, base + 1]);
    });

    it("quarantines a leftover uid it cannot empty, and leaves that uid's stale directory", async () => {
      leftover = await startLeftover(base);
      expect(liveOfUid(base), "the leftover started").to.be.above(0);
      const stale = path.join(dir, "work", "instances", "hello-0000beef");
      await mkdir(stale, { recursive: true });
      await chown(stale, base, base);

      // No rounds and no as-uid pass: the kill cannot finish, as with a leftover that outruns it.
      const b = make({ ...own(), setpriv: undefined, killBound: { rounds: 0, ms: 0 } });
      await b.swept;
      expect(lines.join("")).to.include("the uid is quarantined");
      expect(existsSync(stale), "a quarantined uid's directory is left").to.equal(true);
      const first = await b.spawn(fake, { taken: true });
      expect(first.uid).to.equal(base + 1);
      let err: unknown;
      await b.spawn(fake, { taken: true }).catch((e: unknown) => (err = e));
      expect((err as { code?: string } | undefined)?.code).to.equal("NO_CAPACITY");
    });
  });
});
