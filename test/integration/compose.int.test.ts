import { expect } from "chai";
import { spawnSync } from "node:child_process";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "../..");

/**
 * No Docker engine runs here, so compose.dev.yml is checked the way the engine-less tool can:
 * docker-compose parses, interpolates and validates it against the Compose schema.
 */
describe("compose.dev.yml", () => {
  const config = (env: NodeJS.ProcessEnv) =>
    spawnSync("docker-compose", ["-f", "compose.dev.yml", "config"], {
      cwd: ROOT,
      encoding: "utf8",
      env,
    });

  it("is a valid Compose file with NATS, Redis and the five services", () => {
    const r = config({ ...process.env, FIZZ_ADMIN_TOKEN: "a-development-token-0123456789" });
    expect(r.error, "docker-compose must be installed (npm test installs it on Debian)").to.equal(
      undefined,
    );
    expect(r.status, r.stderr).to.equal(0);
    for (const svc of [
      "nats",
      "redis",
      "registry",
      "scheduler",
      "poolkeeper",
      "gateway",
      "kubewatcher",
    ]) {
      expect(r.stdout).to.match(new RegExp(`^  ${svc}:$`, "m"));
    }
    expect(r.stdout).to.include("SERVICE: gateway");
    expect(r.stdout).to.include("FIZZ_ADMIN_TOKEN: a-development-token-0123456789");
  });

  it("refuses to start the registry without an admin token", () => {
    const env = { ...process.env };
    delete env.FIZZ_ADMIN_TOKEN;
    const r = config(env);
    expect(r.status).to.not.equal(0);
    expect(r.stderr).to.include("set FIZZ_ADMIN_TOKEN");
  });

  it("builds each service image with the service Dockerfile as a non-root user", async () => {
    const { readFile } = await import("node:fs/promises");
    const dockerfile = await readFile(path.join(ROOT, "services/Dockerfile"), "utf8");
    expect(dockerfile).to.match(/^FROM .* AS build$/m);
    expect(dockerfile).to.match(/^USER 65532:65532$/m);
    for (const rt of ["node", "python"]) {
      const f = await readFile(path.join(ROOT, `runtimes/${rt}/Dockerfile`), "utf8");
      expect(f, rt).to.match(/^USER /m);
    }
  });
});
