import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { createLogger } from "@fizz/kit";
import type { BackendInstance } from "../src/backend";
import { BuildSandbox } from "../src/build/sandbox";
import { trackChild, type ChildTracking } from "../src/instance-exit";
import { UidPool } from "../src/isolation";
import { removeOrLock } from "../src/remove-or-lock";
import { lockDir } from "../src/lock-dir";
import { ASYNC_CALLS, type Calls } from "../src/remove-calls";
import type { ChildLike } from "../src/spawner-child";
import { killUid } from "../src/uid-cleanup";
import {
  alive,
  asUid,
  isRoot,
  PYTHON,
  removeDir,
  SETPRIV,
  sleep,
  tempDir,
  until,
} from "./process-helpers";

// A tenant's directory another uid writes in (a 0777 subdirectory the function made) while it is
// removed: a writer that stays alive can always make the removal fail (rmdir's ENOTEMPTY). It
// kept the uid reserved for good, so two colluding tenants drained the pool one failure at a time.

/** Creates the same 64 names again and again in its cwd, ignoring every error, until killed. */
const WRITER = `
import os
i = 0
while True:
    try:
        os.close(os.open("w%d" % (i % 64), os.O_CREAT | os.O_WRONLY, 0o644))
    except OSError:
        pass
    i += 1
`;

/** Quick retries: the first failure's lock, then the removal while the writer is still alive. */
const RETRY_MS = [1000, 200, 400, 800, 1600];

/**
 * What the function does before its end: its directory reachable by other uids (0711) and a 0777
 * subdirectory `s` in it, with a link to `outside` (whose owner and mode nothing may change);
 * then a writer of uid `other` with its cwd in `s`. Resolves once the writer has written.
 */
async function letWriterIn(dir: string, uid: number, other: number, outside: string) {
  const s = path.join(dir, "s");
  mkdirSync(s);
  chownSync(s, uid, uid);
  chmodSync(s, 0o777);
  chmodSync(dir, 0o711);
  symlinkSync(outside, path.join(dir, "link"));
  // Ahead of the poolkeeper's removal (nice -10) on a loaded 2-core host: else it sometimes loses.
  const writer = spawn("nice", ["-n", "-10", SETPRIV, ...asUid(other, [PYTHON, "-c", WRITER])], {
    cwd: s,
    stdio: "ignore",
  });
  const wrote = await until(() => readdirSync(s).length > 0, 200, 10);
  expect(wrote, "the writer writes in s").to.equal(true);
  return writer;
}

/** Whether `uid` can create `p` (a fresh process of it, as the uid's next tenant). */
function canCreate(uid: number, p: string): boolean {
  const r = spawnSync(SETPRIV, asUid(uid, ["/bin/sh", "-c", `: > "$1"`, "sh", p]));
  return r.status === 0;
}

/** The directories under `dir` (itself too) owned by `uid` now. */
function dirsOf(dir: string, uid: number): string[] {
  const found: string[] = [];
  const walk = (p: string) => {
    try {
      const st = lstatSync(p);
      if (!st.isDirectory()) return;
      if (st.uid === uid) found.push(p);
      for (const name of readdirSync(p)) walk(path.join(p, name));
    } catch {
      // removed meanwhile (the writer's own names)
    }
  };
  walk(dir);
  return found;
}

/** After the clean-up: the uid back, the tree root's and 0700, no one's by a path, then gone. */
async function expectLockedThenRemoved(
  dir: string,
  uid: number,
  other: number,
  outside: string,
  logged: string,
) {
  // The first removal locks each directory before listing it: the writer adds nothing to s once
  // it is being listed, and cannot make the removal fail (it always did while s was not locked).
  expect(logged, "the first removal failed (the writer won)").to.not.include("could not remove");
  // Else (a later pass's): it is locked: root's, 0700, no uid's.
  if (!existsSync(dir)) return;
  // The uid's next holder owns nothing in it: were s still its, a descriptor of s the writer
  // passes it (SCM_RIGHTS) would let it chmod s and read what the last holder kept there (0600).
  expect(dirsOf(dir, uid), "directories still the uid's when it is given back").to.deep.equal([]);
  const st = lstatSync(dir);
  expect([st.uid, st.gid, st.mode & 0o7777]).to.deep.equal([0, 0, 0o700]);
  for (const who of [uid, other]) {
    expect(canCreate(who, path.join(dir, "s", "new")), `uid ${who} creates in s`).to.equal(false);
    expect(canCreate(who, path.join(dir, "new")), `uid ${who} creates in the top`).to.equal(false);
  }
  // The retries lock each directory before listing it: the live writer cannot keep s non-empty.
  const gone = await until(() => !existsSync(dir), 400, 25);
  expect(gone, "removed by a retry while the writer still runs").to.equal(true);
  expectOutsideUntouched(outside, other);
}

