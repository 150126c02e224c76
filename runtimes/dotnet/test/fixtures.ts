// The C# runtime as the contract suite runs it (`mono runtimes/dotnet/.build/fizz-dotnet.exe`,
// prepared by runtimes/dotnet/prepare.mjs), how a package is compiled (runtimes/dotnet/build.sh,
// as the builder runs it; results cached by content under .build/test-cache), and the user
// functions (in C#) the contract calls: see runtimes/contract/runtime-under-test.ts.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Files } from "../../contract/archive.js";
import { cachedBuild } from "../../contract/build-cache.js";
import { startRuntime } from "../../contract/harness.js";
import type { PackageFixtures, RuntimeUnderTest, Source } from "../../contract/runtime-contract.js";
import { prepare } from "../prepare.mjs";

const run = promisify(execFile);
const DOTNET_DIR = fileURLToPath(new URL("..", import.meta.url));
const RUNTIMES_DIR = dirname(DOTNET_DIR);
const BUILD_DIR = join(DOTNET_DIR, ".build");
export const BUILD_SCRIPT = join(DOTNET_DIR, "build.sh");

const SERVER = { name: "dotnet", command: "mono", script: join(BUILD_DIR, "fizz-dotnet.exe") };

let prepared: Promise<void> | undefined;
/** Builds the host and the API library once per test run (instant when nothing changed). */
export function ensurePrepared(): Promise<void> {
  prepared ??= prepare({}).then((result) => {
    if (!result.ok) throw new Error(`runtimes/dotnet/prepare.mjs: ${result.reason ?? "failed"}`);
  });
  return prepared;
}

export class BuildFailed extends Error {
  constructor(readonly log: string) {
    super(`build.sh failed:\n${log}`);
  }
}

/** Runs build.sh over `files` as the builder does (cached by content under .build/test-cache);
 * resolves with the package it deploys, rejects with BuildFailed and the log. */
export async function compile(files: Files): Promise<Files> {
  await ensurePrepared();
  const result = await cachedBuild({
    cacheDir: join(BUILD_DIR, "test-cache"),
    inputs: [readFileSync(BUILD_SCRIPT), readFileSync(join(BUILD_DIR, "stamp"))],
    files,
    build: async ({ src, deploy, home }) => {
      try {
        const out = await run(BUILD_SCRIPT, [], {
          cwd: src,
          env: {
            SRC_PKG: src,
            DEPLOY_PKG: deploy,
            FIZZ_RUNTIMES_DIR: RUNTIMES_DIR,
            HOME: home,
            TMPDIR: home,
            PATH: process.env.PATH ?? "/usr/bin:/bin",
          },
        });
        return { ok: true, log: `${out.stdout}${out.stderr}` };
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        return { ok: false, log: `${e.stdout ?? ""}${e.stderr ?? ""}` };
      }
    },
  });
  if (!result.ok) throw new BuildFailed(result.log);
  return result.files;
}

const USING = "using System;\nusing System.Collections.Generic;\nusing Fission.DotNetCore.Api;\n\n";

/** Fission's hello world, as its README writes it. */
export const HELLO: Source = {
  filename: "hello.cs",
  source: `${USING}public class FissionFunction
{
    public string Execute(FissionContext context)
    {
        return "Hello, world!\\n";
    }
}
`,
};

