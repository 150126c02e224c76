// The runtime contract (docs/runtime-contract.md, "Function output"): the call marker. A runtime
// prints `callMarker(<X-Request-Id>)` on a line of its own on stdout and on stderr before a call's
// first output on that stream, and `callMarker("")` before output that belongs to no call; the
// poolkeeper strips those lines and tags the lines after them with the request id
// (shared/events/src/logs.ts). Checked on the runtime process's raw stdout and stderr, in the full
// suite and, for a custom environment that declares it prints markers, in the core suite.
import { callMarker, parseCallMarker } from "@fizz/events";
import { expect } from "chai";
import { ME } from "./contract-lifecycle.js";
import {
  type HttpResult,
  type Runtime,
  type StartOptions,
  eventually,
  request,
} from "./harness.js";
import type { Source } from "./runtime-under-test.js";

/**
 * A runtime that prints call markers gives the suite this (`callMarkers` of its RuntimeUnderTest
 * or CoreRuntimeUnderTest); one that prints none leaves it out, and these checks do not run.
 */
export interface CallMarkers {
  /**
   * The checks' function. It answers according to the `kind` query parameter, `<tag>` being the
   * `tag` query parameter; every line it writes goes through the language's usual way of printing
   * (console.log / print / puts / echo, and the stderr equivalent):
   * - `both`: writes the line `out <tag>` to stdout and the line `err <tag>` to stderr, answers
   *   the text `printed`;
   * - `silent`: writes nothing, answers `quiet`;
   * - `partial`: writes `part <tag>` to stdout without a line end, answers `partial`;
   * - `twice`: writes the line `one <tag>` to stdout, waits the `ms` query parameter's
   *   milliseconds, writes the line `two <tag>` to stdout, answers `twice`;
   * - `later` (only when `later` is not false): answers `later` at once and, about 300 ms after,
   *   from outside the call (a timer or a thread the call started), writes the line `after <tag>`
   *   to stdout.
   */
  logs: Source;
  /** The language lets a function print after its call ended (a timer, a thread); default true. */
  later?: boolean;
  /** Calls run side by side in one instance with concurrency > 1; default true. */
  concurrent?: boolean;
}

type Start = (env?: Record<string, string>, options?: StartOptions) => Promise<Runtime>;
type Deploy = (rt: Runtime, src: Source, options: { concurrency: number }) => Promise<HttpResult>;

/** A line of a stream and the request id the capturer would tag it with (`""`: none). */
interface TaggedLine {
  id: string;
  line: string;
}

/** What the poolkeeper's capturer makes of a stream: marker lines removed, the others tagged.
 * A last line without its line end is left out (it may still be coming). */
export function tagLines(raw: string): TaggedLine[] {
  const lines = raw.split("\n");
  lines.pop();
  const out: TaggedLine[] = [];
  let id = "";
  for (const line of lines) {
    const marked = parseCallMarker(line);
    if (marked === undefined) out.push({ id, line });
    else id = marked;
  }
  return out;
}

const marker = (id: string) => `${callMarker(id)}\n`;

/** The marker, for a language's own tests (they import nothing of the platform's but this suite). */
export { callMarker };

export function describeCallMarkers(start: Start, deploy: Deploy, markers: CallMarkers): void {
  const { logs, later = true, concurrent = true } = markers;

  describe("call markers on stdout and stderr", () => {
    let rt: Runtime;
    const call = (kind: string, id: string, query = "") =>
      request(rt.url, {
        path: `/?kind=${kind}${query}`,
        headers: { ...ME, "x-request-id": id },
      });
    const read = (stream: "stdout" | "stderr") => (stream === "stdout" ? rt.stdout() : rt.stderr());
    /** Resolves with what a stream gained since `since`, once it holds `until`. */
    const gained = async (stream: "stdout" | "stderr", since: number, until: string) => {
      await eventually(() => read(stream).includes(until), 10_000);
      return read(stream).slice(since);
    };
    before(async () => {
      rt = await start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await deploy(rt, logs, { concurrency: concurrent ? 4 : 1 });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("prints a call's marker on a line of its own before its first output on each stream", async () => {
      const [out, err] = [rt.stdout().length, rt.stderr().length];
      const res = await call("both", "call-1", "&tag=1");
      expect(res.status, res.text).to.equal(200);
      expect(res.text).to.equal("printed");
      expect(await gained("stdout", out, "out 1\n")).to.equal(`${marker("call-1")}out 1\n`);
      expect(await gained("stderr", err, "err 1\n")).to.equal(`${marker("call-1")}err 1\n`);
    });

    it("prints another call's own marker before its output", async () => {
      const [out, err] = [rt.stdout().length, rt.stderr().length];
      expect((await call("both", "call-2", "&tag=2")).text).to.equal("printed");
      expect(await gained("stdout", out, "out 2\n")).to.equal(`${marker("call-2")}out 2\n`);
      expect(await gained("stderr", err, "err 2\n")).to.equal(`${marker("call-2")}err 2\n`);
    });

    it("adds no byte to stdout or stderr for a call that prints nothing", async () => {
      const [out, err] = [rt.stdout().length, rt.stderr().length];
      expect((await call("silent", "call-3")).text).to.equal("quiet");
      // The next call's output comes after anything the silent one wrote, so the streams show
      // whether it wrote a marker.
      expect((await call("both", "call-4", "&tag=4")).text).to.equal("printed");
      expect(await gained("stdout", out, "out 4\n")).to.equal(`${marker("call-4")}out 4\n`);
      expect(await gained("stderr", err, "err 4\n")).to.equal(`${marker("call-4")}err 4\n`);
    });

    it("ends a call's unfinished line before the next call's marker", async () => {
      const out = rt.stdout().length;
      expect((await call("partial", "call-5", "&tag=5")).text).to.equal("partial");
      expect((await call("both", "call-6", "&tag=6")).text).to.equal("printed");
      expect(await gained("stdout", out, "out 6\n")).to.equal(
        `${marker("call-5")}part 5\n${marker("call-6")}out 6\n`,
      );
    });

    if (later) {
      it("marks output printed after the call ended as belonging to no call", async () => {
        const out = rt.stdout().length;
        expect((await call("later", "call-7", "&tag=7")).text).to.equal("later");
        expect(await gained("stdout", out, "after 7\n")).to.equal(`${marker("")}after 7\n`);
        // The next call is marked again.
        expect((await call("both", "call-8", "&tag=8")).text).to.equal("printed");
        const next = await gained("stdout", out, "out 8\n");
        expect(next).to.equal(`${marker("")}after 7\n${marker("call-8")}out 8\n`);
      });
    }

    if (concurrent) {
      it("marks the interleaved output of concurrent calls with each call's id", async () => {
        const out = rt.stdout().length;
        // The first call waits long enough that the second one prints both its lines between the
        // first one's two, however loaded the machine.
        const first = call("twice", "call-a", "&tag=a&ms=1500");
        await eventually(() => rt.stdout().includes("one a\n"), 10_000);
        const second = call("twice", "call-b", "&tag=b&ms=0");
        for (const res of await Promise.all([first, second])) expect(res.text).to.equal("twice");
        const tagged = tagLines(await gained("stdout", out, "two a\n"));
        expect(tagged).to.have.deep.members([
          { id: "call-a", line: "one a" },
          { id: "call-a", line: "two a" },
          { id: "call-b", line: "one b" },
          { id: "call-b", line: "two b" },
        ]);
      });
    }
  });
}
