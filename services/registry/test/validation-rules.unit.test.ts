import { expect } from "chai";
import { FizzError, type EnvironmentSpec, type FunctionSpec } from "@fizz/events";
import { loadConfig } from "../src/config";
import {
  checkCron,
  mergeSpec,
  parseCreate,
  parsePatch,
  type ValidationOptions,
} from "../src/validation";

const opts: ValidationOptions = { backend: "process", codeMaxBytes: 1024 };

function refused(fn: () => unknown): FizzError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(FizzError);
    return err as FizzError;
  }
  throw new Error("expected a FizzError");
}

const fn: FunctionSpec = {
  environment: "python",
  code: { filename: "a.py", digest: `sha256:${"0".repeat(64)}`, size: 1 },
  minInstances: 0,
  maxInstances: 10,
  timeoutSeconds: 60,
  idleTimeoutSeconds: 120,
};
const env: EnvironmentSpec = { image: "fizz/env-python", poolSize: 3 };

describe("validation matches execution (unit)", () => {
  it("refuses an environment command on the process backend unless the operator allows it", () => {
    const body = { name: "e", spec: { image: "fizz/env-node", command: ["sh", "-c", "id"] } };
    const err = refused(() => parseCreate("environments", body, opts));
    expect([err.code, err.field, err.status]).to.deep.equal([
      "ENV_COMMAND_DISABLED",
      "spec.command",
      400,
    ]);
    expect(err.message).to.match(/FIZZ_ALLOW_ENV_COMMAND/);
    expect(
      parseCreate("environments", body, { ...opts, allowEnvCommand: true }).spec,
    ).to.deep.include({ command: ["sh", "-c", "id"] });
    // Inside a pod, a command is the container's own business.
    expect(
      parseCreate("environments", body, { ...opts, backend: "kubernetes" }).spec,
    ).to.deep.include({ command: ["sh", "-c", "id"] });
  });

  it("refuses a patch that adds a command, and lets one remove it", () => {
    const add = parsePatch("environments", { spec: { command: ["sh"] } }, opts);
    expect(refused(() => mergeSpec("environments", env, add, opts)).code).to.equal(
      "ENV_COMMAND_DISABLED",
    );
    const stored = { ...env, image: "acme/custom", command: ["ruby"] };
    const remove = parsePatch(
      "environments",
      { spec: { command: null, image: "fizz/env-node" } },
      opts,
    );
    expect(mergeSpec("environments", stored, remove, opts)).to.not.have.property("command");
  });

  it("reads FIZZ_ALLOW_ENV_COMMAND, off by default", () => {
    const base = { FIZZ_ADMIN_TOKEN: "a-long-enough-admin-token-0123456789" };
    expect(loadConfig(base).allowEnvCommand).to.equal(false);
    expect(loadConfig({ ...base, FIZZ_ALLOW_ENV_COMMAND: "true" }).allowEnvCommand).to.equal(true);
  });

  it("refuses minInstances above maxInstances on create and on a merged patch", () => {
    const upload = { filename: "a.py", content: Buffer.from("x").toString("base64") };
    const create = {
      name: "f",
      spec: { environment: "python", code: upload, minInstances: 3, maxInstances: 2 },
    };
    const err = refused(() => parseCreate("functions", create, opts));
    expect([err.code, err.field]).to.deep.equal(["VALIDATION_FAILED", "spec.minInstances"]);
    // Each half is fine alone; merged with what is stored, the function could never be satisfied.
    const lower = parsePatch("functions", { spec: { maxInstances: 1 } }, opts);
    const stored = { ...fn, minInstances: 2 };
    expect(refused(() => mergeSpec("functions", stored, lower, opts)).field).to.equal(
      "spec.minInstances",
    );
    const equal = parsePatch("functions", { spec: { maxInstances: 2 } }, opts);
    expect(mergeSpec("functions", stored, equal, opts)).to.deep.include({
      minInstances: 2,
      maxInstances: 2,
    });
  });

  it("refuses timers out of range with the reason, naming spec.cron", () => {
    const now = new Date("2026-12-04T00:00:00Z");
    for (const [cron, why] of [
      ["@every 99999999999h", /at most 366 days/],
      ["0 0 30 2 *", /never fires/],
      ["@every 500ms", /at least 1s/],
    ] as const) {
      const err = refused(() => checkCron(cron, now));
      expect([err.code, err.field], cron).to.deep.equal(["VALIDATION_FAILED", "spec.cron"]);
      expect(err.message, cron).to.match(why);
    }
    expect(() => checkCron("@every 8784h", now)).to.not.throw();
  });

  it("refuses routes the gateway cannot serve as written, naming the field", () => {
    const body = (spec: Record<string, unknown>) => ({
      name: "t",
      spec: { function: "f", ...spec },
    });
    for (const [spec, field] of [
      [{ path: "/healthz" }, "spec.path"],
      [{ path: "/a/%2e%2e/b" }, "spec.path"],
      [{ path: "/a/{x}/{x}" }, "spec.path"],
      [{ prefix: "/function/" }, "spec.prefix"],
    ] as const) {
      const err = refused(() => parseCreate("httptriggers", body(spec), opts));
      expect([err.code, err.field], JSON.stringify(spec)).to.deep.equal([
        "VALIDATION_FAILED",
        field,
      ]);
    }
    const moved = parsePatch("httptriggers", { spec: { path: "/metrics" } }, opts);
    const stored = { function: "f", path: "/ok", methods: [] };
    expect(refused(() => mergeSpec("httptriggers", stored, moved, opts)).field).to.equal(
      "spec.path",
    );
  });
});
