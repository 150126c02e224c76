import { Writable } from "node:stream";
import { expect } from "chai";
import { pino } from "pino";
import { KIND_PLURALS, redisKeys } from "@fizz/events";
import { waitFor } from "@fizz/testkit";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

/**
 * A registry starting over stored objects pre-learns their texts in the background (index.ts
 * runStartup -> RedisStore.learnStored -> store-page.ts learnStored), so its first listing does
 * not check every object on the listing's time. store-page's own test covers what is learnt;
 * this one, that a started registry does it at all, over every kind it stores.
 */
describe("registry start: stored texts pre-learnt", () => {
  let stack: Stack;
  let reg: Running | undefined;

  before(async () => {
    stack = await startStack();
    const first = await startRegistry(registryEnv(stack));
    try {
      expect((await first.api.ns().create("environments", envBody("py"))).status).to.equal(201);
      for (let i = 0; i < 12; i++)
        expect((await first.api.ns().create("functions", fnBody(`f-${i}`, "py"))).status).to.equal(
          201,
        );
    } finally {
      await first.svc.stop();
    }
  });

  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("learns every stored object after the start-up tasks", async () => {
    const keys = redisKeys("fizz:v1:");
    let stored = 0;
    for (const kind of KIND_PLURALS) stored += await stack.client.scard(keys.kindIndex(kind));
    expect(stored).to.be.at.least(13);
    const lines: { msg?: string; learnt?: number }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString("utf8").split("\n"))
          if (line.trim() !== "") lines.push(JSON.parse(line) as (typeof lines)[number]);
        done();
      },
    });
    reg = await startRegistry(registryEnv(stack, { FIZZ_LOG_LEVEL: "info" }), {
      logger: pino({ level: "info" }, sink),
    });
    const done = await waitFor(() => lines.find((l) => l.msg === "stored texts pre-learnt"), {
      what: "pre-learning done",
    });
    expect(done.learnt).to.equal(stored);
  });
});
