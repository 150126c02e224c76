// compose.dev.yml checked without a Docker engine (none runs here): `docker-compose config`
// parses, interpolates and validates it against the Compose schema, and its resolved output is
// then checked against the tree: each Fizz service's own loadConfig must accept the environment
// compose and its image give it, and each image must build from files that exist and run as a
// non-root user. Whether the images build and the containers start is not checked here.
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { loadYaml } from "@kubernetes/client-node";
import { isJsonObject, jsonObject, type JsonObject } from "../lib/json-answer.js";
import { loadConfig as gatewayConfig } from "../../services/gateway/src/config.js";
import { loadConfig as kubewatcherConfig } from "../../services/kubewatcher/src/config.js";
import { loadConfig as poolkeeperConfig } from "../../services/poolkeeper/src/config.js";
import { loadConfig as registryConfig } from "../../services/registry/src/config.js";
import { loadConfig as schedulerConfig } from "../../services/scheduler/src/config.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const TOKEN = "a-development-token-0123456789";

type Env = Record<string, string>;
interface Listening {
  host: string;
  port: number;
  natsUrl: string;
  /** Absent for a service that has no Redis (the poolkeeper). */
  redisUrl?: string;
}

/**
 * The services compose gives the Redis URL and starts after Redis (as before issue 11); the
 * poolkeeper has no Redis at all, so it gets neither.
 */
const REDIS_SERVICES = new Set(["registry", "scheduler", "gateway", "kubewatcher"]);

/** Each Fizz service's own config loader, run on a container's environment (not this process's). */
const LOADERS: Record<string, (env: Env) => Listening> = {
  registry: registryConfig,
  scheduler: schedulerConfig,
  // The dev image runs the poolkeeper as uid 65532 (checked below), so it needs no setpriv.
  poolkeeper: (env) => poolkeeperConfig(env, "/app", { isRoot: false, exists: () => false }),
  gateway: gatewayConfig,
  kubewatcher: kubewatcherConfig,
};

function composeConfig(env: NodeJS.ProcessEnv) {
  return spawnSync("docker-compose", ["-f", "compose.dev.yml", "config"], {
    cwd: ROOT,
    encoding: "utf8",
    env,
  });
}

function stringMap(value: unknown, what: string): Env {
  const out: Env = {};
  for (const [k, v] of Object.entries(value === undefined ? {} : jsonObject(value))) {
    if (typeof v !== "string") throw new Error(`${what}.${k} is not a string`);
    out[k] = v;
  }
  return out;
}

/** The final stage of a Dockerfile: its ENV, its USER, and the sources its build COPYs. */
function readDockerfile(file: string) {
  const lines = readFileSync(path.join(ROOT, file), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const finalStage = lines.slice(lines.findLastIndex((l) => l.startsWith("FROM ")));
  const env: Env = {};
  for (const line of finalStage.filter((l) => l.startsWith("ENV "))) {
    for (const pair of line.slice(4).trim().split(/\s+/)) {
      const [k, v] = pair.split("=", 2);
      if (k && v !== undefined) env[k] = v;
    }
  }
  const user = finalStage
    .findLast((l) => l.startsWith("USER "))
    ?.slice(5)
    .trim();
  const copied = lines
    .filter((l) => l.startsWith("COPY ") && !l.includes("--from="))
    .flatMap((l) => l.split(/\s+/).slice(1, -1));
  return { env, user, copied };
}

describe("compose.dev.yml, checked without a Docker engine", () => {
  let services: Record<string, JsonObject>;

  before(function () {
    const r = composeConfig({ ...process.env, FIZZ_ADMIN_TOKEN: TOKEN });
    expect(r.error, "docker-compose must be installed (npm test installs it on Debian)").to.equal(
      undefined,
    );
    expect(r.status, r.stderr).to.equal(0);
    const doc = jsonObject(loadYaml(r.stdout));
    services = {};
    for (const [name, spec] of Object.entries(jsonObject(doc.services))) {
      services[name] = jsonObject(spec);
    }
  });

  it("passes `docker-compose config` with NATS, Redis and exactly the five Fizz services", () => {
    expect(Object.keys(services).sort()).to.deep.equal(
      ["nats", "redis", ...Object.keys(LOADERS)].sort(),
    );
  });

  it("gives the registry the FIZZ_ADMIN_TOKEN it is started with", () => {
    expect(services.registry?.environment).to.have.property("FIZZ_ADMIN_TOKEN", TOKEN);
  });

  it("fails `docker-compose config` without FIZZ_ADMIN_TOKEN, saying to set it", () => {
    const env = { ...process.env };
    delete env.FIZZ_ADMIN_TOKEN;
    const r = composeConfig(env);
    expect(r.status).to.not.equal(0);
    expect(r.stderr).to.include("set FIZZ_ADMIN_TOKEN");
  });

  for (const [name, load] of Object.entries(LOADERS)) {
    describe(name, () => {
      const spec = () => services[name] ?? {};
      const build = () => jsonObject(spec().build);
      const dockerfile = () => {
        const file = build().dockerfile;
        if (typeof file !== "string") throw new Error(`${name}: build.dockerfile is not a string`);
        return file;
      };

      it("is accepted by the service's loadConfig, listening on 0.0.0.0 on a port it names", () => {
        // The container's environment: the image's ENV, overridden by compose's `environment`.
        const env = {
          ...readDockerfile(dockerfile()).env,
          ...stringMap(spec().environment, `${name}.environment`),
        };
        const config = load(env);
        expect(config.host).to.equal("0.0.0.0");
        expect(config.port, "a fixed port, not a random one").to.be.greaterThan(0);
        expect(config.natsUrl).to.equal("nats://nats:4222");
        if (REDIS_SERVICES.has(name)) expect(config.redisUrl).to.equal("redis://redis:6379");
        else expect(config.redisUrl, "no Redis at all").to.equal(undefined);
        // Published ports reach the port the service listens on, from 127.0.0.1 only.
        const ports: unknown = spec().ports ?? [];
        expect(ports).to.be.an("array");
        for (const port of Array.isArray(ports) ? ports : []) {
          expect(port).to.equal(`127.0.0.1:${config.port}:${config.port}/tcp`);
        }
      });

      it(`starts after NATS${REDIS_SERVICES.has(name) ? " and Redis" : " (no Redis)"}`, () => {
        expect(Object.keys(jsonObject(spec().depends_on)).sort()).to.deep.equal(
          REDIS_SERVICES.has(name) ? ["nats", "redis"] : ["nats"],
        );
      });

      it("builds from a Dockerfile in this tree whose COPY sources exist, bundling this service", () => {
        expect(build().context).to.equal(ROOT);
        const { copied } = readDockerfile(dockerfile());
        for (const source of copied)
          expect(existsSync(path.join(ROOT, source)), source).to.equal(true);
        // services/Dockerfile bundles the service its SERVICE build argument names.
        const args = build().args;
        const bundled =
          dockerfile() === "services/Dockerfile" && isJsonObject(args) ? args.SERVICE : name;
        expect(bundled, "the service the image bundles").to.equal(name);
        expect(existsSync(path.join(ROOT, "services", name, "src", "main.ts"))).to.equal(true);
      });

      it("runs its image as a non-root user", () => {
        expect(readDockerfile(dockerfile()).user).to.match(/^(?!root\b|0\b)\S+$/);
      });
    });
  }

  it("has runtime images that run as a non-root user", () => {
    for (const rt of ["node", "python"]) {
      expect(readDockerfile(`runtimes/${rt}/Dockerfile`).user, rt).to.match(/^(?!root\b|0\b)\S+$/);
    }
  });
});
