// The runtime contract (docs/runtime-contract.md, "Function output"): the call marker. A runtime
// prints `callMarker(<X-Request-Id>)` on a line of its own on stdout and on stderr before a call's
// first output on that stream, and `callMarker("")` before output that belongs to no call; the
// poolkeeper strips those lines and tags the lines after them with the request id
// (shared/events/src/logs.ts). Checked on the runtime process's raw stdout and stderr, in the full
// suite and, for a custom environment that declares it prints markers, in the core suite.
import { callMarker, parseCallMarker } from "@fizz/events";
import { expect } from "chai";
import { ME, push } from "./contract-lifecycle.js";
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
   *   to stdout;
   * - `raw` (only when `raw` is true): writes the line `said <tag>` to stdout the usual way,
   *   answers `ok` and, about 200 ms after, from outside the call, writes the line `raw <tag>`
   *   straight to file descriptor 1, around the language's stream (as a child process with
   *   inherited stdio, native code or a logger writing to the fd does).
   */
  logs: Source;
  /** The language lets a function print after its call ended (a timer, a thread); default true. */
  later?: boolean;
  /** Calls run side by side in one instance with concurrency > 1; default true. */
  concurrent?: boolean;
  /** The function can write to fd 1 around the language's stream after its call; default false. */
  raw?: boolean;
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
  const { logs, later = true, concurrent = true, raw = false } = markers;

  describe("call markers on stdout and stderr", () => {
    let rt: Runtime;
    const call = (kind: string, id: string, query = "") =>
      request(rt.url, {
        path: `/?kind=${kind}${query}`,
        headers: { ...ME, "x-request-id": id },
      });
    const read = (stream: "stdout" | "stderr") => (stream === "stdout" ? rt.stdout() : rt.stderr());
    /**
     * The lines of a stream that end with ` <tag>`, tagged as the capturer would tag them, once
     * the stream holds `until`. The whole stream is read: a line's id depends on every marker
     * before it. Lines the runtime prints about anything else, and a marker that clears a stream
     * after a call, do not change the answer; a marker glued to a line does (that line then
     * shows it).
     */
    const tagged = async (stream: "stdout" | "stderr", tag: string, until: string) => {
      await eventually(() => read(stream).includes(until), 10_000);
      return tagLines(read(stream)).filter((l) => l.line.endsWith(` ${tag}`));
    };
    before(async () => {
      rt = await start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await deploy(rt, logs, { concurrency: concurrent ? 4 : 1 });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("prints a call's marker on a line of its own before its first output on each stream", async () => {
      const res = await call("both", "call-1", "&tag=m1");
      expect(res.status, res.text).to.equal(200);
      expect(res.text).to.equal("printed");
      expect(await tagged("stdout", "m1", "out m1\n")).to.deep.equal([
        { id: "call-1", line: "out m1" },
      ]);
      expect(await tagged("stderr", "m1", "err m1\n")).to.deep.equal([
        { id: "call-1", line: "err m1" },
      ]);
      expect(rt.stdout()).to.include(marker("call-1"));
    });

    it("prints another call's own marker before its output", async () => {
      expect((await call("both", "call-2", "&tag=m2")).text).to.equal("printed");
      expect(await tagged("stdout", "m2", "out m2\n")).to.deep.equal([
        { id: "call-2", line: "out m2" },
      ]);
      expect(await tagged("stderr", "m2", "err m2\n")).to.deep.equal([
        { id: "call-2", line: "err m2" },
      ]);
    });

    it("adds no byte to stdout or stderr for a call that prints nothing", async () => {
      expect((await call("silent", "call-3")).text).to.equal("quiet");
      // The next call's output comes after anything the silent one wrote.
      expect((await call("both", "call-4", "&tag=m4")).text).to.equal("printed");
      expect(await tagged("stdout", "m4", "out m4\n")).to.deep.equal([
        { id: "call-4", line: "out m4" },
      ]);
      expect(await tagged("stderr", "m4", "err m4\n")).to.deep.equal([
        { id: "call-4", line: "err m4" },
      ]);
      expect(rt.stdout()).not.to.include(callMarker("call-3"));
      expect(rt.stderr()).not.to.include(callMarker("call-3"));
    });

    it("ends a call's unfinished line before the next call's marker", async () => {
      expect((await call("partial", "call-5", "&tag=m5")).text).to.equal("partial");
      expect((await call("both", "call-6", "&tag=m6")).text).to.equal("printed");
      await tagged("stdout", "m6", "out m6\n");
      const lines = tagLines(rt.stdout());
      const at = lines.findIndex((l) => l.line.startsWith("part m5"));
      // The open line is ended before the next marker: it is not glued to it (it would then
      // show the marker) and the next call's line is its own.
      expect(lines.slice(at, at + 2)).to.deep.equal([
        { id: "call-5", line: "part m5" },
        { id: "call-6", line: "out m6" },
      ]);
    });

    if (later) {
      it("marks output printed after the call ended as belonging to no call", async () => {
        expect((await call("later", "call-7", "&tag=m7")).text).to.equal("later");
        expect(await tagged("stdout", "m7", "after m7\n")).to.deep.equal([
          { id: "", line: "after m7" },
        ]);
        // The next call is marked again.
        expect((await call("both", "call-8", "&tag=m8")).text).to.equal("printed");
        expect(await tagged("stdout", "m8", "out m8\n")).to.deep.equal([
          { id: "call-8", line: "out m8" },
        ]);
      });
    }

    if (raw) {
      it("tags nothing with a call once it ended, not even output written to the fd around the runtime", async () => {
        // The runtime cannot mark such a write: the stream must not be left marked with the call.
        expect((await call("raw", "call-9", "&tag=m9")).text).to.equal("ok");
        expect(await tagged("stdout", "m9", "raw m9\n")).to.deep.equal([
          { id: "call-9", line: "said m9" },
          { id: "", line: "raw m9" },
        ]);
      });
    }

    if (concurrent) {
      it("marks the interleaved output of concurrent calls with each call's id", async () => {
        // The first call waits long enough that the second one prints both its lines between the
        // first one's two, however loaded the machine.
        const first = call("twice", "call-a", "&tag=ma&ms=1500");
        await eventually(() => rt.stdout().includes("one ma\n"), 10_000);
        const second = call("twice", "call-b", "&tag=mb&ms=0");
        for (const res of await Promise.all([first, second])) expect(res.text).to.equal("twice");
        await tagged("stdout", "ma", "two ma\n");
        const lines = tagLines(rt.stdout()).filter((l) => / m[ab]$/.test(l.line));
        expect(lines).to.have.deep.members([
          { id: "call-a", line: "one ma" },
          { id: "call-a", line: "two ma" },
          { id: "call-b", line: "one mb" },
          { id: "call-b", line: "two mb" },
        ]);
      });
    }
  });
}

/** A runtime for a language's own marker tests, and a call to it by kind, request id and tag. */
export interface MarkedRuntime {
  rt: () => Runtime;
  call: (kind: string, id: string, tag: string) => Promise<HttpResult>;
}

/** Starts a runtime with `src` deployed before the block's tests, kills it after. */
export function markedRuntime(start: Start, src: Source): MarkedRuntime {
  let current: Runtime | undefined;
  const rt = () => {
    if (!current) throw new Error("the runtime has not started");
    return current;
  };
  before(async () => {
    current = await start({ FIZZ_INSTANCE_ID: "inst-1" });
    const res = await push(current, src);
    expect(res.status, res.text).to.equal(200);
  });
  after(() => current?.kill());
  return {
    rt,
    call: (kind, id, tag) =>
      request(rt().url, {
        path: `/?kind=${kind}&tag=${tag}`,
        headers: { ...ME, "x-request-id": id },
      }),
  };
}

/**
 * Output of a timer or thread started when the module loaded is no call's, even while a call
 * waits for it, and the call's own next line is marked again. The function's `work` kind prints
 * `in <tag>`, has that timer or thread print `worker <tag>` and waits for it, prints `done <tag>`.
 */
export async function checkLoadTimeWorker(marked: MarkedRuntime, tag: string): Promise<void> {
  const { rt, call } = marked;
  const out = rt().stdout().length;
  expect((await call("work", `call-${tag}`, tag)).text).to.equal("ok");
  await eventually(() => rt().stdout().includes(`done ${tag}\n`));
  expect(tagLines(rt().stdout().slice(out))).to.deep.equal([
    { id: `call-${tag}`, line: `in ${tag}` },
    { id: "", line: `worker ${tag}` },
    { id: `call-${tag}`, line: `done ${tag}` },
  ]);
}
