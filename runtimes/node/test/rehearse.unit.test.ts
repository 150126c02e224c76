// The warm-up rehearsal (src/rehearse.mjs) specializes a throwaway instance through a private
// server on a loopback port of the pool instance's process. On the process backend any local
// process can reach that port (docs/security.md), so the token it takes must be one nobody else
// can know: with a token written in the source, a function of another tenant that connected first
// loaded its own code into the pool instance that later serves someone else's function. A real
// HTTP server in this process runs the real specialize and invoke.
import { expect } from "chai";
import { createServer } from "node:http";
import { invoke } from "../src/invoke.mjs";
import { rehearse } from "../src/rehearse.mjs";
import { specialize } from "../src/specialize.mjs";

describe("node runtime: rehearse.mjs", () => {
  it("gives its private server a token of its own, another at each rehearsal", async () => {
    const tokens: Array<string | undefined> = [];
    for (let i = 0; i < 2; i++) {
      await rehearse({
        createServer: (instance, config) => {
          tokens.push(config.specializeToken);
          return createServer((req, res) => {
            const target = req.headers["x-fizz-instance"];
            const run =
              target === undefined
                ? specialize(req, res, instance, config)
                : invoke(req, res, target, instance, config);
            run.catch(() => res.destroy());
          });
        },
        shouldStop: () => false,
        workdir: undefined,
      });
    }
    expect(tokens).to.have.length(2);
    for (const token of tokens) expect(token).to.be.a("string").with.length.at.least(32);
    expect(tokens[0]).to.not.equal(tokens[1]);
  });
});