function expectOutsideUntouched(outside: string, other: number) {
  const out = lstatSync(outside);
  expect([out.uid, out.mode & 0o7777], "the link's target untouched").to.deep.equal([other, 0o755]);
  expect(existsSync(path.join(outside, "precious"))).to.equal(true);
}

describe("removeOrLock: a tree another live uid keeps writing in", function () {
  this.timeout(60_000);
  let work: string;
  let base: number;
  let writer: ChildProcess | undefined;
  let outside: string;
  const lines: string[] = [];
  const logger = createLogger("poolkeeper", "info", { write: (l: string) => void lines.push(l) });

  beforeEach(function () {
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // uids of their own need root
    lines.length = 0;
    work = tempDir("fizz-remove-or-lock-");
    chmodSync(work, 0o755);
    base = 257_000 + Math.floor(Math.random() * 900);
    outside = path.join(work, "outside");
    mkdirSync(outside, { mode: 0o755 });
    writeFileSync(path.join(outside, "precious"), "keep me");
    chownSync(outside, base + 1, base + 1);
    chmodSync(outside, 0o755);
  });
  afterEach(async function () {
    if (!isRoot || !existsSync(SETPRIV)) return;
    writer?.kill("SIGKILL");
    await killUid(base + 1, undefined);
    await killUid(base, undefined);
    removeDir(work);
  });

  it("gives a build's uid back with its directory root's and 0700 (no uid writes in it), and removes it later, while another uid keeps writing in a 0777 subdirectory", async () => {
    const sandbox = new BuildSandbox({
      root: path.join(work, "builds"),
      isolation: { uids: { base, count: 1, lockDir: path.join(work, "locks") }, setpriv: SETPRIV },
      killGraceMs: 100,
      baseEnv: {},
      reach: [],
      logger,
      removalRetryMs: RETRY_MS,
    });
    const ws = await sandbox.open("writer");
    expect(ws.uid).to.equal(base);
    writer = await letWriterIn(ws.dir, base, base + 1, outside);

    await ws.dispose(); // rejected before (ENOTEMPTY), and the pool's one uid stayed reserved
    const next = await sandbox.open("next"); // NO_CAPACITY before
    expect(next.uid).to.equal(base);
    expect(alive(writer.pid ?? 0), "the writer still runs").to.equal(true);
    await expectLockedThenRemoved(ws.dir, base, base + 1, outside, lines.join(""));
    await next.dispose();
  });

  it("gives an instance's uid back with its directory root's and 0700 (no uid writes in it), and removes it later, while another uid keeps writing in a 0777 subdirectory", async () => {
    const uids = new UidPool(base, 1, path.join(work, "locks"));
    const t: ChildTracking = {
      children: new Map(),
      exitListeners: [],
      outputListeners: [],
      outputGate: undefined,
      cleanups: new Set(),
      isolation: { uids: { base, count: 1, lockDir: path.join(work, "locks") }, setpriv: SETPRIV },
      uids,
      log: logger,
      removalRetryMs: RETRY_MS,
    };
    const uid = uids.take();
    const dir = path.join(work, "instances", "i1");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(path.dirname(dir), 0o711);
    chownSync(dir, uid, uid);
    writer = await letWriterIn(dir, uid, base + 1, outside);

    // The instance's process, ended: its clean-up kills the uid, removes the directory, gives back.
    const proc = Object.assign(new EventEmitter(), {
      pid: undefined,
      stdin: null,
      stdout: null,
      stderr: null,
      stdio: [],
      exitCode: 0,
      signalCode: null,
      kill: () => false,
    }) as unknown as ChildLike;
    const instance = { id: "i1", address: "", environment: {}, startedAt: 0 } as BackendInstance;
    trackChild(t, instance, proc, dir, uid);
    (proc as unknown as EventEmitter).emit("close");
    while (t.cleanups.size > 0) await Promise.all([...t.cleanups]);

    expect(uids.take(), "the uid given back").to.equal(uid); // threw NO_CAPACITY before
    expect(alive(writer.pid ?? 0), "the writer still runs").to.equal(true);
    await expectLockedThenRemoved(dir, uid, base + 1, outside, lines.join(""));
  });

  it("attack: a file of the uid that another uid holds a descriptor of (O_PATH) is root's once the uid is given back, so the uid's next holder cannot reopen it", async () => {
    // The function kept a 0600 secret in a 0777 directory: a process of another uid can open it
    // O_PATH (search permission is enough) and keep the descriptor after the unlink. Still the
    // uid's, its next holder, handed that descriptor (SCM_RIGHTS), reopens it through
    // /proc/self/fd as the owner and reads the secret.
    const dir = path.join(work, "inst");
    mkdirSync(dir);
    chownSync(dir, base, base);
    chmodSync(dir, 0o711);
    const s = path.join(dir, "s");
    mkdirSync(s);
    chownSync(s, base, base);
    chmodSync(s, 0o777);
    const secret = path.join(s, "secret");
    writeFileSync(secret, "the last tenant's", { mode: 0o600 });
    chownSync(secret, base, base);
    // Made root's, a setuid file of the uid must not become setuid root (the kernel drops the bit
    // on a chown): the holder could exec it through its descriptor.
    chmodSync(secret, 0o4755);
    const hold = `import os, sys, time
fd = os.open(${JSON.stringify(secret)}, os.O_PATH)
print(fd, flush=True)
time.sleep(600)`;
    writer = spawn(SETPRIV, asUid(base + 1, [PYTHON, "-c", hold]), {
      stdio: ["ignore", "pipe", "ignore"],
    });
    const held = await new Promise<string>((resolve) =>
      writer?.stdout?.once("data", (d: Buffer) => resolve(d.toString().trim())),
    );
    const out = await removeOrLock(dir, { log: logger, what: "an instance" });
    expect(out, "the uid may be given back").to.equal(true);
    expect(existsSync(dir)).to.equal(false);
    const st = statSync(`/proc/${writer.pid}/fd/${held}`);
    expect(st.uid, "the held file is no longer the uid's").to.not.equal(base);
    expect(st.mode & 0o6000, "no setuid or setgid bit").to.equal(0);
  });

  it("keeps the uid when a directory of its in the tree could not be locked (the pass failed there), instead of giving it back with that directory still the uid's", async () => {
    const dir = path.join(work, "inst");
    mkdirSync(dir);
    chownSync(dir, base, base);
    const s = path.join(dir, "s");
    mkdirSync(s);
    chownSync(s, base, base);
    chmodSync(s, 0o777);
    writeFileSync(path.join(s, "f"), "x");
    // s can be neither locked nor removed (as an EIO would): it stays, the uid's and 0777.
    const isS = (p: string) => p === s || p.endsWith("/s");
    const eio = () => Object.assign(new Error("EIO: injected"), { code: "EIO" });
    const calls: Calls = {
      ...ASYNC_CALLS,
      lock: (fd) => {
        if (isS(readlinkSync(`/proc/self/fd/${fd}`))) throw eio();
        return ASYNC_CALLS.lock(fd);
      },
      rmdir: (p) => {
        if (isS(p)) throw eio();
        return ASYNC_CALLS.rmdir(p);
      },
    };
    const out = await removeOrLock(dir, {
      log: logger,
      what: "an instance",
      calls,
      retryDelaysMs: [],
    });
    expect(lstatSync(s).uid, "s is still the uid's").to.equal(base);
    expect(out, "the uid given back").to.equal(false); // true before: a 0777 directory of the uid left
  });

  it("attack: lockDir on a link to another uid's directory changes nothing there (no link followed)", () => {
    const link = path.join(work, "instances-link");
    symlinkSync(outside, link);
    expect(lockDir(link)).to.equal(undefined);
    const out = lstatSync(outside);
    expect([out.uid, out.mode & 0o7777]).to.deep.equal([base + 1, 0o755]);
    expect(lstatSync(link).isSymbolicLink()).to.equal(true);
  });

  it("keeps a build's uid while its directory can be neither removed nor locked, and gives it back once a later removal ends (not kept for good)", async function () {
    if (!existsSync("/usr/bin/chattr")) this.skip();
    const sandbox = new BuildSandbox({
      root: path.join(work, "builds"),
      isolation: { uids: { base, count: 1, lockDir: path.join(work, "locks") }, setpriv: SETPRIV },
      killGraceMs: 100,
      baseEnv: {},
      reach: [],
      logger,
      removalRetryMs: [200, 200, 200, 200, 200, 200, 200, 200, 200, 200],
    });
    const ws = await sandbox.open("immutable");
    writeFileSync(path.join(ws.dir, "f"), "x");
    // Immutable: neither fchown (the lock) nor unlink in it works, even for root.
    const chattr = (flag: string) => spawnSync("/usr/bin/chattr", [flag, ws.dir]).status;
    if (chattr("+i") !== 0) this.skip(); // a filesystem without the attribute
    try {
      let refused: unknown;
      await ws.dispose().catch((e: unknown) => (refused = e));
      expect(refused, "dispose refused").to.not.equal(undefined);
      let err: unknown;
      await sandbox.open("meanwhile").catch((e: unknown) => (err = e));
      expect((err as { code?: string } | undefined)?.code, "the uid kept").to.equal("NO_CAPACITY");
    } finally {
      chattr("-i");
    }
    // The uid goes back right after the removal's last call (a moment after the directory is gone).
    let next: Awaited<ReturnType<typeof sandbox.open>> | undefined;
    for (let i = 0; i < 200 && !next; i++)
      next = await sandbox.open("next").catch(() => sleep(25).then(() => undefined));
    expect(existsSync(ws.dir), "removed by a later try").to.equal(false);
    if (!next) throw new Error("the uid was not given back"); // NO_CAPACITY for good before
    expect(next.uid).to.equal(base);
    await next.dispose();
  });
});
