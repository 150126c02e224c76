import { expect } from "chai";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import { REGISTRY_MALLOC_ENV, serviceEnv } from "../../scripts/lib/service-env.mjs";
import { ROOT } from "../../scripts/lib/prereqs.mjs";

/**
 * The registry runs with a fixed glibc mmap threshold (idle RSS ~5 MB lower; see
 * scripts/lib/service-env.mjs): from the launcher and in the Kubernetes manifest alike.
 */
describe("services' environment: the registry's malloc setting", () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "fizz-env-"));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it("the launcher gives it to the registry only", () => {
    const ctx = {
      env: { PATH: "/usr/bin" },
      embeddedNats: false,
      embeddedRedis: false,
      creds: { nats: {}, redis: {}, adminToken: "a", readToken: "r" },
      dataDir,
      privateDir: (name: string) => path.join(dataDir, name),
      consoleDir: undefined,
      gatewayPort: 1,
      distDir: undefined,
      runtimesDirSet: false,
      extraEnv: undefined,
    } as unknown as Parameters<typeof serviceEnv>[1];
    expect(REGISTRY_MALLOC_ENV).to.deep.equal({ MALLOC_MMAP_THRESHOLD_: "131072" });
    expect(serviceEnv("registry", ctx)).to.include(REGISTRY_MALLOC_ENV);
    for (const svc of ["scheduler", "poolkeeper", "gateway", "kubewatcher"])
      expect(serviceEnv(svc, ctx), svc).not.to.have.property("MALLOC_MMAP_THRESHOLD_");
  });

  it("k8s/registry.yaml sets the same", async () => {
    const docs = parseAllDocuments(await readFile(path.join(ROOT, "k8s", "registry.yaml"), "utf8"));
    const env = docs
      .map(
        (d) =>
          d.toJS() as {
            kind?: string;
            spec?: {
              template?: {
                spec?: {
                  containers?: { name: string; env?: { name: string; value?: string }[] }[];
                };
              };
            };
          },
      )
      .filter((d) => d.kind === "Deployment")
      .flatMap((d) => d.spec?.template?.spec?.containers ?? [])
      .find((c) => c.name === "registry")?.env;
    const got = Object.fromEntries(
      (env ?? []).filter((e) => e.name.startsWith("MALLOC_")).map((e) => [e.name, e.value]),
    );
    expect(got).to.deep.equal(REGISTRY_MALLOC_ENV);
  });
});
