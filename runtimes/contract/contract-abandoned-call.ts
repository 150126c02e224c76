// The runtime contract (docs/runtime-contract.md, "User traffic"): a call whose client goes away
// (the gateway enforces a function's timeout by aborting the proxied request) keeps its
// concurrency slot until its function returns, then frees it, once. Freed at the abort, the
// function still runs beside the next calls, past the instance's `concurrency`; never freed, the
// instance is wedged. A runtime may instead stop the function when its client leaves (PHP kills
// the call's process): nothing of it runs on, and its slot is free at once.
//
// Only the function can tell whether it still runs, so the check reads what it prints: the call
// markers' `twice` function (contract-call-markers.ts), or the `twicePrinter` of a runtime without
// call markers (runtime-under-test.ts), writes `one <tag>`, waits, writes `two <tag>`. A runtime
// with neither gets the weaker check that the instance is not wedged.
import http from "node:http";
import { expect } from "chai";
import { ME } from "./contract-lifecycle.js";
import { type HttpResult, type Runtime, eventually, request, sleep } from "./harness.js";
import type { StartOptions } from "./harness.js";

type Start = (env?: Record<string, string>, options?: StartOptions) => Promise<Runtime>;

/** How to specialize a runtime with a function: the slow one, or the call markers' `logs`. */
export type DeployWith = (rt: Runtime, options: { concurrency: number }) => Promise<HttpResult>;

/** How long the calls take: far longer than a loaded machine needs to deliver the next ones. */
const BUSY_MS = 1500;

/** A call the client gives up on when `abort` is called, as the gateway does at a timeout. */
function abandonableCall(url: string, path: string): { abort(): void } {
  const req = http.request(new URL(path, url), { headers: ME, agent: false });
  req.on("error", () => undefined); // the abort itself
  req.on("response", (res) => res.resume());
  req.end();
  return { abort: () => req.destroy() };
}

/** A call's status, 0 when its connection failed. */
const status = (rt: Runtime, path: string): Promise<number> =>
  request(rt.url, { path, headers: ME }).then(
    (res) => res.status,
    () => 0,
  );

const TAG = /^(one|two) (slot-\S+)$/;

/**
 * The calls whose function started while another one ran, from the `one`/`two` lines of the
 * `twice` function on stdout. A call with no `two` line was stopped by the runtime (its client
 * left) and is not counted as running.
 */
function overlaps(stdout: string): string[] {
  const lines = stdout.split("\n").flatMap((line) => {
    const m = TAG.exec(line);
    return m ? [{ what: m[1], tag: m[2] as string }] : [];
  });
  const ended = new Set(lines.filter((l) => l.what === "two").map((l) => l.tag));
  const running = new Set<string>();
  const found: string[] = [];
  for (const { what, tag } of lines) {
    if (what === "two") running.delete(tag);
    else if (ended.has(tag)) {
      if (running.size > 0) found.push(`${tag} started while ${[...running].join(", ")} ran`);
      running.add(tag);
    }
  }
  return found;
}

/** `logs`: the call markers' function or the twice printer, when the runtime has one; `slow`
 * answers after `path`'s wait. */
export function describeAbandonedCall(
  start: Start,
  slow: { deploy: DeployWith; path: string },
  logs?: DeployWith,
): void {
  describe("when the client gives up on a call at its timeout", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      const res = await (logs ?? slow.deploy)(rt, { concurrency: 1 });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    if (logs) {
      const twice = (tag: string) => `/?kind=twice&tag=slot-${tag}&ms=${BUSY_MS}`;

      it("keeps the call's slot until its function returns (no call runs beside it at concurrency 1), then frees it once", async () => {
        const gone = abandonableCall(rt.url, twice("gone"));
        await eventually(() => rt.stdout().includes("one slot-gone\n"), 10_000);
        gone.abort();
        // Far longer than a runtime needs to notice its client left (the C# one polls every
        // 25 ms). The next calls last as long as the abandoned one and start after it: once they
        // are answered, a function still running has printed its last line.
        await sleep(250);
        const next = await Promise.all([status(rt, twice("next-1")), status(rt, twice("next-2"))]);
        expect(next.sort(), "one served, the other served or refused").to.satisfy(
          (s: number[]) => s[0] === 200 && (s[1] === 200 || s[1] === 429),
        );
        // Freed once: a slot given back twice would let two of these run at once.
        const calls = ["a", "b", "c"].map((t) => status(rt, twice(`then-${t}`)));
        expect((await Promise.all(calls)).sort()).to.deep.equal([200, 200, 429]);
        expect(overlaps(rt.stdout()), "calls running at once").to.deep.equal([]);
        expect((await request(rt.url, { path: "/healthz" })).object().state).to.equal(
          "specialized",
        );
      });
    } else {
      it("releases the call's slot when the function returns and serves the next call", async () => {
        const gone = abandonableCall(rt.url, slow.path);
        await sleep(150);
        gone.abort();
        // Concurrency 1: had the slot leaked, the next call would wait forever (or be refused
        // with 429), and so would the two after it (one running, one queued).
        const next = [await status(rt, slow.path)];
        next.push(...(await Promise.all([status(rt, slow.path), status(rt, slow.path)])));
        expect(next).to.deep.equal([200, 200, 200]);
        expect((await request(rt.url, { path: "/healthz" })).object().state).to.equal(
          "specialized",
        );
      });
    }
  });
}
