import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, lstat, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createLogger } from "@fizz/kit";
import { expect } from "chai";
import { UidPool, type IsolationOptions } from "../src/isolation";
import { sweepLeftovers } from "../src/leftovers";
import { killUid } from "../src/uid-cleanup";

const SETPRIV = "/usr/bin/setpriv";
const isRoot = process.getuid?.() === 0;

/**
 * Holds an O_PATH descriptor of the file argv[1] and has its cwd in argv[2] (search permission is
 * all either needs), prints the descriptor's number, then sleeps: a process of another uid the
 * dead instance let in (a 0777 directory), which no kill of the instance's uid reaches.
 */
const HOLDER = String.raw`
import os, sys, time
fd = os.open(sys.argv[1], os.O_PATH)
os.chdir(sys.argv[2])
print(fd, flush=True)
time.sleep(120)
`;

describe("the start-up sweep: a stale directory's uid and what is under its top", function () {
  this.timeout(60_000);
  let dir: string;
  let base: number;
  let holder: ChildProcess | undefined;

  beforeEach(async function () {
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // runs processes as other uids
    dir = await mkdtemp(path.join(tmpdir(), "fizz-leftovers-lock-"));
    await chmod(dir, 0o755);
    base = 261_000 + Math.floor(Math.random() * 900);
  });
  afterEach(async () => {
    holder?.kill("SIGKILL");
    holder = undefined;
    if (isRoot && existsSync(SETPRIV)) await killUid(base, undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("attack: holds a stale directory's uid until its tree is removed, and the uid's files a process of another uid holds are root's by then", async () => {
    // A dead poolkeeper's instance of uid `base` left s (0777: it let another uid in) and a 0600
    // secret in it; a process of another uid (outside the pool range: no sweep kills it) holds a
    // descriptor of the secret and has its cwd in s. Handed to `base`'s next holder (SCM_RIGHTS),
    // either would be that holder's to reopen (/proc/self/fd) or chmod, as their owner.
    const instances = path.join(dir, "work", "instances");
    const stale = path.join(instances, "hello-0000f11e");
    const s = path.join(stale, "s");
    const secret = path.join(s, "secret");
    await mkdir(s, { recursive: true });
    await writeFile(secret, "tenant A");
    await chown(stale, base, base);
    await chown(s, base, base);
    await chown(secret, base, base);
    await chmod(stale, 0o777);
    await chmod(s, 0o777);
    await chmod(secret, 0o600);
    const other = base + 500;
    const script = path.join(dir, "hold.py");
    await writeFile(script, HOLDER);
    await chmod(script, 0o644);
    holder = spawn(
      SETPRIV,
      [`--reuid=${other}`, `--regid=${other}`, "--clear-groups", "--"].concat([
        "/usr/bin/python3",
        script,
        secret,
        s,
      ]),
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const p = holder;
    const fd = await new Promise<number>((resolve, reject) => {
      p.stdout!.once("data", (d: Buffer) => resolve(Number(String(d).trim())));
      p.once("exit", (code) => reject(new Error(`the holder exited (${code})`)));
    });

    const lines: string[] = [];
    const pool = new UidPool(base, 2, path.join(dir, "locks"));
    const isolation: IsolationOptions = {
      uids: { base, count: 2, lockDir: path.join(dir, "locks") },
      setpriv: SETPRIV,
    };
    const sweep = sweepLeftovers({
      instancesDir: instances,
      uids: { pool, base, count: 2 },
      isolation,
      keep: () => false,
      log: createLogger("poolkeeper", "info", { write: (l: string) => void lines.push(l) }),
    });
    await sweep.held;
    // What spawns may be given now (they wait for `held` only).
    const given: number[] = [];
    for (let i = 0; i < 2; i++) {
      try {
        given.push(pool.take());
      } catch {
        // NO_CAPACITY
      }
    }
    const sOwner = (await lstat(s).catch(() => undefined))?.uid;
    expect(
      given.includes(base) && sOwner === base,
      "base handed out while a directory of its under the stale top was still its",
    ).to.equal(false);
    for (const uid of given) pool.release(uid);

    await sweep.done;
    expect(existsSync(stale), "the stale directory").to.equal(false);
    // The held inodes outlived their removal: neither is the uid's any more.
    const held = await stat(`/proc/${p.pid}/fd/${fd}`);
    expect(held.uid, "the secret the other uid holds").to.equal(0);
    expect((await stat(`/proc/${p.pid}/cwd`)).uid, "the directory it is in").to.equal(0);
    // And the uid is back once its tree is gone.
    const after = [pool.take(), pool.take()].sort();
    expect(after).to.deep.equal([base, base + 1]);
  });

  it("sweeps stale build directories too, holding their uid meanwhile, but only a builds directory inside the claimed work directory", async () => {
    // A build directory a crash left (or whose later removal a restart cut short): nothing else
    // ever removes it. One outside the work directory may be another live poolkeeper's.
    const work = path.join(dir, "work");
    const builds = path.join(work, "builds");
    const elsewhere = path.join(dir, "elsewhere-builds");
    const stale = path.join(builds, "hello-0badf00d");
    const foreign = path.join(elsewhere, "hello-0f0f0f0f");
    for (const d of [stale, foreign]) {
      await mkdir(path.join(d, "src"), { recursive: true });
      await writeFile(path.join(d, "src", "secret"), "tenant A");
    }
    await chown(stale, base, base);
    await chown(path.join(stale, "src"), base, base);
    await chown(path.join(stale, "src", "secret"), base, base);
    const pool = new UidPool(base, 2, path.join(dir, "locks"));
    const sweep = (buildsDir: string) =>
      sweepLeftovers({
        instancesDir: path.join(work, "instances"),
        uids: { pool, base, count: 2 },
        isolation: { uids: { base, count: 2, lockDir: path.join(dir, "locks") }, setpriv: SETPRIV },
        keep: () => false,
        log: createLogger("poolkeeper", "info", { write: () => undefined }),
        buildsDir,
      });
    const first = sweep(builds);
    await first.held;
    const given = pool.take();
    expect(given === base && existsSync(stale), "base handed out with its build tree").to.equal(
      false,
    );
    pool.release(given);
    await first.done;
    expect(existsSync(stale), "the stale build directory").to.equal(false);
    expect([pool.take(), pool.take()].sort()).to.deep.equal([base, base + 1]);

    // A later start (this process's claim is void to it: the file is rewritten as a dead one's).
    await writeFile(path.join(work, "poolkeeper.pid"), "4194304 1");
    await sweep(elsewhere).done;
    expect(existsSync(foreign), "a builds directory outside the work directory").to.equal(true);
  });
});

describe("the start-up sweep of the builds' directory and the builds' archives", function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-leftovers-archives-"));
  });
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("never removes <builds>/.archives, which this poolkeeper's builds reuse, only the stale archives read at start", async () => {
    // startBuilds makes <builds>/.archives once (a fixed name, kept across restarts) and every
    // build writes its source and deployment archives there: removed by the sweep, each later
    // build of this poolkeeper fails until the next restart, and one under way loses its archive.
    const work = path.join(dir, "work");
    const builds = path.join(work, "builds");
    const archives = path.join(builds, ".archives");
    const staleBuild = path.join(builds, "hello-0badf00d");
    const staleArchive = path.join(archives, "old.source.tar.gz");
    await mkdir(path.join(staleBuild, "src"), { recursive: true });
    await mkdir(archives, { recursive: true, mode: 0o700 });
    await writeFile(staleArchive, "a dead poolkeeper's");
    const sweep = sweepLeftovers({
      instancesDir: path.join(work, "instances"),
      uids: undefined,
      isolation: { uids: undefined, setpriv: undefined },
      keep: () => false,
      log: createLogger("poolkeeper", "info", { write: () => undefined }),
      buildsDir: builds,
    });
    // A build of this poolkeeper, started once the names were read.
    const fresh = path.join(archives, "new.source.tar.gz");
    await writeFile(fresh, "this poolkeeper's build");
    await sweep.done;
    expect(existsSync(staleBuild), "the stale build directory").to.equal(false);
    expect(existsSync(staleArchive), "the stale archive").to.equal(false);
    expect(existsSync(fresh), "this poolkeeper's archive").to.equal(true);
  });
});
