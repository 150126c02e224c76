import { readFile } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { startPlatform, type Platform } from "./helpers";
import { workerJs, type WorkerAnswer } from "./functions";
import {
  alive,
  dumpLogsOnFailure,
  eventually,
  Instances,
  fizzOk,
  sleep,
  timed,
  type Timed,
} from "./probes";

/**
 * Issue 3, updates under traffic: `fizz fn update --code` while requests keep coming. No request
 * fails, none that starts after the CLI returned (the update was acknowledged) gets the old code,
 * requests in flight on the old code finish, and the old instances drain and then retire.
 */
describe("updating a function under traffic, end to end", function () {
  this.timeout(60_000);
  let p: Platform;
  let instances: Instances;

  before(async () => {
    p = await startPlatform({
      FIZZ_REAP_INTERVAL_MS: "200",
      FIZZ_REPORT_INTERVAL_MS: "200",
      FIZZ_DRAIN_MS: "1000",
      FIZZ_KILL_GRACE_MS: "500",
    });
    instances = await Instances.connect(p);
    await p.file("v1.js", workerJs("v1"));
    await p.file("v2.js", workerJs("v2"));
    await p.file("v3.js", workerJs("v3"));
    await p.file("p1.py", 'def main(context):\n    return "p1"\n');
    await p.file("p2.py", 'def main(context):\n    return "p2"\n');
    await fizzOk(p, "env create --name node --image fizz/env-node --poolsize 3");
    await fizzOk(p, "env create --name python --image fizz/env-python --poolsize 2");
  });
  after(async () => {
    await instances?.close();
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p, 120));

  interface Sample extends Timed {
    loop: number;
  }

  /** `loops` request loops (each sequential), running until stop() is called. */
  function traffic(url: string, loops: number) {
    const samples: Sample[] = [];
    let running = true;
    const done = Promise.all(
      Array.from({ length: loops }, async (_, loop) => {
        while (running) samples.push({ ...(await timed(url)), loop });
      }),
    );
    return {
      samples,
      stop: async () => {
        running = false;
        await done;
      },
    };
  }

  const answerOf = (s: Timed) => {
    try {
      return (JSON.parse(s.text) as WorkerAnswer).answer;
    } catch {
      return s.text;
    }
  };

  function describeBad(samples: Sample[], bad: Sample[], t0: number) {
    return bad
      .slice(0, 10)
      .map(
        (s) =>
          `loop ${s.loop} at +${Math.round(s.startedAt - t0)}ms: ${s.status} ${s.error ?? s.text.slice(0, 200)}`,
      )
      .concat(`(${bad.length} of ${samples.length})`)
      .join("\n");
  }

  it("a sequential loop and concurrent loops see no error and no old answer after fn update returns", async () => {
    await fizzOk(
      p,
      "fn create --name ver --env node --code v1.js --concurrency 4 --max-instances 4",
    );
    const url = `${p.gatewayUrl}/function/ver`;
    const first = await timed(url);
    expect(first.status, first.text || first.error).to.equal(200);
    const t0 = performance.now();
    // One sequential loop plus three more running side by side.
    const load = traffic(url, 4);
    await sleep(700);
    // A slow request in flight on the old code when the update lands: it must finish there.
    const slow = timed(`${url}?ms=1500`);
    await sleep(200);
    const v1Ids = new Set((await instances.of("ver", { revision: 1 })).map((i) => i.id));
    expect(v1Ids.size).to.be.at.least(1);
    const v1Pids = [...v1Ids]
      .map((id) => load.samples.find((s) => answerOf(s) === "v1" && s.text.includes(id)))
      .map((s) => (s ? (JSON.parse(s.text) as WorkerAnswer).pid : undefined))
      .filter((x): x is number => x !== undefined);

    await fizzOk(p, "fn update --name ver --code v2.js");
    const acked2 = performance.now();
    await sleep(1000);
    await fizzOk(p, "fn update --name ver --code v3.js");
    const acked3 = performance.now();
    await sleep(1000);
    await load.stop();
    const slowR = await slow;

    const samples = load.samples;
    const failed = samples.filter((s) => s.status !== 200);
    expect(failed, `errors during the updates:\n${describeBad(samples, failed, t0)}`).to.deep.equal(
      [],
    );
    expect(slowR.status, slowR.text || slowR.error).to.equal(200);
    expect(
      answerOf(slowR),
      "the request in flight during the update finished on the old code",
    ).to.equal("v1");

    const stale2 = samples.filter((s) => s.startedAt > acked2 && answerOf(s) === "v1");
    expect(
      stale2,
      `old answers after update 2 was acknowledged:\n${describeBad(samples, stale2, t0)}`,
    ).to.deep.equal([]);
    const stale3 = samples.filter((s) => s.startedAt > acked3 && answerOf(s) !== "v3");
    expect(
      stale3,
      `old answers after update 3 was acknowledged:\n${describeBad(samples, stale3, t0)}`,
    ).to.deep.equal([]);
    // The loops really ran through both updates.
    expect(samples.some((s) => answerOf(s) === "v1")).to.equal(true);
    expect(samples.some((s) => s.startedAt > acked2 && answerOf(s) === "v2")).to.equal(true);
    expect(samples.filter((s) => s.startedAt > acked3).length).to.be.at.least(4);
    console.log(`      ${samples.length} requests through two updates`);

    // Old instances drain, then retire: gone from the poolkeeper's list, processes ended.
    await eventually(
      "instances of revisions 1 and 2 retired",
      async () => {
        const left = await instances.of("ver");
        return left.every((i) => i.function?.revision === 3) ? true : undefined;
      },
      10_000,
    );
    const listed = new Set((await instances.list()).map((i) => i.id));
    for (const id of v1Ids) expect(listed.has(id), `old instance ${id} is gone`).to.equal(false);
    await eventually(
      "old instance processes ended",
      () => v1Pids.every((pid) => !alive(pid)),
      5000,
    );
  });

  it("requests sent the moment the registry acknowledges an update (PATCH) never get the old code", async () => {
    // The CLI's own start-up and exit give the platform a head start; here nothing does: requests
    // leave the moment the PATCH that `fn update` sends is answered.
    await fizzOk(
      p,
      "fn create --name quick --env node --code v1.js --concurrency 8 --max-instances 4",
    );
    const url = `${p.gatewayUrl}/function/quick`;
    expect((await timed(url)).status).to.equal(200);
    const load = traffic(url, 2);
    const stale: string[] = [];
    const errors: string[] = [];
    // The admin token npm start writes into its data dir (.fizz/ of the work dir).
    const token = (await readFile(path.join(p.workDir, ".fizz", "admin-token"), "utf8")).trim();
    for (let rev = 2; rev <= 6; rev++) {
      const answer = `v${rev}`;
      const patch = await fetch(`${p.registryUrl}/v1/namespaces/default/functions/quick`, {
        method: "PATCH",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${token}`,
        },
        body: JSON.stringify({
          spec: {
            code: {
              filename: "quick.js",
              content: Buffer.from(workerJs(answer)).toString("base64"),
            },
          },
        }),
      });
      expect(patch.status, await patch.clone().text()).to.equal(200);
      expect(
        ((await patch.json()) as { metadata: { revision: number } }).metadata.revision,
      ).to.equal(rev);
      const after = await Promise.all(Array.from({ length: 12 }, () => timed(url)));
      for (const r of after) {
        if (r.status !== 200)
          errors.push(`after ${answer}: ${r.status} ${r.error ?? r.text.slice(0, 200)}`);
        else if (answerOf(r) !== answer)
          stale.push(`after ${answer} acknowledged: got ${answerOf(r)}`);
      }
      await sleep(300);
    }
    await load.stop();
    const loopErrors = load.samples.filter((s) => s.status !== 200);
    expect(
      errors.concat(loopErrors.map((s) => `loop: ${s.status} ${s.error ?? s.text.slice(0, 200)}`)),
    ).to.deep.equal([]);
    expect(stale).to.deep.equal([]);
  });

  it("a Python function updated under concurrent loops: no error, no old answer after the CLI returns", async () => {
    await fizzOk(
      p,
      "fn create --name pyver --env python --code p1.py --concurrency 4 --max-instances 3",
    );
    const url = `${p.gatewayUrl}/function/pyver`;
    const first = await timed(url);
    expect(first.status, first.text || first.error).to.equal(200);
    expect(first.text).to.equal("p1");
    const t0 = performance.now();
    const load = traffic(url, 3);
    await sleep(700);
    await fizzOk(p, "fn update --name pyver --code p2.py");
    const acked = performance.now();
    await sleep(1200);
    await load.stop();
    const samples = load.samples;
    const failed = samples.filter((s) => s.status !== 200);
    expect(failed, `errors during the update:\n${describeBad(samples, failed, t0)}`).to.deep.equal(
      [],
    );
    const stale = samples.filter((s) => s.startedAt > acked && s.text !== "p2");
    expect(
      stale,
      `old answers after the update was acknowledged:\n${describeBad(samples, stale, t0)}`,
    ).to.deep.equal([]);
    expect(samples.filter((s) => s.startedAt > acked).length).to.be.at.least(3);
    await eventually(
      "revision 1 instances of pyver retired",
      async () => (await instances.of("pyver", { revision: 1 })).length === 0,
      10_000,
    );
  });
});
