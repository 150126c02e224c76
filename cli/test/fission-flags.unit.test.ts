/**
 * Fission's spellings: each Fission command line must send the registry exactly what our own
 * spelling sends (and print the same), a clash between two names for one option is a usage
 * error, and a Fission flag with no meaning here is refused with its reason, sending nothing.
 */
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { apiObject, fizz, pkgObject, type CliResult } from "./support/cli.js";
import { FakeServer, type RecordedRequest } from "./support/fake-server.js";

const NS = "/v1/namespaces/default";
const SOURCE = { digest: `sha256:${"a".repeat(64)}`, size: 180 };
const DEPLOYMENT = { digest: `sha256:${"b".repeat(64)}`, size: 2048 };

const fn = (spec: Record<string, unknown> = {}) =>
  apiObject("functions", "hello", { environment: "node", ...spec });
const pkg = (status: Record<string, unknown>) =>
  pkgObject("shop", { environment: "python", source: SOURCE }, status);
const built = pkg({ buildState: "succeeded", sourceDigest: SOURCE.digest, deployment: DEPLOYMENT });

/** What a request carries: JSON bodies compared as values, anything else (archives) by digest. */
function shape(req: RecordedRequest) {
  const json = String(req.headers["content-type"]).startsWith("application/json");
  return {
    request: `${req.method} ${req.url}`,
    body: json
      ? (JSON.parse(req.body.toString("utf8")) as unknown)
      : createHash("sha256").update(req.body).digest("hex"),
  };
}

