import { spawn } from "node:child_process";
import { expect } from "chai";
import { Supervisor } from "../../scripts/lib/supervisor.mjs";

/** `npm start`'s restart policy on plain processes: fast restarts, growing back-off, clean stop. */
describe("supervisor", () => {
  const forever = () => spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
  const crashing = () => spawn(process.execPath, ["-e", "process.exit(3)"]);

  it("restarts a killed process and keeps the others running", async () => {
    const exits: string[] = [];
    const s = new Supervisor({ onExit: (e) => exits.push(`${e.name}:${e.signal ?? e.code}`) });
    s.add("a", forever);
    const other = s.add("b", forever);
    s.arm();
    const before = s.kill("a");
    await s.restarted("a", before, 10_000);
    expect(s.restarts("a")).to.equal(1);
    expect(exits).to.deep.equal(["a:SIGKILL"]);
    expect(other.exitCode, "b untouched").to.equal(null);
    expect(s.children.find((c) => c.name === "b")?.child).to.equal(other);
    await s.stop([["a", "b"]]);
  });

  it("backs off exponentially, capped, for a process that keeps crashing", async () => {
    const delays: number[] = [];
    const s = new Supervisor({
      initialMs: 20,
      maxMs: 80,
      onExit: (e) => delays.push(e.delayMs),
    });
    s.add("c", crashing);
    s.arm();
    while (delays.length < 5) await new Promise((r) => setTimeout(r, 20));
    await s.stop([["c"]]);
    expect(delays.slice(0, 5)).to.deep.equal([20, 40, 80, 80, 80]);
  });

  it("does not restart anything once stopping, and stops every process", async () => {
    const s = new Supervisor({ initialMs: 10 });
    const a = s.add("a", forever);
    s.arm();
    await s.stop([["a"]]);
    await new Promise((r) => setTimeout(r, 100));
    expect(a.signalCode).to.equal("SIGTERM");
    expect(s.restarts("a")).to.equal(0);
  });

  it("leaves an exit before arm() to the launcher (a start-up failure is reported, not retried)", async () => {
    const s = new Supervisor({ initialMs: 10 });
    const c = s.add("c", crashing);
    await new Promise((r) => c.once("exit", r));
    await new Promise((r) => setTimeout(r, 100));
    expect(s.restarts("c")).to.equal(0);
    await s.stop([["c"]]);
  });
});
