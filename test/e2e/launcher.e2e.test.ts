import { expect } from "chai";
import { startPlatform } from "./helpers";

describe("the launcher, when a service cannot start", function () {
  this.timeout(120_000);

  it("fails naming the service, its exit code and its last lines (the reason)", async () => {
    let err: Error | undefined;
    try {
      const p = await startPlatform({ FIZZ_TRUSTED_PROXIES: "not-an-address" });
      await p.stop();
    } catch (e) {
      err = e as Error;
    }
    expect(err, "the platform started with a bad gateway setting").to.not.equal(undefined);
    expect(err?.message).to.match(/^gateway exited \(1\) while starting/);
    // The gateway's own fatal line, which names the setting: the reason is in the error itself.
    expect(err?.message).to.include("[gateway]");
    expect(err?.message).to.include("FIZZ_TRUSTED_PROXIES");
  });
});
