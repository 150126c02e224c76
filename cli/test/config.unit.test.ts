import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { apiObject, fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

const NS = "/v1/namespaces/default";
const SECRET_VALUE = "s3cr3t-hunter2";

describe("fizz secret and configmap", () => {
  let registry: FakeServer;
  let dir: string;
  let passwordFile: string;

  before(async () => {
    registry = await FakeServer.start();
    dir = await mkdtemp(join(tmpdir(), "fizz-cli-config-"));
    passwordFile = join(dir, "password.txt");
    await writeFile(passwordFile, Buffer.from([0xff, 0x00, 0x41]));
  });
  afterEach(() => registry.reset());
  after(async () => {
    await registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });
  const secretObject = (keys: string[], extra: Record<string, unknown> = {}) =>
    apiObject("secrets", "db", { keys, ...extra });

  describe("secret", () => {
    it("create sends every value base64 encoded (binary files too) and prints no value", async () => {
      registry.on("POST", `${NS}/secrets`, {
        status: 201,
        json: secretObject(["user", "password", "dsn"]),
      });

      const result = await cli(
        "secret",
        "create",
        "--name",
        "db",
        "--from-literal",
        "user=shop",
        "--from-literal",
        `dsn=pg://u:${SECRET_VALUE}@h/db?x=1`,
        "--from-file",
        `password=${passwordFile}`,
      );

      expect(result.stderr).to.equal("");
      expect(result.code).to.equal(0);
      expect(registry.jsonBody(0)).to.deep.equal({
        name: "db",
        spec: {
          data: {
            user: Buffer.from("shop").toString("base64"),
            dsn: Buffer.from(`pg://u:${SECRET_VALUE}@h/db?x=1`).toString("base64"),
            password: Buffer.from([0xff, 0x00, 0x41]).toString("base64"),
          },
        },
      });
      expect(result.stdout).to.equal('secret "db" created (3 keys)\n');
    });

    it("--from-file without a key uses the file's name", async () => {
      registry.on("POST", `${NS}/secrets`, { status: 201, json: secretObject(["password.txt"]) });

      const result = await cli("secret", "create", "--name", "db", "--from-file", passwordFile);

      expect(result.code).to.equal(0);
      expect(
        Object.keys((registry.jsonBody(0) as { spec: { data: object } }).spec.data),
      ).to.deep.equal(["password.txt"]);
    });

    it("get and list show key names only, even if a registry sent values, also in JSON", async () => {
      // A registry that (wrongly) returned values: the CLI still must not print them.
      const leaky = secretObject(["password"], {
        data: { password: Buffer.from(SECRET_VALUE).toString("base64") },
      });
      registry.on("GET", `${NS}/secrets/db`, { json: leaky });
      registry.on("GET", `${NS}/secrets?limit=500`, { json: { items: [leaky] } });

      const outputs = [
        await cli("secret", "get", "--name", "db"),
        await cli("secret", "get", "--name", "db", "-o", "json"),
        await cli("secret", "list"),
        await cli("secret", "list", "-o", "json"),
      ];

      for (const out of outputs) {
        expect(out.code).to.equal(0);
        expect(out.stdout).to.include("password");
        expect(out.stdout).not.to.include(SECRET_VALUE);
        expect(out.stdout).not.to.include(Buffer.from(SECRET_VALUE).toString("base64"));
      }
      expect(outputs[0]!.stdout).to.match(/Keys:\s+password\n/);
      expect((JSON.parse(outputs[1]!.stdout) as { spec: unknown }).spec).to.deep.equal({
        keys: ["password"],
      });
      expect(outputs[2]!.stdout.split("\n")[1]).to.match(/^db\s+password\s+1\s+5m$/);
    });

    it("update replaces the data with what is given", async () => {
      registry.on("PATCH", `${NS}/secrets/db`, {
        json: apiObject("secrets", "db", { keys: ["token"] }, { revision: 2 }),
      });

      const result = await cli("secret", "update", "--name", "db", "--from-literal", "token=abc");

      expect(result.code).to.equal(0);
      expect(registry.jsonBody(0)).to.deep.equal({ spec: { data: { token: "YWJj" } } });
      expect(result.stdout).to.equal('secret "db" updated (1 key, revision 2)\n');
    });

    for (const [argv, message] of [
      [[], "give at least one --from-literal <key=value> or --from-file <[key=]path>"],
      [["--from-literal", "novalue"], "expected KEY=VALUE, got 'novalue'"],
      [["--from-literal", "a/b=1"], "'a/b' is not a valid key"],
      [["--from-literal", "..=1"], "'..' is not a valid key"],
      [["--from-literal", "a=1", "--from-literal", "a=2"], "key 'a' is given twice"],
    ] as const) {
      it(`create ${argv.join(" ") || "without data"} is a usage error naming the flag`, async () => {
        const result = await cli("secret", "create", "--name", "db", ...argv);

        expect(result.code).to.equal(2);
        expect(result.stderr).to.include(message);
        expect(registry.requests).to.have.length(0);
      });
    }

    it("refuses values over 1 MiB before sending", async () => {
      const big = join(dir, "big.bin");
      await writeFile(big, Buffer.alloc(1024 * 1024 + 1));

      const result = await cli("secret", "create", "--name", "db", "--from-file", `k=${big}`);

      expect(result.code).to.equal(1);
      expect(result.stderr).to.include("over the limit of 1048576 bytes");
      expect(registry.requests).to.have.length(0);
    });
  });

  describe("configmap", () => {
    it("create sends text values as is; get shows them", async () => {
      const rules = join(dir, "rules.json");
      await writeFile(rules, '{"max": 3}\n');
      const cm = apiObject("configmaps", "settings", {
        data: { mode: "fast", "rules.json": '{"max": 3}\n' },
      });
      registry.on("POST", `${NS}/configmaps`, { status: 201, json: cm });
      registry.on("GET", `${NS}/configmaps/settings`, { json: cm });

      const created = await cli(
        "configmap",
        "create",
        "--name",
        "settings",
        "--from-literal",
        "mode=fast",
        "--from-file",
        rules,
      );
      const shown = await cli("configmap", "get", "--name", "settings");

      expect(created.code).to.equal(0);
      expect(registry.jsonBody(0)).to.deep.equal({
        name: "settings",
        spec: { data: { mode: "fast", "rules.json": '{"max": 3}\n' } },
      });
      expect(shown.stdout).to.match(/Keys:\s+mode, rules.json\n/);
      expect(shown.stdout).to.include(
        'Data:\n--- mode ---\nfast\n--- rules.json ---\n{"max": 3}\n',
      );
    });

    it("refuses a binary file, pointing at secrets", async () => {
      const result = await cli(
        "cm",
        "create",
        "--name",
        "settings",
        "--from-file",
        `k=${passwordFile}`,
      );

      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal(
        "Error: the value of 'k' is not UTF-8 text; use a secret for binary values\n",
      );
    });
  });
});
