import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { UnreachableError } from "../src/errors.js";
import { send } from "../src/http.js";

describe("http transport", () => {
  let server: Server;
  let url: string;

  before(async () => {
    // Accepts requests and never answers: a stuck registry.
    server = createServer(() => {});
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("gives up on a server that does not answer within the timeout and says which one", async () => {
    const target = { label: "registry" as const, baseUrl: url };

    const err = await send(fetch, target, `${url}/v1/x`, { method: "GET" }, 50).then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(err).to.be.instanceOf(UnreachableError);
    expect((err as Error).message).to.equal(`the registry at ${url} did not answer within 0.05s`);
  });
});
