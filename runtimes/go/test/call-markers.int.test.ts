// The Go runtime's call markers (runtime/fizz_marks.go). A Go function writes straight to fd 1
// and 2, so the runtime cannot tell whose a write is: it marks both streams while exactly one
// call runs and leaves them unmarked while calls overlap. The contract's lazy-marker checks
// (runtimes/contract/contract-call-markers.ts) do not apply; these check what Go promises
// instead: a line is tagged with a request id only when that call was the only one running.
import { expect } from "chai";
import { packageArchive } from "../../contract/archive.js";
import { type Runtime, eventually, request, specializeArchive } from "../../contract/harness.js";
import { ME, tagLines } from "../../contract/runtime-contract.js";
import { compile, ensurePrepared, goRuntime } from "./fixtures.js";

const LOGS = [
  "package main",
  "",
  "import (",
  '\t"fmt"',
  '\t"net/http"',
  '\t"os"',
  '\t"strconv"',
  '\t"time"',
  ")",
  "",
  "func Handler(w http.ResponseWriter, r *http.Request) {",
  '\ttag := r.URL.Query().Get("tag")',
  '\tswitch r.URL.Query().Get("kind") {',
  '\tcase "both":',
  '\t\tfmt.Println("out " + tag)',
  '\t\tfmt.Fprintln(os.Stderr, "err "+tag)',
  '\tcase "twice":',
  '\t\tms, _ := strconv.Atoi(r.URL.Query().Get("ms"))',
  '\t\tfmt.Println("one " + tag)',
  "\t\ttime.Sleep(time.Duration(ms) * time.Millisecond)",
  '\t\tfmt.Println("two " + tag)',
  '\tcase "panic":',
  '\t\tpanic("boom " + tag)',
  "\t}",
  '\tw.Write([]byte("done"))',
  "}",
  "",
].join("\n");

/** The marker line as shared/events/src/logs.ts defines it (restated: these tests check the bytes). */
const marker = (id: string) => `\u001b_fizz:call=${id}\u001b\\\n`;

describe("go runtime: call markers", function () {
  this.timeout(300_000);
  let rt: Runtime;
  const call = (kind: string, id: string | undefined, query = "") =>
    request(rt.url, {
      path: `/?kind=${kind}${query}`,
      headers: id === undefined ? ME : { ...ME, "x-request-id": id },
    });
  const read = (stream: "stdout" | "stderr") => (stream === "stdout" ? rt.stdout() : rt.stderr());
  /** What a stream gained since `since`, once it holds `until`. */
  const gained = async (stream: "stdout" | "stderr", since: number, until: string) => {
    await eventually(() => read(stream).slice(since).includes(until), 10_000);
    return read(stream).slice(since);
  };

  before(async function () {
    this.timeout(900_000);
    await ensurePrepared();
    rt = await goRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
    const archive = await packageArchive(await compile({ "logs.go": LOGS }));
    const res = await specializeArchive(rt, archive, { concurrency: 4 });
    expect(res.status, res.text).to.equal(200);
  });
  after(() => rt.kill());

  it("marks both streams with the id of a call running alone, and clears them when it ends", async () => {
    const [out, err] = [rt.stdout().length, rt.stderr().length];
    expect((await call("both", "call-1", "&tag=1")).text).to.equal("done");
    const clear = marker("");
    expect(await gained("stdout", out, `out 1\n${clear}`)).to.equal(
      `${marker("call-1")}out 1\n${clear}`,
    );
    expect(await gained("stderr", err, `err 1\n${clear}`)).to.equal(
      `${marker("call-1")}err 1\n${clear}`,
    );
  });

  it("writes no marker for a call without a request id, or with one the capturer would refuse", async () => {
    const [out, err] = [rt.stdout().length, rt.stderr().length];
    expect((await call("both", undefined, "&tag=2")).text).to.equal("done");
    expect((await call("both", "not a token", "&tag=3")).text).to.equal("done");
    expect(await gained("stdout", out, "out 3\n")).to.equal("out 2\nout 3\n");
    expect(await gained("stderr", err, "err 3\n")).to.equal("err 2\nerr 3\n");
  });

  it("leaves the lines of overlapping calls untagged, never tagged with the other call", async () => {
    const out = rt.stdout().length;
    const first = call("twice", "call-a", "&tag=a&ms=1500");
    await eventually(() => rt.stdout().slice(out).includes("one a\n"), 10_000);
    const second = call("twice", "call-b", "&tag=b&ms=0");
    for (const res of await Promise.all([first, second])) expect(res.text).to.equal("done");
    const tagged = tagLines(await gained("stdout", out, "two a\n"));
    expect(tagged).to.deep.equal([
      { id: "call-a", line: "one a" },
      { id: "", line: "one b" },
      { id: "", line: "two b" },
      { id: "", line: "two a" },
    ]);
  });

  it("tags a panic's trace with its call, also while another call runs", async () => {
    const err = rt.stderr().length;
    expect((await call("panic", "call-p", "&tag=p")).status).to.equal(500);
    const slow = call("twice", "call-s", "&tag=s&ms=1500");
    await eventually(() => rt.stdout().includes("one s\n"), 10_000);
    expect((await call("panic", "call-q", "&tag=q")).status).to.equal(500);
    expect((await slow).text).to.equal("done");
    const tagged = tagLines(await gained("stderr", err, "boom q"));
    const about = (id: string) =>
      tagged.filter((l) => l.line.startsWith(`[fizz] function error (request ${id})`));
    expect(about("call-p")).to.have.length(1);
    expect(about("call-p")[0]?.id).to.equal("call-p");
    expect(about("call-q")).to.have.length(1);
    expect(about("call-q")[0]?.id).to.equal("call-q");
    // The stack printed with it is the call's too.
    const goroutine = tagged.findIndex((l) => l.line.startsWith("goroutine ") && l.id === "call-q");
    expect(goroutine).to.be.greaterThan(-1);
  });
});
