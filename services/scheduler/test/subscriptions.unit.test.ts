import { expect } from "chai";
import { subjects as buildSubjects } from "@fizz/events";
import type { Logger, NatsConnection, Subscription } from "@fizz/kit";
import type { Model } from "../src/handlers";
import { subscribeEvents } from "../src/subscriptions";

type Callback = (err: Error | null, msg: { data: Uint8Array; subject: string }) => void;

describe("scheduler event subscriptions (unit)", () => {
  it("logs an error on the poolkeeper.instance subscription, as listen() does for the others", () => {
    const s = buildSubjects();
    const callbacks = new Map<string, Callback>();
    const nc = {
      subscribe: (subject: string, opts: { callback: Callback }) => {
        callbacks.set(subject, opts.callback);
        return { unsubscribe: () => undefined } as unknown as Subscription;
      },
    } as unknown as NatsConnection;
    const errors: Array<{ fields: Record<string, unknown>; msg: string }> = [];
    const logger = {
      error: (fields: Record<string, unknown>, msg: string) => errors.push({ fields, msg }),
      warn: () => undefined,
      info: () => undefined,
      debug: () => undefined,
      child: () => logger,
    } as unknown as Logger;
    subscribeEvents(nc, s, {} as Model, { sender: "scheduler-t", logger });
    const cb = callbacks.get(s.poolkeeperInstanceAll);
    expect(cb, "subscribed to poolkeeper.instance.>").to.not.equal(undefined);
    cb!(new Error("Permissions Violation for Subscription"), {
      data: new Uint8Array(),
      subject: "",
    });
    expect(errors.map((r) => r.msg)).to.deep.equal(["subscription error"]);
    expect(errors[0]?.fields.subject).to.equal(s.poolkeeperInstanceAll);
  });
});
