import { expect } from "chai";
import { Codecs, type GatewayPresence, type GatewaySyncRequest } from "@fizz/events";
import { request, silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { loadConfig, start } from "../src/index";
import {
  PREFIX,
  call,
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  subj,
  triggerObject,
  type Harness,
  type Instance,
} from "./harness";

/**
 * The gateway's side of the registry's update barrier: presence beats, and `gateway.sync`
 * answered only once the change is applied, even when the change event has not arrived.
 */
describe("gateway update barrier (real NATS)", function () {
  this.timeout(30_000);
  let h: Harness;
  const instances: Instance[] = [];
  const instance = async (id: string) => {
    const i = await startInstance(id);
    instances.push(i);
    return i;
  };

  before(async () => {
    h = await startHarness({
      functions: ["upd", "lag", "known"].map((n) => functionObject(n)),
      triggers: [],
    });
  });
  after(async () => {
    closeClients();
    await h?.close();
    await Promise.all(instances.map((i) => i.close()));
  });

  /** What the registry's barrier sends; the harness registry never publishes the change event. */
  const sync = (req: GatewaySyncRequest) =>
    request(h.nc, subj.gatewaySync, Codecs.gatewaySync, req, {
      sender: "registry-test",
      timeoutMs: 5000,
    });
  const seenBy = async (path: string) => {
    const r = await call(h.gateway.port, "GET", path);
    const headers = r.json<{ headers: Record<string, string> }>().headers;
    return `${headers["x-fizz-instance"]}@${headers["x-fizz-function-revision"]}`;
  };
  const revisionOf = (name: string) =>
    h.functions.find((f) => f.metadata.name === name)?.metadata.revision ?? 1;
  /** Replaces a function in what the harness registry answers, at a new revision. */
  const bump = (name: string, revision: number) => {
    const i = h.functions.findIndex((f) => f.metadata.name === name);
    h.functions[i] = functionObject(name, "default", revision);
  };

  it("applies a function update from the sync request before the event: no old-revision request after the answer", async () => {
    const v1 = await instance("upd-v1");
    const v2 = await instance("upd-v2");
    h.leases.set("upd", (req) =>
      (req.minRevision ?? 0) >= 2 ? leaseOf(v2, "upd", { revision: 2 }) : leaseOf(v1, "upd"),
    );
    expect(await seenBy("/function/upd")).to.equal("upd-v1@1");
    bump("upd", 2);
    const reply = await sync({
      kind: "functions",
      op: "updated",
      namespace: "default",
      name: "upd",
      revision: 2,
    });
    expect(reply).to.deep.equal({ gateway: h.gateway.id, applied: true });
    // At once, no waiting for an event: the very next request goes to revision 2.
    const hitsBefore = v1.hits;
    for (let n = 0; n < 5; n++) expect(await seenBy("/function/upd")).to.equal("upd-v2@2");
    expect(v1.hits).to.equal(hitsBefore);
    expect(h.callsFor("upd").at(-1)?.minRevision).to.equal(2);
  });

  it("never uses an old-revision lease after the sync, even when the scheduler still grants one", async () => {
    const v1 = await instance("lag-v1");
    const v2 = await instance("lag-v2");
    let staleGrants = 1;
    h.leases.set("lag", () =>
      staleGrants-- > 0 ? leaseOf(v1, "lag") : leaseOf(v2, "lag", { revision: 2 }),
    );
    expect(await seenBy("/function/lag")).to.equal("lag-v1@1");
    bump("lag", 2);
    staleGrants = 1; // the next grant is still revision 1: a scheduler behind the registry
    await sync({
      kind: "functions",
      op: "updated",
      namespace: "default",
      name: "lag",
      revision: 2,
    });
    const hitsBefore = v1.hits;
    expect(await seenBy("/function/lag")).to.equal("lag-v2@2");
    expect(v1.hits).to.equal(hitsBefore);
  });

  it("routes an HTTP trigger created by a sync request at once, and drops it on a delete sync", async () => {
    const k = await instance("known-1");
    h.leases.set("known", () => leaseOf(k, "known", { revision: revisionOf("known") }));
    expect((await call(h.gateway.port, "GET", "/now")).status).to.equal(404);
    h.triggers.push(triggerObject("now", { function: "known", path: "/now" }));
    const base = { kind: "httptriggers", namespace: "default", name: "now", revision: 1 } as const;
    await sync({ ...base, op: "created" });
    expect((await call(h.gateway.port, "GET", "/now")).status).to.equal(200);
    h.triggers.length = 0;
    await sync({ ...base, op: "deleted" });
    expect((await call(h.gateway.port, "GET", "/now")).status).to.equal(404);
  });

  it("answers without asking the registry when the change event already applied it", async () => {
    bump("known", 2);
    h.changed({
      kind: "functions",
      op: "updated",
      namespace: "default",
      name: "known",
      object: functionObject("known", "default", 2),
    });
    await waitFor(async () => (await seenBy("/function/known")) === "known-1@2", {
      what: "the event applied",
    });
    const gets = h.gets.length;
    await sync({
      kind: "functions",
      op: "updated",
      namespace: "default",
      name: "known",
      revision: 2,
    });
    expect(h.gets.length).to.equal(gets);
  });

  it("answers a create whose event already applied that incarnation without asking the registry", async () => {
    const t = triggerObject("born", { function: "known", path: "/born" });
    h.triggers.push(t);
    h.changed({
      kind: "httptriggers",
      op: "created",
      namespace: "default",
      name: "born",
      object: t,
    });
    await waitFor(async () => (await call(h.gateway.port, "GET", "/born")).status === 200, {
      what: "the event applied",
    });
    const gets = h.gets.length;
    const reply = await sync({
      kind: "httptriggers",
      op: "created",
      namespace: "default",
      name: "born",
      revision: 1,
      uid: t.metadata.uid,
    });
    expect(reply).to.deep.equal({ gateway: h.gateway.id, applied: true });
    expect(h.gets.length).to.equal(gets);
  });

  it("asks the registry for a create when the name it holds is another incarnation, or the request names none", async () => {
    // Held: "born" at /born (uid-t-default-born). Committed meanwhile, its event lost: a new
    // incarnation of the name at another path.
    const i = h.triggers.findIndex((t) => t.metadata.name === "born");
    const reborn = triggerObject("born", { function: "known", path: "/reborn" });
    h.triggers[i] = { ...reborn, metadata: { ...reborn.metadata, uid: "uid-reborn" } };
    const base = {
      kind: "httptriggers",
      op: "created",
      namespace: "default",
      name: "born",
    } as const;
    let gets = h.gets.length;
    await sync({ ...base, revision: 1, uid: "uid-reborn" });
    expect(h.gets.length).to.equal(gets + 1);
    expect((await call(h.gateway.port, "GET", "/reborn")).status).to.equal(200);
    expect((await call(h.gateway.port, "GET", "/born")).status).to.equal(404);
    // An older registry sends no uid: a create is always checked, whatever is held.
    gets = h.gets.length;
    await sync({ ...base, revision: 1 });
    expect(h.gets.length).to.equal(gets + 1);
  });

  it("announces itself at start and every interval, and leaves with a 1 ms interval on stop", async () => {
    const beats: GatewayPresence[] = [];
    const sub = h.nc.subscribe(subj.gatewayPresence, {
      callback: (_err, msg) => void beats.push(Codecs.gatewayPresence.decode(msg.data).data),
    });
    await h.nc.flush();
    const g = await start(
      loadConfig({
        FIZZ_NATS_URL: h.nats.url,
        FIZZ_SUBJECT_PREFIX: PREFIX,
        FIZZ_GATEWAY_PORT: "0",
        FIZZ_PRESENCE_INTERVAL_MS: "150",
      }),
      { logger: silentLogger() },
    );
    try {
      await waitFor(() => beats.filter((b) => b.gateway === g.id).length >= 3, {
        what: "three beats",
      });
      expect(beats.find((b) => b.gateway === g.id)).to.deep.equal({
        gateway: g.id,
        intervalMs: 150,
      });
    } finally {
      await g.stop();
    }
    await waitFor(() => beats.some((b) => b.gateway === g.id && b.intervalMs === 1), {
      what: "the leaving beat",
    });
    sub.unsubscribe();
  });
});
