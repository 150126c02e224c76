// Integration tests of the C# runtime (Mono): the shared runtime contract with C# fixtures, each
// compiled by runtimes/dotnet/build.sh as the builder would, then what only C# does. A real
// process, real HTTP.
import { execFileSync } from "node:child_process";
import { gzipSync } from "node:zlib";
import { expect } from "chai";
import { packageArchive, rawArchive } from "../../contract/archive.js";
import {
  type Runtime,
  eventually,
  postJson,
  request,
  specializeArchive,
  specializeBody,
} from "../../contract/harness.js";
import {
  ME,
  describeRuntimeContract,
  healthState,
  tagLines,
} from "../../contract/runtime-contract.js";
import type { Files } from "../../contract/archive.js";
import { BuildFailed, HELLO, compile, dotnetRuntime } from "./fixtures.js";

describeRuntimeContract(dotnetRuntime);

/** A gzip'd tar of hand-made ustar headers `[type, name, body]`, for entries node-tar won't write. */
function gnuTar(entries: Array<[string, string, string]>, { badChecksum = false } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const [type, name, body] of entries) {
    const data = Buffer.from(body);
    const h = Buffer.alloc(512);
    h.write(name, 0, "utf8");
    h.write("0000644\0", 100);
    h.write("0000000\0", 108);
    h.write("0000000\0", 116);
    h.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124);
    h.write("00000000000\0", 136);
    h.write(type, 156);
    h.write("ustar\0", 257);
    h.write("00", 263);
    h.fill(" ", 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${(badChecksum ? sum + 1 : sum).toString(8).padStart(6, "0")}\0 `, 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

const USING = "using System;\nusing Fission.DotNetCore.Api;\n\n";

/** Compiles `files` and specializes a fresh runtime with them. */
async function deployed(files: Files, entrypoint?: string, env: Record<string, string> = {}) {
  // Compiled first: a build that fails leaves no runtime running.
  const archive = await packageArchive(await compile(files));
  const rt = await dotnetRuntime.start({ FIZZ_INSTANCE_ID: "inst-1", ...env });
  try {
    const res = await specializeArchive(
      rt,
      archive,
      entrypoint === undefined ? {} : { entrypoint },
    );
    expect(res.status, res.text).to.equal(200);
    return rt;
  } catch (error) {
    await rt.kill();
    throw error;
  }
}

describe("dotnet runtime: C# only", function () {
  this.timeout(60_000);
  let rt: Runtime | undefined;
  afterEach(async () => {
    await rt?.kill();
    rt = undefined;
  });

  it("compiles and runs Fission's README examples unmodified (arguments, logger, headers, body)", async () => {
    const echo = `using System;
using Fission.DotNetCore.Api;

public class FissionFunction 
{
    public string Execute(FissionContext context){
        context.Logger.WriteInfo("executing.. {0}", context.Arguments["text"]);
        return (string)context.Arguments["text"];
    }
}
`;
    rt = await deployed({ "func.cs": echo });
    const res = await request(rt.url, { path: "/echo?text=hello%20world!", headers: ME });
    expect(res.text).to.equal("hello world!");
    const current = rt;
    await eventually(() => /Info: executing\.\. hello world!/.test(current.stdout()));
    await rt.kill();

    const body = `using System.IO;
using Fission.DotNetCore.Api;

public class FissionFunction
{
    public string Execute(FissionContext context)
    {
        var x = System.Convert.ToInt32(context.Arguments["x"]);
        var buffer = new System.Text.StringBuilder();
        foreach (var header in context.Request.Headers)
            foreach (var item in header.Value)
                if (header.Key == "X-Extra") buffer.Append(header.Key + "=" + item + ";");
        buffer.Append("Url: " + context.Request.Url + ", method: " + context.Request.Method + ";");
        buffer.Append(x + 12).Append(';').Append(new StreamReader(context.Request.Body).ReadToEnd());
        return buffer.ToString();
    }
}
`;
    rt = await deployed({ "func.cs": body });
    const info = await request(rt.url, {
      method: "POST",
      path: "/add?x=30",
      headers: { ...ME, "X-Extra": "v", host: "example.test" },
      body: "the body",
    });
    expect(info.text).to.equal(
      "X-Extra=v;Url: http://example.test/add?x=30, method: POST;42;the body",
    );
  });

  it("reads a package's settings file into a class with GetSettings<T> (Fission's dotnet20)", async () => {
    const source = `using System.Collections.Generic;
using Fission.DotNetCore.Api;

public class Settings
{
    public string Greeting { get; set; }
    public int Times { get; set; }
    public List<string> Names { get; set; }
}

public class FissionFunction
{
    public string Execute(FissionContext context)
    {
        var s = context.GetSettings<Settings>("config/settings.json");
        return s.Greeting + " x" + s.Times + " " + string.Join(",", s.Names);
    }
}
`;
    const settings = JSON.stringify({ greeting: "hi", times: 2, names: ["a", "b"], extra: true });
    rt = await deployed({ "fn.cs": source, "config/settings.json": settings });
    expect((await request(rt.url, { headers: ME })).text).to.equal("hi x2 a,b");
  });

  it("writes the Logger's lines (all five levels) to stdout", async () => {
    const source = `${USING}public class FissionFunction
{
    public string Execute(FissionContext c)
    {
        c.Logger.WriteInfo("i {0}", 1); c.Logger.WriteWarning("w"); c.Logger.WriteError("e");
        c.Logger.WriteCritical("c"); c.Logger.WriteVerbose("v {0} {1}", "a", "b");
        return "ok";
    }
}
`;
    rt = await deployed({ "log.cs": source });
    expect((await request(rt.url, { headers: ME })).text).to.equal("ok");
    const current = rt;
    await eventually(() => current.stdout().includes("Verbose: v a b"));
    for (const line of ["Info: i 1", "Warning: w", "Error: e", "Critical: c"]) {
      expect(rt.stdout()).to.include(line);
    }
  });

  it("names the file and line of a compile error in the build log", async () => {
    const broken = `${USING}public class FissionFunction\n{\n    public string Execute(FissionContext c) { return 1 }\n}\n`;
    let failure: unknown;
    await compile({ "lib/broken.cs": broken, "ok.cs": "public class A {}\n" }).catch(
      (err: unknown) => (failure = err),
    );
    expect(failure).to.be.instanceOf(BuildFailed);
    expect((failure as BuildFailed).log).to.match(/lib\/broken\.cs\(6,\d+\): error CS\d+/);
  });

  it("names the user's file and line in FUNCTION_ERROR, through helper classes in other files", async () => {
    const files = {
      "main.cs": `${USING}public class FissionFunction
{
    public string Execute(FissionContext c) { return Lib.Db.Query(); }
}
`,
      "lib/Db.cs": `namespace Lib
{
    public static class Db
    {
        public static string Query()
        {
            throw new System.InvalidOperationException("no database");
        }
    }
}
`,
    };
    rt = await deployed(files);
    const res = await request(rt.url, { headers: { ...ME, "x-request-id": "call-e" } });
    expect(res.status).to.equal(500);
    expect(res.error()).to.include({
      code: "FUNCTION_ERROR",
      message: "lib/Db.cs:7: InvalidOperationException: no database",
    });
    // The trace the runtime prints about the call carries the call's request id.
    const current = rt;
    await eventually(() => current.stderr().includes("no database"));
    await eventually(() => current.stderr().endsWith("\n"));
    const trace = tagLines(current.stderr()).filter((l) => l.line.includes("no database"));
    expect(trace.length).to.be.greaterThan(0);
    for (const l of trace) expect(l.id).to.equal("call-e");
  });

  it("removes the specialize token from the environment before the function's static code runs", async () => {
    const source = `${USING}public class FissionFunction
{
    private static readonly string AtLoad = Environment.GetEnvironmentVariable("FIZZ_SPECIALIZE_TOKEN") ?? "absent";
    public string Execute(FissionContext c)
    {
        var all = Environment.GetEnvironmentVariables();
        return AtLoad + " " + (all.Contains("FIZZ_SPECIALIZE_TOKEN") ? "present" : "absent");
    }
}
`;
    const token = "a-token-the-function-must-not-see";
    rt = await dotnetRuntime.start({ FIZZ_SPECIALIZE_TOKEN: token });
    const archive = await packageArchive(await compile({ "leak.cs": source }));
    const res = await specializeArchive(rt, archive, {
      headers: { "x-fizz-specialize-token": token },
    });
    expect(res.status, res.text).to.equal(200);
    expect((await request(rt.url, { headers: ME })).text).to.equal("absent absent");
  });

  it("refuses C# source in the JSON form after every check, saying to deploy a built package", async () => {
    rt = await dotnetRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
    const misdirected = await postJson(
      rt.url,
      "/v2/specialize",
      specializeBody(HELLO.filename, HELLO.source, { instanceId: "inst-2" }),
    );
    expect(misdirected.status).to.equal(421);
    expect(await healthState(rt)).to.equal("warm");
    const res = await postJson(
      rt.url,
      "/v2/specialize",
      specializeBody(HELLO.filename, HELLO.source),
    );
    expect(res.status).to.equal(500);
    expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
    expect(res.error().message).to.match(/compiled by the builder.*fizz fn create --src/);
    expect(await healthState(rt)).to.equal("failed");
  });

  it("refuses a package of sources the builder did not compile (no function.dll)", async () => {
    rt = await dotnetRuntime.start();
    const res = await specializeArchive(rt, await packageArchive({ "hello.cs": HELLO.source }));
    expect(res.status).to.equal(500);
    expect(res.error().message).to.match(/no function\.dll/);
  });

  it("refuses archive attacks: a pax path or a GNU long name climbing out, sparse and unknown entries, a bad checksum", async () => {
    rt = await dotnetRuntime.start();
    // node-tar writes a pax header for a long path: the climbing name is in the pax record.
    const long = `${"a/".repeat(60)}../../${"../".repeat(60)}escape`;
    const cases: Array<[Buffer, string]> = [
      [rawArchive([{ path: long, body: "x" }]), "escapes the archive root"],
      [
        gnuTar([
          ["L", "", "../../escaped\0"],
          ["0", "innocent", "x"],
        ]),
        "escapes the archive root",
      ],
      [gnuTar([["S", "sparse", ""]]), "unsupported entry type S"],
      [gnuTar([["V", "volume", ""]]), "unsupported entry type V"],
      [gnuTar([["0", "ok", "x"]], { badChecksum: true }), "bad header checksum"],
    ];
    for (const [archive, message] of cases) {
      const res = await specializeArchive(rt, archive);
      expect(res.status, res.text).to.equal(400);
      expect(res.error().code).to.equal("ARCHIVE_UNSAFE");
      expect(res.error().message).to.include(message);
      expect(await healthState(rt)).to.equal("warm");
    }
  });

  it("logs an exception from a function's own thread with its file and line before the process ends", async () => {
    const source = `${USING}public class FissionFunction
{
    public string Execute(FissionContext c)
    {
        new System.Threading.Thread(() => Fail()).Start();
        return "started";
    }

    private static void Fail()
    {
        // After the answer is out: an unhandled exception ends the process at once, and one thrown
        // before the response is written would race it (a hang-up instead of "started").
        System.Threading.Thread.Sleep(300);
        throw new InvalidOperationException("background failure");
    }
}
`;
    rt = await deployed({ "bg.cs": source });
    expect((await request(rt.url, { headers: ME })).text).to.equal("started");
    const current = rt;
    await eventually(() =>
      current
        .stderr()
        .includes(
          "unhandled exception, the instance exits: bg.cs:17: InvalidOperationException: background failure",
        ),
    );
    expect(await rt.exited).to.not.equal(0);
  });

  it("answers a request with Expect: 100-continue (curl's large uploads)", async () => {
    rt = await deployed({
      "echo.cs": `${USING}public class FissionFunction { public string Execute(FissionContext c) { return c.Text(); } }`,
    });
    const out = execFileSync("curl", [
      "-s",
      "-H",
      "x-fizz-instance: inst-1",
      "-H",
      "Expect: 100-continue",
      "--data-binary",
      "x".repeat(5000),
      `${rt.url}/`,
    ]).toString();
    expect(out).to.equal("x".repeat(5000));
  });
});