describe("Fission's flag names", () => {
  let registry: FakeServer;
  // Known before the tests are declared: the tables below hold these paths.
  const dir = mkdtempSync(join(tmpdir(), "fizz-cli-fission-"));
  const code = join(dir, "hello.mjs");
  const src = join(dir, "shop");

  before(async () => {
    registry = await FakeServer.start();
    await writeFile(code, "export default async () => 'hi';\n");
    await mkdir(src);
    await writeFile(join(src, "main.py"), "def main():\n    return 'hi'\n");
  });
  afterEach(() => registry.reset());
  after(async () => {
    await registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });

  /** Runs one command line against fresh replies; returns what it printed and sent. */
  async function observe(argv: string[], replies: () => void) {
    registry.reset();
    replies();
    const result = await cli(...argv);
    return { result, sent: registry.requests.map(shape) };
  }

  function expectUsageError(result: CliResult, ...phrases: string[]): void {
    expect(result.code, result.stderr).to.equal(2);
    for (const phrase of phrases) expect(result.stderr).to.include(phrase);
    expect(registry.calls(), "nothing is sent").to.deep.equal([]);
  }

  const createsFunction = () => {
    registry.on("POST", `${NS}/functions`, { status: 201, json: fn() });
    registry.on("POST", `${NS}/httptriggers`, {
      status: 201,
      json: apiObject("httptriggers", "hello", { function: "hello", path: "/p" }),
    });
  };
  const buildsPackage = (use: "source" | "deployment") => () => {
    const archive = use === "source" ? SOURCE : DEPLOYMENT;
    registry.on("POST", `${NS}/archives?use=${use}`, { status: 201, json: { archive } });
    registry.on("POST", `${NS}/packages`, { status: 201, json: built });
    registry.on("GET", `${NS}/packages/shop`, { json: built });
    registry.on("PATCH", `${NS}/packages/shop`, { json: built });
    registry.on("POST", `${NS}/functions`, {
      status: 201,
      json: fn({ package: { name: "shop" } }),
    });
  };
  const patchesFunction = () => {
    registry.on("GET", `${NS}/functions/hello`, { json: fn() });
    registry.on("PATCH", `${NS}/functions/hello`, { json: fn() });
  };
  const mqt = apiObject("mqtriggers", "orders", { function: "f", subject: "orders.created" });
  const createsMqt = () => {
    registry.on("POST", `${NS}/mqtriggers`, { status: 201, json: mqt });
    registry.on("PATCH", `${NS}/mqtriggers/orders`, { json: mqt });
  };
  const createsWatch = () =>
    registry.on("POST", `${NS}/watchtriggers`, {
      status: 201,
      json: apiObject("watchtriggers", "w", { function: "f", namespace: "o", resource: "pods" }),
    });
  const createsRoute = () =>
    registry.on("POST", `${NS}/httptriggers`, {
      status: 201,
      json: apiObject("httptriggers", "hello", { function: "hello", path: "/hello" }),
    });

  const FN = ["fn", "create", "--name", "hello", "--env", "node"];
  const SHOP = ["fn", "create", "--name", "shop", "--env", "python"];
  const MQT = ["mqt", "create", "--name", "orders", "--function", "f"];
  const same: Array<[string, string[], string[], () => void]> = [
    [
      "fn create: --fntimeout --idletimeout --minscale --maxscale --rpp --entry -e --url, --executortype poolmgr, --keepprefix",
      [...FN, "--code", code, "--timeout", "5", "--idle-timeout", "30", "--min-instances", "1"]
        .concat(["--max-instances", "4", "--concurrency", "8", "--entrypoint", "handler"])
        .concat(["--env-var", "A=1", "--env-var", "B=2", "--route", "/p", "--method", "GET"]),
      [...FN, "--code", code, "--fntimeout", "5", "--idletimeout", "30", "--minscale", "1"]
        .concat(["--maxscale", "4", "--rpp", "8", "--entry", "handler", "-e", "A=1"])
        .concat(["--env-var", "B=2", "--url", "/p", "--method", "GET"])
        .concat(["--executortype", "poolmgr", "--keepprefix"]),
      createsFunction,
    ],
    [
      "fn create: --ft, --requestsperpod, --pkgname",
      [...FN, "--pkg", "shop", "--timeout", "2.5", "--concurrency", "3"],
      [...FN, "--pkgname", "shop", "--ft", "2.5", "--requestsperpod", "3"],
      createsFunction,
    ],
    [
      "fn create: --sourcearchive, --buildcmd",
      [...SHOP, "--src", src, "--build-cmd", "./build.sh"],
      [...SHOP, "--sourcearchive", src, "--buildcmd", "./build.sh"],
      buildsPackage("source"),
    ],
    [
      "fn create: --source",
      [...SHOP, "--src", src],
      [...SHOP, "--source", src],
      buildsPackage("source"),
    ],
    [
      "fn create: --deployarchive",
      [...SHOP, "--deploy", src],
      [...SHOP, "--deployarchive", src],
      buildsPackage("deployment"),
    ],
    [
      "fn update: --minscale, and -f/--force (fizz always moves a package's functions)",
      ["fn", "update", "--name", "hello", "--min-instances", "2"],
      ["function", "update", "--name", "hello", "--minscale", "2", "--force"],
      patchesFunction,
    ],
    [
      "fn getmeta is fn get",
      ["fn", "get", "--name", "hello"],
      ["fn", "getmeta", "--name", "hello"],
      patchesFunction,
    ],
    [
      "pkg create: --sourcearchive, --buildcmd",
      ["pkg", "create", "--name", "shop", "--env", "python", "--src", src, "--build-cmd", "make"],
      ["package", "create", "--name", "shop", "--env", "python", "--sourcearchive", src].concat([
        "--buildcmd",
        "make",
      ]),
      buildsPackage("source"),
    ],
    [
      "pkg update: --deployarchive, -f",
      ["pkg", "update", "--name", "shop", "--deploy", src],
      ["pkg", "update", "--name", "shop", "--deployarchive", src, "-f"],
      buildsPackage("deployment"),
    ],
    [
      "httptrigger create --keepprefix (fizz always passes the whole path)",
      ["route", "create", "--function", "hello", "--url", "/hello", "--method", "GET"],
      ["httptrigger", "create", "--function", "hello", "--url", "/hello", "--method", "GET"].concat(
        ["--keepprefix"],
      ),
      createsRoute,
    ],
    [
      "mqtrigger create: --topic --resptopic --errortopic --maxretries -c --mqtype nats",
      [...MQT, "--subject", "orders.created", "--response-subject", "orders.done"]
        .concat(["--error-subject", "orders.failed", "--max-retries", "5"])
        .concat(["--content-type", "text/plain"]),
      ["mqtrigger", "create", "--name", "orders", "--function", "f", "--topic", "orders.created"]
        .concat(["--resptopic", "orders.done", "--errortopic", "orders.failed"])
        .concat(["--maxretries", "5", "-c", "text/plain", "--mqtype", "nats"]),
      createsMqt,
    ],
    [
      "mqt create --mqtype nats-jetstream with --stream",
      [...MQT, "--subject", "orders.created", "--stream", "ORDERS"],
      [...MQT, "--topic", "orders.created", "--stream", "ORDERS", "--mqtype", "nats-jetstream"],
      createsMqt,
    ],
    [
      "mqt update: --topic, --contenttype",
      ["mqt", "update", "--name", "orders", "--subject", "b.c", "--content-type", "a/b"],
      ["mqt", "update", "--name", "orders", "--topic", "b.c", "--contenttype", "a/b"],
      createsMqt,
    ],
    [
      "watch create: --ns",
      ["watch", "create", "--name", "w", "--function", "f", "--type", "pods"].concat([
        "--watch-namespace",
        "o",
      ]),
      ["w", "create", "--name", "w", "--function", "f", "--type", "pods", "--ns", "o"],
      createsWatch,
    ],
    [
      "env create --version 3 (Fission's interface version: every fizz environment is one)",
      ["env", "create", "--name", "py", "--image", "fizz/env-python"],
      ["environment", "create", "--name", "py", "--image", "fizz/env-python", "--version", "3"],
      () =>
        registry.on("POST", `${NS}/environments`, {
          status: 201,
          json: apiObject("environments", "py", { image: "fizz/env-python", poolSize: 3 }),
        }),
    ],
    [
      "tt show --round is timer showschedule --count",
      ["timer", "showschedule", "--cron", "@every 5m", "--count", "2"],
      ["tt", "show", "--cron", "@every 5m", "--round", "2"],
      () => {},
    ],
  ];

  for (const [title, ours, fission, replies] of same) {
    it(`${title}: sends and prints what our spelling does`, async () => {
      const a = await observe(ours, replies);
      const b = await observe(fission, replies);

      expect(a.result.code, a.result.stderr).to.equal(0);
      expect(b.result.code, b.result.stderr).to.equal(0);
      expect(b.sent).to.deep.equal(a.sent);
      expect(b.result.stdout).to.equal(a.result.stdout);
      expect(a.sent.length + a.result.stdout.length).to.be.greaterThan(0);
    });
  }

  it("fn test -b and repeated -q send what --body and --query 'a=1&b=2' send", async () => {
    const gateway = await FakeServer.start();
    try {
      const run = async (...argv: string[]) => {
        gateway.reset();
        gateway.on("POST", "/function/hello?a=1&b=2", { body: "ok" });
        const result = await fizz(argv, { gateway: gateway.url });
        expect(result.code, result.stderr).to.equal(0);
        return gateway.requests.map(shape);
      };
      const base = ["fn", "test", "--name", "hello"];

      const ours = await run(...base, "--body", "x", "--query", "a=1&b=2");
      const fission = await run(...base, "-b", "x", "-q", "a=1", "-q", "b=2");

      expect(fission).to.deep.equal(ours);
      expect(ours).to.have.length(1);
    } finally {
      await gateway.close();
    }
  });

  it("delete --ignorenotfound (and --ignore-not-found) succeeds silently on every kind", async () => {
    const kinds = ["env", "fn", "pkg", "route", "mqt", "timer", "watch"];
    for (const kind of kinds) {
      for (const flag of ["--ignorenotfound", "--ignore-not-found"]) {
        // The fake registry answers 404 NOT_FOUND to anything it has no reply for.
        const result = await cli(kind, "delete", "--name", "gone", flag);

        expect(result.code, `${kind} ${flag}: ${result.stderr}`).to.equal(0);
        expect(result.stdout + result.stderr).to.equal("");
      }
      const plain = await cli(kind, "delete", "--name", "gone");
      expect(plain.code, kind).to.equal(1);
      expect(plain.stderr).to.include("NOT_FOUND");
    }
  });

  it("--ignore-not-found does not hide any other refusal", async () => {
    registry.on("DELETE", `${NS}/functions/hello`, {
      status: 409,
      json: { error: { code: "IN_USE", message: 'function "hello" is used by route "hello"' } },
    });

    const result = await cli("fn", "delete", "--name", "hello", "--ignorenotfound");

    expect(result.code).to.equal(1);
    expect(result.stderr).to.include("IN_USE");
  });

  describe("two names for one option", () => {
    it("--buildcmd and --build-cmd with different values is a usage error", async () => {
      const result = await cli(...SHOP, "--src", src, "--buildcmd", "a", "--build-cmd", "b");

      expectUsageError(result, "--buildcmd is another name for --build-cmd", "give one of them");
    });

    it("--minscale and --min-instances with different values is a usage error", async () => {
      const result = await cli(...FN, "--code", code, "--minscale", "1", "--min-instances", "2");

      expectUsageError(result, "--minscale is another name for --min-instances");
    });

    it("--fntimeout and --ft with different values is a usage error naming both", async () => {
      const result = await cli(...FN, "--code", code, "--fntimeout", "3", "--ft", "4");

      expectUsageError(result, "--fntimeout and --ft are both other names for --timeout");
    });

    it("mqt create --topic and --subject with different values is a usage error", async () => {
      const result = await cli(...MQT, "--topic", "a", "--subject", "b");

      expectUsageError(result, "--topic is another name for --subject");
    });

    it("the same value under both names is fine", async () => {
      registry.on("POST", `${NS}/functions`, { status: 201, json: fn() });

      const result = await cli(...FN, "--code", code, "--minscale", "2", "--min-instances", "2");

      expect(result.code, result.stderr).to.equal(0);
      expect((registry.jsonBody(0) as { spec: object }).spec).to.include({ minInstances: 2 });
    });

    it("a bad value is reported under the Fission name it was given with", async () => {
      const result = await cli(...FN, "--code", code, "--maxscale", "many");

      expectUsageError(result, "option '--maxscale <n>' argument 'many' is invalid");
    });

    it("mqt create needs --subject or --topic", async () => {
      const result = await cli(...MQT);

      expectUsageError(result, "required option '--subject <subject>' not specified");
    });
  });

  describe("Fission flags that mean nothing here are refused with the reason", () => {
    const refused: Array<[string[], string, string]> = [
      [
        [...FN, "--code", code, "--executortype", "newdeploy"],
        "--executortype newdeploy",
        "one executor",
      ],
      [[...FN, "--code", code, "--mincpu", "100"], "--mincpu 100", "FIZZ_POD_CPU_REQUEST"],
      [[...FN, "--code", code, "--con", "5"], "--con 5", "--max-instances"],
      [[...FN, "--code", code, "--spec"], "--spec", "fizz spec apply"],
      [[...FN, "--code", code, "--dry"], "--dry", "fizz spec validate"],
      [["fn", "update", "--name", "hello", "--st", "9"], "--st 9", "platform's setting"],
      [["fn", "list", "-A"], "--all-namespaces", "-n <namespace>"],
      [
        ["env", "create", "--name", "py", "--image", "i", "--buildcmd", "make"],
        "--buildcmd make",
        "npm ci",
      ],
      [["env", "update", "--name", "py", "--maxmemory", "256"], "--maxmemory 256", "poolkeeper"],
      [
        ["env", "create", "--name", "py", "--image", "fizz/env-python", "--version", "4"],
        "--version 4",
        "version 3",
      ],
      [["env", "delete", "--name", "py", "--force"], "--force", "functions use"],
      [["pkg", "create", "--name", "s", "--env", "p", "--code", code], "--code", "--deploy"],
      [["pkg", "delete", "--name", "s", "-f"], "--force", "functions use"],
      [["pkg", "list", "--status", "failed"], "--status failed", "-o json"],
      [
        ["route", "create", "--function", "h", "--url", "/h", "--createingress"],
        "--createingress",
        "Ingress",
      ],
      [
        ["route", "create", "--function", "h", "--url", "/h", "--weight", "50"],
        "--weight 50",
        "one function",
      ],
      [[...MQT, "--topic", "t", "--mqtype", "kafka"], "--mqtype kafka", "NATS only"],
      [
        [...MQT, "--topic", "t", "--mqtype", "nats-jetstream"],
        "--mqtype nats-jetstream",
        "--stream",
      ],
      [
        [...MQT, "--topic", "t", "--mqtype", "nats", "--stream", "S"],
        "--mqtype nats",
        "nats-jetstream",
      ],
      [[...MQT, "--topic", "t", "--mqtkind", "keda"], "--mqtkind keda", "KEDA"],
      [
        [
          "timer",
          "create",
          "--name",
          "t",
          "--function",
          "f",
          "--cron",
          "@daily",
          "--subpath",
          "/x",
        ],
        "--subpath /x",
        "root path",
      ],
    ];
    for (const [argv, given, why] of refused) {
      it(`${argv.slice(0, 2).join(" ")} ${given}`, async () => {
        const result = await cli(...argv);

        expectUsageError(result, given, why);
      });
    }

    it("route create --function twice (Fission's weighted routes) is refused", async () => {
      const result = await cli(
        "route",
        "create",
        "--function",
        "a",
        "--function",
        "b",
        "--url",
        "/x",
      );

      expectUsageError(result, "a route calls one function");
    });
  });

  it("--help lists our names as options and Fission's once, after them", async () => {
    const result = await cli("fn", "create", "--help");

    const [options = "", after = ""] = result.stdout.split("Fission's flag names:");
    expect(options).to.include("--build-cmd <command>").and.include("--min-instances <n>");
    expect(options).not.to.include("--buildcmd").and.not.to.include("--minscale");
    expect(after.replace(/\s+/g, " ")).to.include("--buildcmd (= --build-cmd)");
    expect(after.replace(/\s+/g, " ")).to.include("--minscale (= --min-instances)");
  });
});
