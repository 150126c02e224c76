import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import { expect } from "chai";
import { freePort as launcherFreePort } from "../../../scripts/lib/net-wait.mjs";
import { freePort } from "../src/ports";

describe("freePort", () => {
  it("picks a port below the kernel's ephemeral range, where no outgoing connection can hold it", async function () {
    const range = "/proc/sys/net/ipv4/ip_local_port_range";
    if (!existsSync(range)) this.skip(); // not Linux: the kernel's own pick
    const low = Number(readFileSync(range, "utf8").split(/\s+/)[0]);
    if (low - 10_000 < 1000) this.skip(); // no room below it: the kernel's own pick
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      expect(port).to.be.within(10_000, low - 1);
      // And it is free: this process can listen on it.
      const srv = net.createServer();
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(port, "127.0.0.1", () => resolve());
      });
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });

  it("never hands out a port something listens on", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", () => resolve()));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      for (let i = 0; i < 50; i++) expect(await freePort()).to.not.equal(port);
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });

  it("never hands out one port twice, to concurrent or later calls, kit's or the launcher's", async () => {
    // 400 picks over ~22,000 ports: without the record, two equal picks are ~97% likely.
    const picks = await Promise.all(
      Array.from({ length: 400 }, (_, i) => (i % 2 ? freePort() : launcherFreePort())),
    );
    for (let i = 0; i < 100; i++) picks.push(await (i % 2 ? freePort() : launcherFreePort()));
    expect(new Set(picks).size).to.equal(picks.length);
  });
});
