import { chmod, mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Codecs, FizzError } from "@fizz/events";
import { request as natsRequest } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { Harness, environment } from "./harness";

/**
 * A real poolkeeper whose PHP interpreter (FIZZ_PHP) and Go build (FIZZ_RUNTIMES_DIR without a
 * prepared Go binary) are missing: those environments are reported unsupported with the reason,
 * their pools stay empty, and node's pool fills and serves as usual.
 */
describe("poolkeeper with a runtime it cannot run (process backend, real processes)", function () {
  this.timeout(60_000);
  const h = new Harness();
  let missing: string;

  const status = (name: string) => h.pk.pool.status({ namespace: "default", name });
  const envOf = (name: string) => h.pk.pool.environment({ namespace: "default", name });

  before(async () => {
    missing = await mkdtemp(path.join(tmpdir(), "fizz-no-php-"));
    await h.setUp();
    h.environments.set("node", environment("node", "fizz/env-node", 1));
    h.environments.set("php", environment("php", "fizz/env-php", 2));
    h.environments.set("custom", environment("custom", "acme/unknown", 1));
    await h.startPoolkeeper({ FIZZ_PHP: path.join(missing, "bin", "php") });
    h.answerRegistry();
    await h.pk.synced;
  });
  after(async () => {
    await h.tearDown();
    await rm(missing, { recursive: true, force: true });
  });

  it("reports the php environment unsupported naming the missing interpreter, keeps its pool empty, and fills node's", async () => {
    await waitFor(() => status("node")?.warm === 1, { timeoutMs: 20_000, what: "node warm" });
    const php = envOf("php");
    expect(php?.unsupported).to.equal(
      `php runtime unavailable: interpreter ${path.join(missing, "bin", "php")} not found (FIZZ_PHP; Debian: apt-get install php-cli)`,
    );
    expect(envOf("custom")?.unsupported).to.match(/acme\/unknown" names no local runtime/);
    await new Promise((r) => setTimeout(r, 500));
    expect(h.pk.pool.list().filter((t) => t.instance.environment.name === "php")).to.have.length(0);
    expect(envOf("node")?.unsupported).to.equal(undefined);
  });

  it("fills the php pool once its interpreter is there (checked again without an environment change), and keeps the unknown image refused", async () => {
    await mkdir(path.join(missing, "bin"), { recursive: true });
    // Instance uids must reach it (mkdtemp made the directory 0700).
    await chmod(missing, 0o755);
    await symlink("/usr/bin/php", path.join(missing, "bin", "php"));
    h.pk.pool.recheckUnsupported();
    expect(envOf("php")?.unsupported).to.equal(undefined);
    await waitFor(() => status("php")?.warm === 2, { timeoutMs: 20_000, what: "php pool filled" });
    expect(envOf("custom")?.unsupported).to.match(/names no local runtime/);
    // Gone again: reported again, the warm instances stay until used or trimmed.
    await rm(path.join(missing, "bin", "php"));
    h.pk.pool.recheckUnsupported();
    expect(envOf("php")?.unsupported).to.match(/interpreter .* not found \(FIZZ_PHP/);
  });

  it("answers a specialize for the php environment with UNKNOWN_IMAGE carrying the reason, and still specializes node", async () => {
    let refused: unknown;
    try {
      await natsRequest(
        h.nc,
        h.s.poolkeeperSpecialize,
        Codecs.poolkeeperSpecialize,
        {
          function: { namespace: "default", name: "hello-php", revision: 1 },
          environment: { namespace: "default", name: "php" },
          code: await h.putCode("hello.php", "<?php return fn() => 'hi';\n"),
          concurrency: 1,
        },
        { sender: "test", timeoutMs: 20_000 },
      );
    } catch (err) {
      refused = err;
    }
    expect(refused).to.be.instanceOf(FizzError);
    expect((refused as FizzError).code).to.equal("UNKNOWN_IMAGE");
    expect((refused as FizzError).message).to.contain("FIZZ_PHP");
    // The poolkeeper is alive and node's instance still answers.
    const t = h.pk.pool.list().find((i) => i.instance.environment.name === "node");
    expect(t).to.not.equal(undefined);
    const res = await fetch(`${t!.instance.address}/healthz`);
    expect(res.status).to.equal(200);
  });
});
