import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  ensureServicesBuilt,
  SERVICE_NAMES,
  serviceBundle,
  staleness,
} from "../../scripts/lib/service-build.mjs";

/** The services' bundles the launcher runs (scripts/lib/service-build.mjs). */
describe("service bundles", function () {
  this.timeout(180_000);
  let dist: string;
  before(async () => {
    dist = await mkdtemp(path.join(tmpdir(), "fizz-dist-"));
  });
  after(async () => {
    await rm(dist, { recursive: true, force: true });
  });

  it("builds every service once when two launchers build at the same time, whole files only", async () => {
    expect(staleness(dist)).to.equal("not built yet");
    await Promise.all([ensureServicesBuilt({ dist }), ensureServicesBuilt({ dist })]);
    expect(staleness(dist)).to.equal(undefined);
    for (const svc of SERVICE_NAMES) expect(existsSync(serviceBundle(svc, dist))).to.equal(true);
    // No temporary file left behind, and every chunk an entry names is there.
    const all = [...readdirSync(dist), ...readdirSync(path.join(dist, "chunks"))];
    expect(all.filter((f) => f.endsWith(".tmp"))).to.deep.equal([]);
    for (const svc of SERVICE_NAMES) {
      const text = readFileSync(serviceBundle(svc, dist), "utf8");
      for (const [, chunk] of text.matchAll(/from"\.\/(chunks\/[^"]+)"/g))
        expect(existsSync(path.join(dist, chunk!)), `${svc} imports ${chunk}`).to.equal(true);
    }
  });

  it("loads a bundle: a service with a bad variable names it and exits", () => {
    // The bundle runs (imports resolve, the shared chunks load) up to config validation.
    const r = spawnSync(process.execPath, [serviceBundle("scheduler", dist)], {
      env: { PATH: process.env.PATH, FIZZ_SCHEDULER_PORT: "not-a-port" },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.status).to.equal(1);
    expect(r.stdout + r.stderr).to.contain("FIZZ_SCHEDULER_PORT");
  });
});
