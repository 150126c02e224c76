import { expect } from "chai";
import { get, startPlatform, type Platform } from "./helpers";

/** What a user sees when they get it wrong: a clear error, and nothing half-made left behind. */
describe("bad input, end to end", function () {
  this.timeout(120_000);
  let p: Platform;

  before(async () => {
    p = await startPlatform({ FIZZ_CODE_MAX_BYTES: "1024" });
    const a = await p.fizz("env", "create", "--name", "python", "--image", "fizz/env-python");
    const b = await p.fizz("env", "create", "--name", "nodejs", "--image", "fizz/env-node");
    expect(a.code + b.code, a.stderr + b.stderr).to.equal(0);
  });
  after(async () => {
    await p?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") console.error(p.logs.slice(-60).join("\n"));
  });

  async function loadFailure(
    name: string,
    env: string,
    file: string,
    code: string,
    extra: string[] = [],
  ) {
    await p.file(file, code);
    const created = await p.fizz(
      "fn",
      "create",
      "--name",
      name,
      "--env",
      env,
      "--code",
      file,
      ...extra,
    );
    expect(created.code, created.stderr).to.equal(0);
    const call = await get(`${p.gatewayUrl}/function/${name}`);
    expect(call.status).to.equal(500);
    const body = JSON.parse(call.text) as { error: { code: string; message: string } };
    expect(body.error.code).to.equal("FUNCTION_LOAD_FAILED");
    const test = await p.fizz("fn", "test", "--name", name);
    expect(test.code).to.equal(1);
    return { message: body.error.message, cli: test.stderr };
  }

  it("shows the loader's message, file and line, for Python 2 code", async () => {
    const { message, cli } = await loadFailure(
      "py2",
      "python",
      "py2.py",
      'def main():\n    print "x"\n',
    );
    expect(message)
      .to.match(/py2\.py:2/)
      .and.to.match(/SyntaxError/);
    expect(cli).to.match(/py2\.py:2/);
  });

  it("shows the loader's message for a Node syntax error", async () => {
    const { message } = await loadFailure(
      "broken-js",
      "nodejs",
      "broken.js",
      "module.exports = async () => {\n  return (;\n};\n",
    );
    expect(message)
      .to.match(/broken\.js:2/)
      .and.to.match(/SyntaxError/);
  });

  it("shows the loader's message for a missing entrypoint", async () => {
    const { message } = await loadFailure(
      "no-entry",
      "python",
      "noentry.py",
      "def other():\n    return 1\n",
      ["--entrypoint", "handler"],
    );
    expect(message)
      .to.match(/noentry\.py/)
      .and.to.match(/handler/);
  });

  it("keeps serving good functions after broken ones were discarded", async () => {
    await p.file("ok.py", 'def main():\n    return "fine"\n');
    expect(
      (await p.fizz("fn", "create", "--name", "fine", "--env", "python", "--code", "ok.py")).code,
    ).to.equal(0);
    const r = await get(`${p.gatewayUrl}/function/fine`);
    expect(r.status, r.text).to.equal(200);
    expect(r.text).to.equal("fine");
  });

  it("refuses a function whose environment does not exist, and stores nothing", async () => {
    await p.file("x.py", "def main():\n    return 1\n");
    const r = await p.fizz("fn", "create", "--name", "orphan", "--env", "ruby", "--code", "x.py");
    expect(r.code).to.equal(1);
    expect(r.stderr)
      .to.match(/UNKNOWN_ENVIRONMENT/)
      .and.to.match(/ruby/);
    expect((await p.fizz("fn", "get", "--name", "orphan")).stderr).to.match(/NOT_FOUND/);
  });

  it("refuses names that are not DNS-1123 labels", async () => {
    const r = await p.fizz("env", "create", "--name", "Bad_Name", "--image", "fizz/env-python");
    expect(r.code).to.equal(1);
    expect(r.stderr)
      .to.match(/INVALID_NAME/)
      .and.to.match(/DNS-1123/);
  });

  it("refuses a duplicate name", async () => {
    const r = await p.fizz("env", "create", "--name", "python", "--image", "fizz/env-python");
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/ALREADY_EXISTS/);
  });

  it("refuses an image no local runtime serves", async () => {
    // env-ruby and the other five name local runtimes; env-cobol names none.
    const r = await p.fizz("env", "create", "--name", "cobol", "--image", "fizz/env-cobol");
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/UNKNOWN_IMAGE/);
    expect((await p.fizz("env", "get", "--name", "cobol")).stderr).to.match(/NOT_FOUND/);
  });

  it("refuses a host command: FIZZ_ALLOW_ENV_COMMAND is off by default", async () => {
    const r = await p.fizz(
      "env",
      "create",
      "--name",
      "cobol",
      "--image",
      "fizz/env-cobol",
      "--command",
      "cobol server.cbl",
    );
    expect(r.code).to.equal(1);
    expect(r.stderr)
      .to.match(/ENV_COMMAND_DISABLED/)
      .and.to.match(/spec\.command/);
    expect((await p.fizz("env", "get", "--name", "cobol")).stderr).to.match(/NOT_FOUND/);
  });

  it("refuses a timer the scheduler could not run, and a route on the gateway's own paths", async () => {
    const t = await p.fizz(
      "timer",
      "create",
      "--name",
      "t",
      "--function",
      "hello",
      "--cron",
      "@every 9999999h",
    );
    expect(t.code).to.equal(1);
    expect(t.stderr)
      .to.match(/VALIDATION_FAILED/)
      .and.to.match(/at most 366 days/);
    for (const url of ["/metrics", "/function/x", "/a/../b", "/u/{id}/{id}"]) {
      const r = await p.fizz("route", "create", "--function", "hello", "--name", "r", "--url", url);
      expect(r.code, url).to.equal(1);
      expect(r.stderr, url).to.match(/VALIDATION_FAILED/);
    }
  });

  it("refuses a route another trigger already serves", async () => {
    await p.file("r.py", "def main():\n    return 'r'\n");
    expect(
      (
        await p.fizz(
          "fn",
          "create",
          "--name",
          "r1",
          "--env",
          "python",
          "--code",
          "r.py",
          "--route",
          "/taken",
        )
      ).code,
    ).to.equal(0);
    const r = await p.fizz(
      "fn",
      "create",
      "--name",
      "r2",
      "--env",
      "python",
      "--code",
      "r.py",
      "--route",
      "/taken",
    );
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/ROUTE_CONFLICT/);
    // The CLI rolled the function back: nothing half-made stays.
    expect((await p.fizz("fn", "get", "--name", "r2")).stderr).to.match(/NOT_FOUND/);
    expect((await get(`${p.gatewayUrl}/taken`)).text).to.equal("r");
  });

  it("refuses code over the size limit", async () => {
    await p.file("big.py", `def main():\n    return "${"x".repeat(2000)}"\n`);
    const r = await p.fizz("fn", "create", "--name", "big", "--env", "python", "--code", "big.py");
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/CODE_TOO_LARGE/);
    expect((await p.fizz("fn", "get", "--name", "big")).stderr).to.match(/NOT_FOUND/);
  });
});