export const KINDS: Source = {
  filename: "kinds.cs",
  source: `${USING}public class FissionFunction
{
    public object Execute(FissionContext context)
    {
        string kind;
        context.Query.TryGetValue("kind", out kind);
        switch (kind)
        {
            case "echo":
                return new Dictionary<string, object> {
                    { "method", context.Method }, { "path", context.Path }, { "query", context.Query },
                    { "headers", context.Headers }, { "body", context.Json() }, { "params", context.Params },
                    { "requestId", context.RequestId },
                    { "function", new Dictionary<string, object> {
                        { "namespace", context.Function.Namespace }, { "name", context.Function.Name },
                        { "revision", context.Function.Revision } } },
                };
            case "text":
                return new Dictionary<string, object> { { "text", context.Text() }, { "length", context.Body.Length } };
            case "json": return new Dictionary<string, object> { { "hello", new[] { "world" } } };
            case "list": return new object[] { 1, "two" };
            case "created":
                return new FissionResponse {
                    StatusCode = 201,
                    Headers = { { "X-Custom", "yes" } },
                    Body = new Dictionary<string, object> { { "created", true } },
                };
            case "accepted": return new FissionResponse(202, "accepted");
            case "not-a-response": return new Dictionary<string, object> { { "status", "ok" } };
            case "bytes": return new byte[] { 0, 1, 2, 255 };
            case "env": return Environment.GetEnvironmentVariable("GREETING");
            case "log":
                Console.WriteLine("log line from the function");
                return "logged";
            case "throw": throw new InvalidOperationException("boom from the function");
            case "unsendable": return (Func<int>)(() => 1);
            default: return "plain";
        }
    }
}
`,
};

/** The call marker checks' function (runtimes/contract/contract-call-markers.ts). */
export const LOGS: Source = {
  filename: "logs.cs",
  source: `${USING}public class FissionFunction
{
    public string Execute(FissionContext context)
    {
        string kind, tag, ms;
        context.Query.TryGetValue("kind", out kind);
        context.Query.TryGetValue("tag", out tag);
        switch (kind)
        {
            case "both":
                Console.WriteLine("out " + tag);
                Console.Error.WriteLine("err " + tag);
                return "printed";
            case "partial":
                Console.Write("part " + tag);
                return "partial";
            case "twice":
                context.Query.TryGetValue("ms", out ms);
                Console.WriteLine("one " + tag);
                System.Threading.Thread.Sleep(int.Parse(ms));
                Console.WriteLine("two " + tag);
                return "twice";
            case "later":
                new System.Threading.Thread(() => {
                    System.Threading.Thread.Sleep(300);
                    Console.WriteLine("after " + tag);
                }).Start();
                return "later";
            case "raw":
                Console.WriteLine("said " + tag);
                new System.Threading.Thread(() => {
                    System.Threading.Thread.Sleep(200);
                    var bytes = System.Text.Encoding.UTF8.GetBytes("raw " + tag + "\\n");
                    using (var fd = Console.OpenStandardOutput()) fd.Write(bytes, 0, bytes.Length);
                }).Start();
                return "ok";
            default: return "quiet";
        }
    }
}
`,
};

const shape = (what: string, answer: string, source: string, entrypoint?: string) => ({
  what,
  answer,
  filename: "shape.cs",
  source: `${USING}${source}`,
  ...(entrypoint === undefined ? {} : { entrypoint }),
});

const CONFIG_READER = `${USING}using System.IO;

public class FissionFunction
{
    public string Execute(FissionContext context)
    {
        string kind;
        context.Query.TryGetValue("kind", out kind);
        if (kind == "file")
        {
            var dir = Environment.GetEnvironmentVariable(context.Query["dir"]);
            return File.ReadAllText(Path.Combine(dir, context.Query["path"]));
        }
        if (kind == "env") return Environment.GetEnvironmentVariable(context.Query["name"]) ?? "unset";
        if (kind == "relative") return File.ReadAllText(context.Query["path"]);
        return "unknown kind";
    }
}
`;

const PACKAGES: PackageFixtures = {
  main: "Function.cs",
  shapes: [
    {
      what: "classes spread over files and a subdirectory (FissionFunction by default)",
      files: {
        "Function.cs": `${USING}public class FissionFunction
{
    public string Execute(FissionContext context) { return Lib.Greeter.Greet("package"); }
}
`,
        "lib/Greeter.cs": `namespace Lib
{
    public static class Greeter
    {
        public static string Greet(string who) { return "hello from the " + who; }
    }
}
`,
      },
      answer: "hello from the package",
    },
    {
      what: "a class named by the entrypoint, with its namespace, in a subdirectory",
      entrypoint: "App.Handler",
      files: {
        "app/Handler.cs": `${USING}namespace App
{
    public class Handler
    {
        public string Execute(FissionContext context) { return Util.Text.Shout("handled"); }
    }
}
`,
        "util/Text.cs": `namespace Util
{
    public static class Text
    {
        public static string Shout(string s) { return s.ToUpperInvariant(); }
    }
}
`,
      },
      answer: "HANDLED",
    },
  ],
  loadFailure: {
    files: {
      "Function.cs": `${USING}public class FissionFunction
{
    private static readonly string Setting = Lib.Settings.Load();

    public string Execute(FissionContext context) { return Setting; }
}
`,
      "lib/Settings.cs": `using System;

namespace Lib
{
    public static class Settings
    {
        public static string Load()
        {
            throw new InvalidOperationException("settings are broken");
        }
    }
}
`,
    },
    message: /^lib\/Settings\.cs:9: InvalidOperationException: settings are broken$/,
  },
  configReader: { filename: "Function.cs", source: CONFIG_READER },
};

