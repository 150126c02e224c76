import { expect } from "chai";
import { KillPasses } from "../src/spawner-passes";

/** The answers of the spawner's kill passes as the clean-up reads them (spawner-passes.ts). */
describe("spawner kill passes: answers", () => {
  const PASS = { ruid: 257_999, uid: 258_001, lock: "" };

  it("sends a pass with a monotonic deadline and answers its exit code", async () => {
    const passes = new KillPasses();
    const sent: Array<Record<string, unknown>> = [];
    const answer = passes.ask(7, PASS, (msg) => sent.push(msg as Record<string, unknown>) > 0);
    expect(sent).to.have.length(1);
    expect(sent[0]).to.deep.include({ op: "killpass", id: 7, ...PASS });
    const now = Number(process.hrtime.bigint() / 1_000_000n);
    expect(sent[0]!.by).to.be.within(now + 3_000, now + 4_001);
    passes.answered(7, 0);
    expect(await answer).to.equal(0);
  });

  it("answers a pass that signalled nothing (past its deadline, or failed before its signals) as not run", async () => {
    const passes = new KillPasses();
    for (const [id, code] of [
      [1, 5],
      [2, 1],
      [3, null],
    ] as const) {
      const answer = passes.ask(id, PASS, () => true);
      passes.answered(id, code);
      expect(await answer, `exit ${code}`).to.equal(undefined);
    }
    // 3 and 4 (the uid switch failed, a capability kept): the setpriv pass follows, as before.
    const switchFailed = passes.ask(4, PASS, () => true);
    passes.answered(4, 3);
    expect(await switchFailed).to.equal(3);
  });

  it("answers a pass that could not be sent at once, as not run", async () => {
    expect(await new KillPasses().ask(1, PASS, () => false)).to.equal(undefined);
  });
});
