import { mkdir, mkdtemp, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { findToken } from "../src/token.js";
import { apiError, fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

const ENVS = "/v1/namespaces/default/environments";
const FILE_TOKEN = "file-token-0123456789abcdef";
const ENV_TOKEN = "env-token-0123456789abcdef";

describe("fizz registry token", () => {
  let registry: FakeServer;
  let root: string;
  let project: string;
  let nested: string;

  before(async () => {
    registry = await FakeServer.start();
    root = await mkdtemp(join(tmpdir(), "fizz-token-"));
    project = join(root, "project");
    nested = join(project, "functions", "deep");
    await mkdir(join(project, ".fizz"), { recursive: true });
    await mkdir(nested, { recursive: true });
    await writeFile(join(project, ".fizz", "admin-token"), `${FILE_TOKEN}\n`, { mode: 0o600 });
  });
  afterEach(() => registry.reset());
  after(async () => {
    await registry.close();
    await rm(root, { recursive: true, force: true });
  });

  const list = (more: { env?: Record<string, string>; cwd?: string }) =>
    fizz(["env", "list", "-o", "json"], { registry: registry.url }, more);
  const sentAuthorization = () => registry.requests[0]?.headers.authorization;

  it("sends the .fizz/admin-token of the nearest ancestor directory as a bearer token", async () => {
    registry.on("GET", `${ENVS}?limit=500`, { json: { items: [] } });
    const result = await list({ cwd: nested });
    expect(result.code, result.stderr).to.equal(0);
    expect(sentAuthorization()).to.equal(`Bearer ${FILE_TOKEN}`);
  });

  it("prefers FIZZ_TOKEN over the file", async () => {
    registry.on("GET", `${ENVS}?limit=500`, { json: { items: [] } });
    await list({ cwd: nested, env: { FIZZ_TOKEN: ENV_TOKEN } });
    expect(sentAuthorization()).to.equal(`Bearer ${ENV_TOKEN}`);
  });

  it("reads FIZZ_DATA_DIR/admin-token instead of searching when FIZZ_DATA_DIR is set", async () => {
    registry.on("GET", `${ENVS}?limit=500`, { json: { items: [] } });
    await list({ cwd: root, env: { FIZZ_DATA_DIR: join(project, ".fizz") } });
    expect(sentAuthorization()).to.equal(`Bearer ${FILE_TOKEN}`);
    expect(findToken({ FIZZ_DATA_DIR: join(root, "nowhere") }, nested)).to.equal(undefined);
  });

  it("sends no Authorization header when there is no token anywhere", async () => {
    registry.on("GET", `${ENVS}?limit=500`, { json: { items: [] } });
    await list({ cwd: root });
    expect(sentAuthorization()).to.equal(undefined);
  });

  it("on 401 without a token says how to get one, without printing any token", async () => {
    registry.on("GET", `${ENVS}?limit=500`, {
      status: 401,
      json: apiError("UNAUTHENTICATED", "the registry needs a token", "Authorization"),
    });
    const result = await list({ cwd: root });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include("the registry needs a token (UNAUTHENTICATED)");
    expect(result.stderr).to.include(
      "the registry needs a token: set FIZZ_TOKEN or run from the directory where `npm start` runs",
    );
  });

  it("on 401 with a token names where the refused token came from, not the token", async () => {
    registry.on("GET", `${ENVS}?limit=500`, {
      status: 401,
      json: apiError("UNAUTHENTICATED", "the token is not valid for this registry"),
    });
    const result = await list({ cwd: nested });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include(join(project, ".fizz", "admin-token"));
    expect(result.stderr).not.to.include(FILE_TOKEN);
  });

  it("sends bodies as application/json with the token", async () => {
    registry.on("POST", ENVS, { status: 201, json: {} });
    await fizz(
      ["env", "create", "--name", "node", "--image", "fizz/env-node", "-o", "json"],
      { registry: registry.url },
      { cwd: nested },
    );
    expect(registry.requests[0]?.headers["content-type"]).to.equal("application/json");
    expect(sentAuthorization()).to.equal(`Bearer ${FILE_TOKEN}`);
  });

  it("refuses an empty or unreadable token file clearly instead of sending nothing", async () => {
    const empty = join(root, "empty");
    await mkdir(join(empty, ".fizz"), { recursive: true });
    await writeFile(join(empty, ".fizz", "admin-token"), "\n");
    const result = await list({ cwd: empty });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include("is empty");
    expect(registry.requests).to.have.length(0);
    if (process.getuid?.() !== 0) {
      // root reads any file, so the permission case only means something for other users.
      await writeFile(join(empty, ".fizz", "admin-token"), FILE_TOKEN);
      await chmod(join(empty, ".fizz", "admin-token"), 0o000);
      expect((await list({ cwd: empty })).stderr).to.include("permission denied");
    }
  });
});
