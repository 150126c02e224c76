import { Codecs } from "@fizz/events";
import { request as natsRequest } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { request } from "undici";
import { Harness, environment } from "./harness";

/**
 * The poolkeeper as its own NATS user with exactly the permissions the platform gives it
 * (shared/events/src/permissions.ts): it reads the Object Store and asks the registry for a
 * function's config with those rights and no others.
 */
describe("poolkeeper on a locked bus (its own NATS user and permissions)", function () {
  this.timeout(90_000);
  const h = new Harness();

  before(async () => {
    await h.setUp({ locked: true });
    h.environments.set("node", environment("node", "fizz/env-node", 1));
    h.answerRegistry();
    await h.startPoolkeeper();
    await h.pk.synced;
  });
  after(() => h.tearDown());

  it("specializes a package from the Object Store with a secret from registry.config.read", async () => {
    const archive = await h.putPackage({
      "index.js":
        "const fs = require('node:fs');\nmodule.exports = async () => fs.readFileSync(`${process.env.FIZZ_SECRETS_DIR}/default/k/v`, 'utf8');\n",
    });
    h.secrets.set("default/k", { v: Buffer.from("locked ok").toString("base64") });
    const { instance } = await natsRequest(
      h.nc,
      h.s.poolkeeperSpecialize,
      Codecs.poolkeeperSpecialize,
      {
        environment: { namespace: "default", name: "node" },
        function: { namespace: "default", name: "locked", revision: 1 },
        archive,
        secrets: ["k"],
        concurrency: 1,
      },
      { sender: "test", timeoutMs: 30_000 },
    );
    const res = await request(instance.address, { headers: { "x-fizz-instance": instance.id } });
    expect(await res.body.text()).to.equal("locked ok");
    await waitFor(() => h.events.some((e) => e.event === "specialized"));
  });
});
