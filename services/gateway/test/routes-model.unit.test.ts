import { expect } from "chai";
import type { FunctionObject, HttpTrigger } from "@fizz/events";
import { fakeRouteStore, fn, trigger } from "./routes-fakes";

/**
 * Random registry histories against the route table, checked after every step against what the
 * registry holds: functions created, updated, deleted and created again; triggers created, moved
 * between functions (existing or not), given another route or one the gateway refuses, deleted;
 * changes seen by event, by `gateway.sync` (or both), or lost and recovered by a relist. After
 * each: every route leads to the lease manager's own state for its function (a state the manager
 * forgot is one its function's updates no longer reach: stale code), each state counts exactly
 * the routes naming it (`FunctionLeases.routes`), and the manager holds states for exactly the
 * functions some route names (more: a leak per deleted function).
 */
const NAMES = ["a", "b", "c", "d"];
const TRIGGERS = ["t1", "t2", "t3", "t4"];
const REFUSED = "/bad/../p"; // the schema takes it, the route rules do not
const SEEDS = 25;

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

type Spec = { path?: string; prefix?: string };

describe("route table against random registry histories", () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`history ${seed}: routes lead to live lease state, counted exactly, none left over`, async () => {
      const r = random(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
      const { nats, leases, store } = fakeRouteStore();
      const abort = new AbortController();
      const loading = store.start(abort.signal);
      await nats.list("functions", []);
      await nats.list("httptriggers", []);
      await loading;
      const fns = new Map<string, FunctionObject>();
      const trs = new Map<string, HttpTrigger>();
      const log: string[] = [];
      let uids = 0;
      let lost = false;
      const fresh = <O extends FunctionObject | HttpTrigger>(o: O): O => {
        o.metadata.uid = `uid-${++uids}`;
        o.metadata.createdAt = new Date(uids * 1000).toISOString();
        return o;
      };
      const shape = (name: string): Spec => {
        const x = r();
        if (x < 0.1) return { path: REFUSED };
        if (x < 0.5) return { path: r() < 0.3 ? `/${name}/{id}` : `/${name}` };
        return { prefix: `/${name}-p` };
      };
      const change = async (
        op: "created" | "updated" | "deleted",
        o: FunctionObject | HttpTrigger,
      ): Promise<void> => {
        const kind = o.kind === "Function" ? "functions" : "httptriggers";
        const { name, revision } = o.metadata;
        log.push(`${op} ${kind} ${name} ${JSON.stringify(o.spec)}`);
        if (op === "deleted") nats.objects.delete(`${kind}/default/${name}`);
        else nats.objects.set(`${kind}/default/${name}`, structuredClone(o));
        if (r() < 0.1) {
          lost = true; // NATS reconnecting: this event never arrives
          return;
        }
        // The fake registry's get cannot answer NOT_FOUND: deletes come as events only.
        if (op !== "deleted" && r() < 0.3) {
          const req = { kind, op, namespace: "default", name, revision } as const;
          expect(await store.sync(req, abort.signal), "sync applied").to.equal(true);
          if (r() < 0.5) await nats.changed(op, structuredClone(o));
        } else await nats.changed(op, structuredClone(o));
      };
      try {
        for (let step = 0; step < 120; step++) {
          const x = r();
          if (x < 0.45) {
            const name = pick(NAMES);
            const cur = fns.get(name);
            if (!cur) {
              fns.set(name, fresh(fn(name)));
              await change("created", fns.get(name)!);
            } else if (r() < 0.5) {
              const f = structuredClone(cur);
              f.metadata.revision++;
              f.spec.timeoutSeconds = 1 + Math.floor(r() * 10);
              fns.set(name, f);
              await change("updated", f);
            } else {
              fns.delete(name);
              await change("deleted", cur);
            }
          } else if (x < 0.9) {
            const name = pick(TRIGGERS);
            const cur = trs.get(name);
            if (cur && r() < 0.4) {
              const t = structuredClone(cur);
              t.metadata.revision++;
              if (r() < 0.5) t.spec.function = pick(NAMES);
              else {
                delete t.spec.path;
                delete t.spec.prefix;
                Object.assign(t.spec, shape(name));
              }
              trs.set(name, t);
              await change("updated", t);
            } else if (cur && r() < 0.5) {
              trs.delete(name);
              await change("deleted", cur);
            } else {
              if (cur) {
                trs.delete(name);
                await change("deleted", cur);
              }
              const t = fresh(trigger(name, "/", pick(NAMES)));
              delete t.spec.path;
              Object.assign(t.spec, shape(name));
              trs.set(name, t);
              await change("created", t);
            }
          } else {
            log.push("relist");
            await nats.reconnect();
            await nats.list("functions", [...fns.values()]);
            await nats.list("httptriggers", [...trs.values()]);
            lost = false;
          }
          if (!lost) check(`history ${seed}, step ${step}:\n${log.slice(-10).join("\n")}`);
        }
      } finally {
        abort.abort();
        store.stop();
      }

      function check(at: string): void {
        const router = store.router!;
        const named = new Map<string, number>();
        const name = (f: string) => named.set(f, (named.get(f) ?? 0) + 1);
        for (const [n, f] of fns) {
          name(n);
          const state = leases.get("default", n);
          expect(router.match("GET", undefined, `/function/${n}`)?.target, at).to.equal(state);
          expect(state?.timeoutMs, at).to.equal(f.spec.timeoutSeconds * 1000);
        }
        for (const n of NAMES)
          if (!fns.has(n))
            expect(router.match("GET", undefined, `/function/${n}`), at).to.equal(undefined);
        for (const [n, t] of trs) {
          const url = t.spec.path === REFUSED ? undefined : (t.spec.path ?? `${t.spec.prefix}/x`);
          const m = url && router.match("GET", undefined, url.replace("{id}", "7"));
          if (!url) {
            expect(router.match("GET", undefined, REFUSED), at).to.equal(undefined);
            continue;
          }
          name(t.spec.function);
          expect(m && m.trigger, at).to.equal(`default/${n}`);
          expect(m && m.target, at).to.equal(leases.get("default", t.spec.function));
        }
        const states = [...leases.all()];
        expect(states.map((s) => s.name).sort(), `${at}\nstates`).to.deep.equal(
          [...named.keys()].sort(),
        );
        for (const s of states)
          expect(s.routes, `${at}\nroutes of ${s.name}`).to.equal(named.get(s.name));
      }
    });
  }
});
