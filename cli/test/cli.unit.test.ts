import { expect } from "chai";
import { fizz } from "./support/cli.js";
import { closedUrl, FakeServer } from "./support/fake-server.js";
import { run } from "../src/main.js";

describe("fizz (global behaviour)", () => {
  it("says the registry is unreachable and suggests npm start when the connection is refused", async () => {
    const url = await closedUrl();

    const result = await fizz(["env", "list"], { registry: url });

    expect(result.code).to.equal(1);
    expect(result.stdout).to.equal("");
    expect(result.stderr).to.equal(
      `Error: cannot reach the registry at ${url}: is "npm start" running?\n`,
    );
  });

  it("uses http://127.0.0.1:8081 as the registry when FIZZ_REGISTRY_URL is unset", async () => {
    const urls: string[] = [];
    const fakeFetch: typeof fetch = (input) => {
      urls.push(input instanceof Request ? input.url : String(input));
      return Promise.resolve(new Response(JSON.stringify({ items: [] }), { status: 200 }));
    };
    const sink = { write: () => true };

    const code = await run(["fn", "list"], {
      env: {},
      stdout: sink,
      stderr: sink,
      fetch: fakeFetch,
    });

    expect(code).to.equal(0);
    expect(urls).to.deep.equal(["http://127.0.0.1:8081/v1/namespaces/default/functions?limit=500"]);
  });

  it("reports an invalid FIZZ_REGISTRY_URL instead of sending anything", async () => {
    const result = await fizz(["env", "list"], { registry: "not a url" });

    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal('Error: FIZZ_REGISTRY_URL is not a valid URL: "not a url"\n');
  });

  it("prints an error answer that is not the API's JSON with its HTTP status", async () => {
    const proxy = await FakeServer.start();
    try {
      proxy.on("GET", "/v1/namespaces/default/environments?limit=500", {
        status: 502,
        body: "<html>Bad Gateway</html>",
      });

      const result = await fizz(["env", "list"], { registry: proxy.url });

      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal("Error: HTTP 502: <html>Bad Gateway</html>\n");
    } finally {
      await proxy.close();
    }
  });

  it("accepts the global options after the subcommand too", async () => {
    const registry = await FakeServer.start();
    try {
      registry.on("GET", "/v1/namespaces/team-a/functions?limit=500", { json: { items: [] } });

      const result = await fizz(["fn", "list", "--namespace", "team-a", "--output", "json"], {
        registry: registry.url,
      });

      expect(result.code).to.equal(0);
      expect(JSON.parse(result.stdout)).to.deep.equal({ items: [] });
    } finally {
      await registry.close();
    }
  });

  it("exits 2 on an unknown command, an unknown option and an unknown output format", async () => {
    for (const argv of [["nope"], ["env", "list", "--bogus"], ["-o", "yaml", "env", "list"]]) {
      const result = await fizz(argv, { registry: await closedUrl() });

      expect(result.code, argv.join(" ")).to.equal(2);
      expect(result.stderr, argv.join(" ")).to.match(/^error: /);
    }
  });

  it("exits 2 and prints usage on stderr when no command is given", async () => {
    const result = await fizz([]);

    expect(result.code).to.equal(2);
    expect(result.stdout).to.equal("");
    expect(result.stderr).to.include("Usage: fizz");
  });

  it("prints help on stdout and exits 0 for --help", async () => {
    const result = await fizz(["fn", "create", "--help"]);

    expect(result.code).to.equal(0);
    expect(result.stdout).to.include("Usage: fizz fn create");
    expect(result.stdout).to.include("--min-instances <n>");
  });
});
