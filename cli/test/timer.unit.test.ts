import { writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { apiError, apiObject, fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

const TIMERS = "/v1/namespaces/default/timetriggers";

// The test clock is 2025-01-01T12:00:00Z. `@every` ticks are aligned to the epoch, and `*/15`
// fires at the same instants in every time zone (all UTC offsets are multiples of 15 minutes), so
// these expectations hold wherever the tests run.
describe("fizz timer", () => {
  let registry: FakeServer;

  before(async () => {
    registry = await FakeServer.start();
  });
  afterEach(() => registry.reset());
  after(() => registry.close());

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });
  const timer = (name: string, cron: string, extra: object = {}) =>
    apiObject("timetriggers", name, {
      function: "report",
      cron,
      method: "POST",
      contentType: "application/json",
      ...extra,
    });

  it("create sends the schedule, method and body, and prints the next run", async () => {
    registry.on("POST", TIMERS, {
      status: 201,
      json: timer("poll", "*/15 * * * *", { method: "GET" }),
    });

    const result = await cli(
      "timer",
      "create",
      "--name",
      "poll",
      "--function",
      "report",
      "--cron",
      "*/15 * * * *",
      "--method",
      "get",
      "--body",
      '{"full":true}',
    );

    expect(result.code, result.stderr).to.equal(0);
    expect(registry.jsonBody(0)).to.deep.equal({
      name: "poll",
      spec: { function: "report", cron: "*/15 * * * *", method: "GET", body: '{"full":true}' },
    });
    expect(result.stdout).to.equal(
      'timer "poll" created: */15 * * * * -> report, next run 2025-01-01T12:15:00Z\n',
    );
  });

  it("create reads --body @file and works under the timetrigger and tt aliases", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fizz-timer-"));
    try {
      await writeFile(join(dir, "body.json"), '{"from":"file"}');
      registry.on("POST", TIMERS, { status: 201, json: timer("t", "@every 30s") });
      for (const alias of ["timetrigger", "tt"]) {
        registry.requests.length = 0;
        const result = await cli(
          alias,
          "create",
          "--name",
          "t",
          "--function",
          "report",
          "--cron",
          "@every 30s",
          "--body",
          `@${join(dir, "body.json")}`,
        );

        expect(result.code, alias).to.equal(0);
        expect(registry.jsonBody(0)).to.deep.include({
          spec: { function: "report", cron: "@every 30s", body: '{"from":"file"}' },
        });
      }
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it("create refuses an unknown method before sending anything", async () => {
    const result = await cli(
      "timer",
      "create",
      "--name",
      "t",
      "--function",
      "f",
      "--cron",
      "@hourly",
      "--method",
      "TRACE",
    );

    expect(result.code).to.equal(2);
    expect(result.stderr).to.include("must be one of GET, POST, PUT, PATCH, DELETE");
    expect(registry.requests).to.have.length(0);
  });

  it("create reports a bad cron as the registry's message and code", async () => {
    registry.on("POST", TIMERS, {
      status: 400,
      json: apiError(
        "VALIDATION_FAILED",
        'spec.cron: "61 * * * *": CronPattern: Invalid value for minute: 61',
        "spec.cron",
      ),
    });

    const result = await cli(
      "timer",
      "create",
      "--name",
      "t",
      "--function",
      "f",
      "--cron",
      "61 * * * *",
    );

    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal(
      'Error: spec.cron: "61 * * * *": CronPattern: Invalid value for minute: 61 (VALIDATION_FAILED)\n',
    );
  });

  it("list shows NAME, FUNCTION, CRON, METHOD, NEXT RUN, REVISION and AGE", async () => {
    registry.on("GET", `${TIMERS}?limit=500`, {
      json: {
        items: [timer("poll", "@every 30s", { method: "GET" }), timer("quarter", "*/15 * * * *")],
      },
    });

    const result = await cli("timer", "list");

    expect(result.stdout.split("\n")).to.deep.equal([
      "NAME      FUNCTION   CRON           METHOD   NEXT RUN               REVISION   AGE",
      "poll      report     @every 30s     GET      2025-01-01T12:00:30Z   1          5m",
      "quarter   report     */15 * * * *   POST     2025-01-01T12:15:00Z   1          5m",
      "",
    ]);
  });

  it("get shows the next three runs, and a long body only by size", async () => {
    registry.on("GET", `${TIMERS}/quarter`, {
      json: timer("quarter", "*/15 * * * *", { body: "x".repeat(100) }),
    });

    const result = await cli("timer", "get", "--name", "quarter");

    expect(result.stdout).to.include(
      "Next runs:    2025-01-01T12:15:00Z, 2025-01-01T12:30:00Z, 2025-01-01T12:45:00Z\n",
    );
    expect(result.stdout).to.include("Body:         100 bytes (see -o json)\n");
  });

  it("update PATCHes only the given fields; an empty --body unsets it", async () => {
    registry.on("PATCH", `${TIMERS}/poll`, { json: timer("poll", "@hourly", {}) });

    const result = await cli(
      "timer",
      "update",
      "--name",
      "poll",
      "--cron",
      "@hourly",
      "--body",
      "",
    );

    expect(result.code).to.equal(0);
    expect(registry.jsonBody(0)).to.deep.equal({ spec: { cron: "@hourly", body: null } });
    expect(result.stdout).to.equal('timer "poll" updated (revision 1)\n');
  });

  it("update without any field is a usage error", async () => {
    const result = await cli("timer", "update", "--name", "poll");

    expect(result.code).to.equal(2);
    expect(result.stderr).to.include("nothing to update");
  });

  it("delete sends DELETE and confirms", async () => {
    registry.on("DELETE", `${TIMERS}/poll`, { json: timer("poll", "@hourly") });

    const result = await cli("timer", "delete", "--name", "poll");

    expect(result.code).to.equal(0);
    expect(result.stdout).to.equal('timer "poll" deleted\n');
  });

  describe("showschedule", () => {
    it("prints the next three runs of every timer of the namespace", async () => {
      registry.on("GET", `${TIMERS}?limit=500`, {
        json: { items: [timer("poll", "@every 30s"), timer("quarter", "*/15 * * * *")] },
      });

      const result = await cli("timer", "showschedule");

      expect(result.code).to.equal(0);
      expect(result.stdout.split("\n")).to.deep.equal([
        "TIMER     CRON           NEXT RUNS",
        "poll      @every 30s     2025-01-01T12:00:30Z, 2025-01-01T12:01:00Z, 2025-01-01T12:01:30Z",
        "quarter   */15 * * * *   2025-01-01T12:15:00Z, 2025-01-01T12:30:00Z, 2025-01-01T12:45:00Z",
        "",
      ]);
    });

    it("with --name and --count shows one timer; -o json gives ISO times", async () => {
      registry.on("GET", `${TIMERS}/quarter`, { json: timer("quarter", "*/15 * * * *") });

      const result = await cli(
        "timer",
        "showschedule",
        "--name",
        "quarter",
        "--count",
        "2",
        "-o",
        "json",
      );

      expect(registry.calls()).to.deep.equal([`GET ${TIMERS}/quarter`]);
      expect(JSON.parse(result.stdout)).to.deep.equal({
        items: [
          {
            namespace: "default",
            name: "quarter",
            function: "report",
            cron: "*/15 * * * *",
            nextRuns: ["2025-01-01T12:15:00.000Z", "2025-01-01T12:30:00.000Z"],
          },
        ],
      });
    });

    it("with --cron checks an expression without calling the registry", async () => {
      const result = await cli("timer", "showschedule", "--cron", "@every 1h", "--count", "1");

      expect(result.code).to.equal(0);
      expect(registry.requests).to.have.length(0);
      expect(result.stdout.split("\n")).to.deep.equal([
        "TIMER   CRON        NEXT RUNS",
        "-       @every 1h   2025-01-01T13:00:00Z",
        "",
      ]);
    });

    it("refuses a bad --cron with the parser's reason (usage error)", async () => {
      const result = await cli("timer", "showschedule", "--cron", "61 * * * *");

      expect(result.code).to.equal(2);
      expect(result.stderr).to.include("error: option '--cron <expression>'");
      expect(result.stderr).to.include("Invalid value for minute: 61");
      expect(registry.requests).to.have.length(0);
    });

    it("says never for a schedule that never fires, and refuses --cron with --name", async () => {
      const never = await cli("timer", "showschedule", "--cron", "0 0 31 2 *");
      const both = await cli("timer", "showschedule", "--cron", "@hourly", "--name", "x");

      expect(never.stdout).to.include("never");
      expect(both.code).to.equal(2);
      expect(both.stderr).to.include("cannot be used with option");
    });

    it("refuses a --count outside 1-100", async () => {
      const result = await cli("timer", "showschedule", "--cron", "@hourly", "--count", "0");

      expect(result.code).to.equal(2);
      expect(result.stderr).to.include("must be between 1 and 100");
    });

    it("reports an empty namespace on stderr", async () => {
      registry.on("GET", `${TIMERS}?limit=500`, { json: { items: [] } });

      const result = await cli("timer", "showschedule");

      expect(result.stdout).to.equal("");
      expect(result.stderr).to.equal('No timers found in namespace "default".\n');
    });
  });
});