export const dotnetFixtures = {
  hello: HELLO,
  foreignFilename: "hello.py",
  loadFailures: [
    {
      what: "a static initializer that throws",
      filename: "broken.cs",
      source: `${USING}public class FissionFunction
{
    private static readonly string Greeting = Load();

    private static string Load()
    {
        throw new InvalidOperationException("broken at load");
    }

    public string Execute(FissionContext context) { return Greeting; }
}
`,
      message: "broken.cs:11: InvalidOperationException: broken at load",
    },
    {
      what: "a package without a FissionFunction class",
      filename: "other.cs",
      source: `${USING}public class Other
{
    public string Execute(FissionContext context) { return "never"; }
}
`,
      message: /no class FissionFunction in the package/,
    },
  ],
  handlerShapes: [
    shape(
      "Fission's public string Execute(FissionContext)",
      "fission",
      `public class FissionFunction { public string Execute(FissionContext context) { return "fission"; } }`,
    ),
    shape(
      "a static Execute",
      "static",
      `public class FissionFunction { public static string Execute(FissionContext context) { return "static"; } }`,
    ),
    shape(
      "Execute() without parameters returning object",
      "no parameters",
      `public class FissionFunction { public object Execute() { return "no parameters"; } }`,
    ),
    shape(
      "FissionFunction inside a namespace",
      "namespaced",
      `namespace My.Functions { public class FissionFunction { public string Execute(FissionContext c) { return "namespaced"; } } }`,
    ),
    shape(
      "a class named by the entrypoint",
      "greeter",
      `public class Greeter { public string Execute(FissionContext c) { return "greeter"; } }`,
      "Greeter",
    ),
    shape(
      "a method of FissionFunction named by the entrypoint",
      "handled",
      `public class FissionFunction { public string Handle(FissionContext c) { return "handled"; } }`,
      "Handle",
    ),
    shape(
      "Class.Method named by the entrypoint",
      "hi",
      `public class Greeter { public string Hi(FissionContext c) { return "hi"; } }`,
      "Greeter.Hi",
    ),
    shape(
      "an async Task<string> Execute",
      "async",
      `public class FissionFunction {
    public async System.Threading.Tasks.Task<string> Execute(FissionContext c) {
        await System.Threading.Tasks.Task.Delay(5);
        return "async";
    }
}`,
    ),
  ],
  kinds: KINDS,
  slow: (ms: number, answer: string): Source => ({
    filename: "slow.cs",
    source: `${USING}public class FissionFunction
{
    public string Execute(FissionContext context)
    {
        System.Threading.Thread.Sleep(${ms});
        return ${JSON.stringify(answer)};
    }
}
`,
  }),
  tokenLeak: {
    filename: "leak.cs",
    source: `${USING}public class FissionFunction
{
    public string Execute(FissionContext context)
    {
        return Environment.GetEnvironmentVariable("FIZZ_SPECIALIZE_TOKEN") ?? "absent";
    }
}
`,
  },
  packages: PACKAGES,
};

export const dotnetRuntime: RuntimeUnderTest = {
  name: "dotnet",
  start: async (env, options) => {
    await ensurePrepared();
    return startRuntime(SERVER, env, options);
  },
  fixtures: dotnetFixtures,
  compile: (files) => compile(files),
  callMarkers: { logs: LOGS, raw: true },
};
