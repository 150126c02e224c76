import { expect } from "chai";
import type { ChildProcess } from "node:child_process";
import path from "node:path";
import { autogroupNice, REFILL_NICE, StartPriority } from "../src/instance-launch";
import {
  autogroupThroughSpawner,
  autogroupWritten,
  SpawnerError,
  type SpawnedChild,
  type Spawner,
  type SpawnRequest,
} from "../src/spawner-client";
import { canForcePids, impostorAtReapedPid, untilReaped } from "./process-helpers";
import { startRawSpawner, useSpawnerHarness } from "./spawner-harness";

const sleeper: SpawnRequest = {
  file: "sleep",
  args: ["300"],
  cwd: "/",
  env: { PATH: "/usr/bin:/bin" },
  stdio: ["pipe", "pipe", "pipe"],
};

/** Requests are handled in order: once this spawn is back, every earlier request was handled. */
async function roundTrip(sp: Spawner): Promise<void> {
  await sp.spawn({ ...sleeper, file: "true", args: [] });
}

/**
 * A refill started by the spawner is niced (StartPriority) through the spawner, which refuses once
 * it reaped the child: the poolkeeper learns of the exit later, and a write by pid in between
 * changed the priority of whatever session took the pid.
 */
describe("spawner: a refill's autogroup priority", function () {
  this.timeout(30_000);
  const h = useSpawnerHarness("fizz-spawner-a-");
  let sp: Spawner | undefined;
  let impostor: ChildProcess | undefined;

  before(function () {
    // Root with CAP_SYS_ADMIN and autogroups on, as StartPriority requires.
    if (!new StartPriority().enabled) this.skip();
  });
  beforeEach(async () => {
    sp = await h.start({ log: () => undefined });
  });
  afterEach(() => {
    impostor?.kill("SIGKILL");
    impostor = undefined;
  });

  it("lowers a live spawner child's session and restores it", async () => {
    const child = await sp!.spawn(sleeper);
    const restore = new StartPriority({ enabled: true }).lower(child, 60_000);
    await roundTrip(sp!);
    expect(autogroupNice(child.pid!)).to.equal(REFILL_NICE);
    restore();
    await roundTrip(sp!);
    expect(autogroupNice(child.pid!)).to.equal(0);
    child.kill("SIGKILL");
  });

  it("never writes the autogroup of the session that reused a reaped child's pid before its exit was read", async function () {
    if (!canForcePids()) this.skip(); // the reuse cannot be forced
    const priority = new StartPriority({ enabled: true });
    let child: SpawnedChild | undefined;
    impostor = await impostorAtReapedPid(async () => {
      child = await sp!.spawn(sleeper);
      process.kill(child.pid!, "SIGKILL");
      untilReaped(child.pid!); // by the spawner; its exit line stays unread
      return child.pid!;
    });
    if (!impostor) this.skip(); // the pid was always taken by another process first
    expect(child!.exitCode, "the exit is not read yet").to.equal(null);
    const restore = priority.lower(child!, 60_000);
    await roundTrip(sp!);
    expect(autogroupNice(impostor.pid!), "the session now at the reaped pid").to.equal(0);
    restore();
  });

  it("a nice request with a bad value or id changes nothing, names the field on stderr, and the spawner serves on", async () => {
    // Its own protocol, on its stdin (the client never sends such a request).
    const raw = startRawSpawner(path.join(h.dir, "none.sock"));
    const send = raw.send;
    const base = { op: "spawn", token: "0".repeat(32), cwd: "/", env: { PATH: "/usr/bin:/bin" } };
    const stdio = ["ignore", "ignore", "ignore"];
    const spawned = raw.seen("spawned", 1);
    send({ ...base, id: 1, file: "sleep", args: ["sleep", "300"], stdio });
    const pid = (await spawned)!.pid as number;
    for (const nice of ["10", 20, -21, 1.5, true, null]) send({ op: "nice", id: 1, nice });
    send({ op: "nice", id: "1", nice: 10 });
    send({ op: "nice", id: 99, nice: 10 }); // unknown (or reaped): refused, silently
    const done = raw.seen("exit", 2);
    send({ ...base, id: 2, file: "true", args: ["true"], stdio });
    await done;
    expect(autogroupNice(pid), "unchanged").to.equal(0);
    send({ op: "nice", id: 1, nice: 5 });
    const done3 = raw.seen("exit", 3);
    send({ ...base, id: 3, file: "true", args: ["true"], stdio });
    await done3;
    expect(autogroupNice(pid)).to.equal(5);
    // Each nice request with an integer id is answered, in order: only the last one wrote.
    expect(raw.events.filter((e) => e.ev === "niced").map((e) => [e.id, e.ok])).to.deep.equal([
      ...Array.from({ length: 6 }, () => [1, false]),
      [99, false],
      [1, true],
    ]);
    expect(await raw.end()).to.deep.equal([0, null]);
    expect(raw.errors).to.deep.equal([
      ...Array.from(
        { length: 6 },
        () => "fizz-spawner: nice: nice must be an integer from -20 to 19",
      ),
      "fizz-spawner: nice: id must be an integer",
    ]);
  });

  it("a write's answer never holds a refill for good: a spawner stopped past the spawn bound, or one that dies, answers it", async () => {
    const quick = await h.start({ log: () => undefined, spawnBoundMs: 100 });
    const c = await quick.spawn(sleeper);
    process.kill(quick.pid!, "SIGSTOP");
    try {
      expect(autogroupThroughSpawner(c)!(0)).to.equal(true);
      await autogroupWritten(c);
    } finally {
      process.kill(quick.pid!, "SIGCONT");
    }
    c.kill("SIGKILL");

    const child = await sp!.spawn(sleeper);
    const write = autogroupThroughSpawner(child)!;
    process.kill(sp!.pid!, "SIGSTOP");
    let answered = false;
    let written: Promise<unknown> | undefined;
    try {
      expect(write(0), "sent").to.equal(true);
      written = autogroupWritten(child).then(() => (answered = true));
      await new Promise((r) => setImmediate(r));
      expect(answered, "answered by a stopped spawner").to.equal(false);
    } finally {
      process.kill(sp!.pid!, "SIGKILL"); // a stopped one would never end at close
    }
    await written;
    expect(sp!.usable).to.equal(false);
    await autogroupWritten({}); // not a spawner child: at once
  });

  it("the client refuses a niceness outside -20..19 before sending it", async () => {
    const child = await sp!.spawn(sleeper);
    const write = autogroupThroughSpawner(child)!;
    for (const bad of [20, -21, 1.5])
      expect(() => write(bad)).to.throw(SpawnerError, /nice must be/);
    expect(autogroupThroughSpawner({})).to.equal(undefined);
    child.kill("SIGKILL");
  });
});
