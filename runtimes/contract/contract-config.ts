// The runtime contract (docs/runtime-contract.md), part 4: secrets and configmaps. Both forms of
// specialize write them as files <FIZZ_SECRETS_DIR|FIZZ_CONFIGS_DIR>/<namespace>/<name>/<key>
// (0400) before the code loads, tell the function where through those two variables, and never
// log a value. Names and keys that would make a path anywhere else are refused.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { type Runtime, postJson, request, specializeBody } from "./harness.js";
import { ME, healthState } from "./contract-lifecycle.js";
import type { Deployer } from "./deploy.js";
import type { RuntimeUnderTest } from "./runtime-under-test.js";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const PASSWORD = "pa55-w0rd-never-logged";
const SECRETS = { db: { password: b64(PASSWORD), "user.name": b64("app") } };
const CONFIGMAPS = { app: { mode: b64("debug"), "config.json": b64('{"level":2}') } };

export function describeConfig({ start, fixtures }: RuntimeUnderTest, deploy: Deployer): void {
  const { packages } = fixtures;
  const { configReader } = packages;

  async function read(rt: Runtime, query: string): Promise<string> {
    const res = await request(rt.url, { path: `/?${query}`, headers: ME });
    expect(res.status, res.text).to.equal(200);
    return res.text;
  }

  describe("secrets and configmaps of a package, default directories", () => {
    let rt: Runtime;
    let workdir: string;
    before(async () => {
      workdir = mkdtempSync(join(tmpdir(), "fizz-runtime-config-"));
      rt = await start({ FIZZ_WORKDIR: workdir });
      const res = await deploy.package(
        rt,
        { [packages.main]: configReader.source },
        {
          secrets: SECRETS,
          configmaps: CONFIGMAPS,
          env: { GREETING: "hi from env" },
        },
      );
      expect(res.status, res.text).to.equal(200);
    });
    after(async () => {
      await rt.kill();
      rmSync(workdir, { recursive: true, force: true });
    });

    it("lets the function read them at FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR/<ns>/<name>/<key>", async () => {
      const secret = (path: string) => read(rt, `kind=file&dir=FIZZ_SECRETS_DIR&path=${path}`);
      const config = (path: string) => read(rt, `kind=file&dir=FIZZ_CONFIGS_DIR&path=${path}`);
      expect(await secret("default/db/password")).to.equal(PASSWORD);
      expect(await secret("default/db/user.name")).to.equal("app");
      expect(await config("default/app/mode")).to.equal("debug");
      expect(await config("default/app/config.json")).to.equal('{"level":2}');
    });

    it("defaults the directories to <FIZZ_WORKDIR>/secrets and /configs, and gives env too", async () => {
      expect(await read(rt, "kind=env&name=FIZZ_SECRETS_DIR")).to.equal(join(workdir, "secrets"));
      expect(await read(rt, "kind=env&name=FIZZ_CONFIGS_DIR")).to.equal(join(workdir, "configs"));
      expect(await read(rt, "kind=env&name=GREETING")).to.equal("hi from env");
    });

    it("writes the files 0400, readable by the instance only", () => {
      for (const file of ["secrets/default/db/password", "configs/default/app/mode"]) {
        expect(statSync(join(workdir, file)).mode & 0o777, file).to.equal(0o400);
      }
      expect(statSync(join(workdir, "secrets/default/db")).mode & 0o077).to.equal(0);
    });

    it("never logs a value", () => {
      expect(rt.stderr() + rt.stdout()).to.not.include(PASSWORD);
    });
  });

  describe("secrets and configmaps of a single file, FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR set", () => {
    let rt: Runtime;
    let dirs: string;
    before(async () => {
      dirs = mkdtempSync(join(tmpdir(), "fizz-runtime-mounts-"));
      rt = await start({
        FIZZ_SECRETS_DIR: join(dirs, "secrets"),
        FIZZ_CONFIGS_DIR: join(dirs, "configs"),
      });
      const res = await deploy.source(rt, configReader, {
        secrets: SECRETS,
        configmaps: CONFIGMAPS,
        // The platform's directories win over the function's own env.
        env: { FIZZ_SECRETS_DIR: "/etc", GREETING: "single" },
      });
      expect(res.status, res.text).to.equal(200);
    });
    after(async () => {
      await rt.kill();
      rmSync(dirs, { recursive: true, force: true });
    });

    it("writes them under the given directories and tells the function where", async () => {
      expect(await read(rt, "kind=env&name=FIZZ_SECRETS_DIR")).to.equal(join(dirs, "secrets"));
      expect(await read(rt, "kind=env&name=GREETING")).to.equal("single");
      const password = "kind=file&dir=FIZZ_SECRETS_DIR&path=default/db/password";
      expect(await read(rt, password)).to.equal(PASSWORD);
      const mode = "kind=file&dir=FIZZ_CONFIGS_DIR&path=default/app/mode";
      expect(await read(rt, mode)).to.equal("debug");
      expect(statSync(join(dirs, "secrets/default/db/password")).mode & 0o777).to.equal(0o400);
    });
  });

  describe("secret and configmap names and keys it refuses", () => {
    let rt: Runtime;
    before(async () => (rt = await start()));
    after(() => rt.kill());

    it("refuses a name or key that is not a plain file name, or a value that is not base64, without echoing the value", async () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ secrets: { db: { "../../x": b64("v") } } }, "secrets.db.../../x"],
        [{ secrets: { db: { "a/b": b64("v") } } }, "secrets.db.a/b"],
        [{ secrets: { db: { "..": b64("v") } } }, "secrets.db..."],
        [{ secrets: { db: { ".": b64("v") } } }, "secrets.db.."],
        [{ secrets: { "../db": { k: b64("v") } } }, "secrets.../db"],
        [{ configmaps: { "..": { k: b64("v") } } }, "configmaps..."],
        [{ configmaps: { app: { "": b64("v") } } }, "configmaps.app."],
        [{ secrets: { db: { password: `${PASSWORD}!` } } }, "secrets.db.password"],
        [{ secrets: { db: "not an object" } }, "secrets.db"],
        [{ secrets: [] }, "secrets"],
      ];
      for (const [extra, field] of cases) {
        const body = { ...specializeBody(configReader.filename, configReader.source), ...extra };
        const res = await postJson(rt.url, "/v2/specialize", body);
        expect(res.status, field).to.equal(400);
        expect(res.error(), field).to.include({ code: "VALIDATION_FAILED", field });
        expect(res.text).to.not.include(PASSWORD);
      }
      expect(await healthState(rt)).to.equal("warm");
    });
  });
}
