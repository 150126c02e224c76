import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { isInternalAddress, OutboundGuard, OutboundRefused, parseOutboundList } from "@fizz/kit";

async function refusal(g: OutboundGuard, url: string): Promise<string> {
  try {
    await g.check(url);
  } catch (err) {
    expect(err).to.be.instanceOf(OutboundRefused);
    return (err as Error).message;
  }
  throw new Error(`${url} was allowed`);
}

/** A server on a loopback address: answers 200 "hit", or redirects to `to`. */
async function server(
  host: string,
  to?: string,
): Promise<{ url: string; hits: number; close(): Promise<void> }> {
  const s = {
    url: "",
    hits: 0,
    close: () => new Promise<void>((r) => srv.close(() => r())),
  };
  const srv = http.createServer((req, res) => {
    s.hits++;
    req.resume();
    if (to !== undefined) res.writeHead(307, { location: to }).end();
    else res.writeHead(200).end("hit");
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  s.url = `http://${host}:${(srv.address() as AddressInfo).port}/`;
  return s;
}

const publicLookup = () => Promise.resolve([{ address: "93.184.215.14", family: 4 }]);

describe("outbound URL guard", () => {
  const g = new OutboundGuard();
  after(() => g.close());

  it("refuses every internal IPv4 range", () => {
    for (const ip of [
      "0.0.0.0",
      "10.1.2.3",
      "100.64.0.1",
      "127.0.0.1",
      "127.255.255.254",
      "169.254.169.254",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "224.0.0.1",
      "255.255.255.255",
    ])
      expect(isInternalAddress(ip), ip).to.equal(true);
    for (const ip of ["8.8.8.8", "172.32.0.1", "100.128.0.1", "93.184.215.14"])
      expect(isInternalAddress(ip), ip).to.equal(false);
  });

  it("refuses IPv6 loopback, unspecified, link-local, unique-local, multicast and v4-mapped forms", () => {
    for (const ip of [
      "::1",
      "::",
      "fe80::1",
      "fd00::1",
      "fc00::1",
      "ff02::1",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "::ffff:10.0.0.1",
      "64:ff9b::7f00:1",
      "2002:7f00:1::1",
    ])
      expect(isInternalAddress(ip), ip).to.equal(true);
    expect(isInternalAddress("2606:4700::1111")).to.equal(false);
    expect(isInternalAddress("not-an-ip")).to.equal(true);
  });

  it("refuses loopback URLs however the address is spelled", async () => {
    for (const u of [
      "http://127.0.0.1/",
      "http://0x7f.1/",
      "http://2130706433/",
      "http://017700000001/",
      "http://127.1:8080/x",
      "http://[::1]/",
      "http://[::ffff:127.0.0.1]/",
      "http://0.0.0.0/",
      "http://[::]/",
      "http://169.254.169.254/latest/meta-data",
    ])
      expect(await refusal(g, u), u).to.match(/internal address/);
  });

  it("refuses a hostname that resolves to loopback (localhost)", async () => {
    expect(await refusal(g, "http://localhost:8081/v1/environments")).to.match(/localhost/);
  });

  it("refuses a hostname when ANY of its addresses is internal", async () => {
    const mixed = new OutboundGuard({
      lookup: () =>
        Promise.resolve([
          { address: "93.184.215.14", family: 4 },
          { address: "10.0.0.5", family: 4 },
        ]),
    });
    expect(await refusal(mixed, "http://rebind.example/")).to.match(/10\.0\.0\.5/);
    await mixed.close();
  });

  it("refuses non-http schemes, credentials in the URL and malformed URLs", async () => {
    expect(await refusal(g, "file:///etc/shadow")).to.match(/scheme/);
    expect(await refusal(g, "gopher://x/")).to.match(/scheme/);
    expect(await refusal(g, "http://u:p@example.com/")).to.match(/credentials/);
    expect(await refusal(g, "not a url")).to.match(/valid/);
  });

  it("allows a public address", async () => {
    const pub = new OutboundGuard({ lookup: publicLookup });
    expect((await pub.check("https://example.com/cb")).hostname).to.equal("example.com");
    await pub.close();
  });

  it("opens allow-listed hosts and CIDRs, and nothing next to them", async () => {
    const a = new OutboundGuard({ allow: ["127.0.0.2", "10.1.0.0/16", "localhost"] });
    await a.check("http://127.0.0.2:9000/");
    await a.check("http://10.1.200.3/");
    await a.check("http://localhost/");
    expect(await refusal(a, "http://127.0.0.1/")).to.match(/internal/);
    expect(await refusal(a, "http://10.2.0.1/")).to.match(/internal/);
    await a.close();
  });

  it("refuses the platform's own endpoints even when their host is allow-listed", async () => {
    const a = new OutboundGuard({
      allow: ["127.0.0.0/8"],
      platform: ["127.0.0.1:8081", "[::1]:8081", "registry.fizz.svc"],
    });
    expect(await refusal(a, "http://127.0.0.1:8081/v1/environments")).to.match(/platform/);
    expect(await refusal(a, "http://[::1]:8081/")).to.match(/platform/);
    await a.check("http://127.0.0.1:9999/");
    const k = new OutboundGuard({ platform: ["registry.fizz.svc"], lookup: publicLookup });
    expect(await refusal(k, "http://registry.fizz.svc/")).to.match(/platform/);
    await a.close();
    await k.close();
  });

  it("validates list entries, naming the bad one", () => {
    expect(parseOutboundList(" 10.0.0.0/8, example.com ,::1 ")).to.deep.equal([
      "10.0.0.0/8",
      "example.com",
      "::1",
    ]);
    expect(parseOutboundList("127.0.0.1:8081,[::1]:4222", true)).to.have.length(2);
    expect(() => parseOutboundList("10.0.0.0/33")).to.throw(/10\.0\.0\.0\/33/);
    expect(() => parseOutboundList("bad host!")).to.throw(/bad host!/);
  });

  it("refuses at connect time what the check refused, without sending anything", async () => {
    const target = await server("127.0.0.1");
    try {
      let err: unknown;
      await g
        .request(target.url, {
          method: "POST",
          headers: {},
          body: Buffer.from("x"),
          timeoutMs: 2000,
        })
        .catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(OutboundRefused);
      expect(target.hits).to.equal(0);
    } finally {
      await target.close();
    }
  });

  it("refuses DNS rebinding: the connection re-checks the address it actually connects to", async () => {
    const target = await server("127.0.0.1");
    let lookups = 0;
    // Public at the check, loopback at connect: what a rebinding DNS server answers.
    const rebinding = new OutboundGuard({
      lookup: () =>
        Promise.resolve([
          lookups++ === 0
            ? { address: "93.184.215.14", family: 4 }
            : { address: "127.0.0.1", family: 4 },
        ]),
    });
    try {
      const port = new URL(target.url).port;
      let err: unknown;
      await rebinding
        .request(`http://rebind.test:${port}/`, { method: "GET", headers: {}, timeoutMs: 2000 })
        .catch((e: unknown) => (err = e));
      expect(String((err as Error).message)).to.match(/127\.0\.0\.1/);
      expect(lookups).to.equal(2);
      expect(target.hits).to.equal(0);
    } finally {
      await rebinding.close();
      await target.close();
    }
  });

  it("checks every redirect hop: an allowed host bouncing to loopback is refused", async () => {
    const target = await server("127.0.0.1");
    const bouncer = await server("127.0.0.2", target.url);
    const a = new OutboundGuard({ allow: ["127.0.0.2"] });
    try {
      let err: unknown;
      await a
        .request(bouncer.url, {
          method: "POST",
          headers: {},
          body: Buffer.from("x"),
          timeoutMs: 2000,
        })
        .catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(OutboundRefused);
      expect((err as Error).message).to.match(/127\.0\.0\.1/);
      expect(bouncer.hits).to.equal(1);
      expect(target.hits).to.equal(0);
    } finally {
      await a.close();
      await bouncer.close();
      await target.close();
    }
  });

  it("follows allowed redirects, at most five", async () => {
    const target = await server("127.0.0.1");
    const hop = await server("127.0.0.2", target.url);
    const a = new OutboundGuard({ allow: ["127.0.0.1", "127.0.0.2"] });
    const loop = await server("127.0.0.1", "/again");
    try {
      const res = await a.request(hop.url, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: Buffer.from("x"),
        timeoutMs: 2000,
      });
      expect(await res.body.text()).to.equal("hit");
      let err: unknown;
      await a
        .request(loop.url, { method: "GET", headers: {}, timeoutMs: 2000 })
        .catch((e: unknown) => (err = e));
      expect((err as Error).message).to.match(/more than 5 redirects/);
      expect(loop.hits).to.equal(6);
    } finally {
      await a.close();
      await hop.close();
      await target.close();
      await loop.close();
    }
  });
});
