// The PHP runtime's call markers (src/output.php). Calls run in processes of their own, side by
// side, on the instance's shared stdout and stderr, so a call's write is whole on its own: its
// marker, its complete lines, and the clearing marker, in one write. The contract's checks
// (runtimes/contract/contract-call-markers.ts) need a plain stderr line to be marked, which
// fwrite(STDERR) is not here; these check what PHP does instead.
import { expect } from "chai";
import type { Runtime } from "../../contract/harness.js";
import { eventually, request } from "../../contract/harness.js";
import { ME, type Source, push, tagLines } from "../../contract/runtime-contract.js";
import { phpRuntime } from "./fixtures.js";

const LOGS: Source = {
  filename: "logs.php",
  source: `<?php
function handler($context)
{
    $q = $context['request']->getQueryParams();
    $tag = $q['tag'] ?? '';
    switch ($q['kind'] ?? '') {
        case 'both':
            echo "out $tag\\n";
            $context['logger']->info("log $tag");
            return 'printed';
        case 'partial':
            echo "part $tag";
            return 'partial';
        case 'twice':
            echo "one $tag\\n";
            usleep((int) $q['ms'] * 1000);
            echo "two $tag\\n";
            return 'twice';
        case 'many':
            echo implode('', array_map(fn ($i) => str_pad("line $i ", 60, 'x') . "\n", range(1, 200)));
            return 'many';
        case 'warn':
            $x = $undefined . $tag;
            return 'last: ' . (error_get_last()['message'] ?? 'none');
        case 'exit':
            echo "bye $tag";
            exit(0);
        case 'throw':
            throw new RuntimeException("boom $tag");
        default:
            return 'quiet';
    }
}
`,
};

/** The marker line as shared/events/src/logs.ts defines it (restated: these tests check the bytes). */
const marker = (id: string) => `\u001b_fizz:call=${id}\u001b\\\n`;
const CLEAR = marker("");

describe("php runtime: call markers", function () {
  this.timeout(60_000);
  let rt: Runtime;
  const call = (kind: string, id: string | undefined, query = "") =>
    request(rt.url, {
      path: `/?kind=${kind}${query}`,
      headers: id === undefined ? ME : { ...ME, "x-request-id": id },
    });
  /** What stdout gained since `since`, once it holds `until`. */
  const gained = async (since: number, until: string) => {
    await eventually(() => rt.stdout().slice(since).includes(until), 10_000);
    return rt.stdout().slice(since);
  };

  before(async () => {
    rt = await phpRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
    const res = await push(rt, LOGS, { concurrency: 4 });
    expect(res.status, res.text).to.equal(200);
  });
  after(() => rt.kill());

  it("writes a call's lines (echo and $logger) between its marker and a clearing marker", async () => {
    const out = rt.stdout().length;
    expect((await call("both", "call-1", "&tag=1")).text).to.equal("printed");
    const raw = await gained(out, `log 1 [] []\n${CLEAR}`);
    expect(raw).to.match(
      /^\u001b_fizz:call=call-1\u001b\\\nout 1\n\u001b_fizz:call=\u001b\\\n\u001b_fizz:call=call-1\u001b\\\n\[[^\]]+\] Function\.INFO: log 1 \[\] \[\]\n\u001b_fizz:call=\u001b\\\n$/,
    );
  });

  it("writes nothing more for a call that prints nothing, and no marker without a request id", async () => {
    const out = rt.stdout().length;
    expect((await call("silent", "call-2")).text).to.equal("quiet");
    expect((await call("partial", undefined, "&tag=3")).text).to.equal("partial");
    expect((await call("partial", "not a token", "&tag=4")).text).to.equal("partial");
    expect(await gained(out, "part 4")).to.equal("part 3part 4");
  });

  it("ends a call's unfinished line with the call, exit() included", async () => {
    const out = rt.stdout().length;
    expect((await call("partial", "call-5", "&tag=5")).text).to.equal("partial");
    expect((await call("exit", "call-6", "&tag=6")).status).to.equal(200);
    const raw = await gained(out, `bye 6\n${CLEAR}`);
    // Not necessarily in call order: each call's process writes when it ends.
    expect(tagLines(raw)).to.have.deep.members([
      { id: "call-5", line: "part 5" },
      { id: "call-6", line: "bye 6" },
    ]);
  });

  it("tags the interleaved lines of calls running side by side each with its own call", async () => {
    const out = rt.stdout().length;
    const first = call("twice", "call-a", "&tag=a&ms=1500");
    await eventually(() => rt.stdout().slice(out).includes("one a\n"), 10_000);
    const second = call("twice", "call-b", "&tag=b&ms=0");
    for (const res of await Promise.all([first, second])) expect(res.text).to.equal("twice");
    const tagged = tagLines(await gained(out, `two a\n${CLEAR}`));
    expect(tagged).to.deep.equal([
      { id: "call-a", line: "one a" },
      { id: "call-b", line: "one b" },
      { id: "call-b", line: "two b" },
      { id: "call-a", line: "two a" },
    ]);
  });

  it("cuts a long output into marked pieces between lines, losing and splitting none", async () => {
    const out = rt.stdout().length;
    expect((await call("many", "call-m")).text).to.equal("many");
    const raw = await gained(out, `line 200 ${"x".repeat(51)}\n${CLEAR}`);
    const pieces = raw.split(marker("call-m")).length - 1;
    expect(pieces).to.equal(4); // 200 lines of 61 bytes, at most 4 KiB a piece
    const tagged = tagLines(raw);
    expect(tagged.map((l) => l.line)).to.deep.equal(
      Array.from({ length: 200 }, (_, i) => `line ${i + 1} `.padEnd(60, "x")),
    );
    for (const l of tagged) expect(l.id).to.equal("call-m");
  });

  it("tags PHP's warnings with the call, which still sees them in error_get_last()", async () => {
    const err = rt.stderr().length;
    const res = await call("warn", "call-w", "&tag=w");
    expect(res.text).to.equal("last: Undefined variable $undefined");
    await eventually(() => rt.stderr().slice(err).includes(CLEAR), 10_000);
    const tagged = tagLines(rt.stderr().slice(err));
    expect(tagged).to.have.length(1);
    expect(tagged[0]?.id).to.equal("call-w");
    expect(tagged[0]?.line).to.match(
      /^Warning: Undefined variable \$undefined in \S+logs\.php on line \d+$/,
    );
  });

  it("tags the error it logs about a call with that call", async () => {
    expect((await call("throw", "call-e", "&tag=e")).status).to.equal(500);
    await eventually(() => rt.stderr().includes(`boom e\n${CLEAR}`), 10_000);
    const logged = tagLines(rt.stderr()).filter((l) => l.line.includes("boom e"));
    expect(logged).to.have.length(1);
    expect(logged[0]?.id).to.equal("call-e");
  });
});
