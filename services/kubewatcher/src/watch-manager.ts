import type { WatchTrigger } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { KeyWatch, type KeyWatchDeps, type WatchState } from "./key-watch";
import type { TriggerSink } from "./trigger-sync";
import { describeKey, keyIdOf, keyOf, triggerId } from "./watch-key";

export interface TriggerStatus {
  state: WatchState;
  reason?: string;
  /** What its informer watches (shared with every trigger of the same key). */
  watch?: string;
}

interface Entry {
  trigger: WatchTrigger;
  keyId?: string;
  refused?: string;
}

/**
 * Maps triggers onto informers: one KeyWatch per distinct (resource, namespace, labels, fields),
 * reference-counted by the triggers using it. Triggers come and go at runtime (TriggerSink); the
 * informers run only while this replica is the leader. A key no trigger uses any more is stopped
 * and its state forgotten, so a trigger created later with the same key starts from that moment,
 * not from a stale resume point; at election, state of keys no trigger uses (triggers deleted
 * while no kubewatcher led) is forgotten too.
 */
export class WatchManager implements TriggerSink {
  private readonly entries = new Map<string, Entry>();
  private readonly watches = new Map<string, KeyWatch>();
  /** Keys being stopped and forgotten; a new informer for the key waits for that to finish. */
  private readonly retiring = new Map<string, Promise<void>>();
  private leading = false;
  private transitions: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  constructor(
    private readonly deps: KeyWatchDeps,
    /** True once the trigger set was listed: only then does a missing trigger mean "deleted". */
    private readonly listed: () => boolean,
  ) {
    this.log = deps.logger.child({ component: "watch-manager" });
  }

  upsert(t: WatchTrigger): void {
    const id = triggerId(t);
    const prev = this.entries.get(id);
    const refusal = this.scopeRefusal(t);
    if (refusal) {
      if (prev?.keyId) this.detach(id, prev.keyId);
      if (prev?.refused !== refusal)
        this.log.error({ trigger: id }, `watch trigger refused: ${refusal}`);
      this.entries.set(id, { trigger: t, refused: refusal });
      return;
    }
    const key = keyOf(t.spec);
    const keyId = keyIdOf(key);
    if (prev?.keyId && prev.keyId !== keyId) this.detach(id, prev.keyId);
    let w = this.watches.get(keyId);
    if (!w) {
      w = new KeyWatch(keyId, key, this.deps);
      this.watches.set(keyId, w);
      this.log.info({ trigger: id, watch: describeKey(key) }, "new informer");
      if (this.leading) this.startWhenRetired(w);
    }
    w.triggers.set(id, t);
    this.entries.set(id, { trigger: t, keyId });
  }

  remove(namespace: string, name: string): void {
    const id = `${namespace}/${name}`;
    const e = this.entries.get(id);
    if (e?.keyId) this.detach(id, e.keyId);
    this.entries.delete(id);
  }

  /** This replica became the leader: forget unused state, then start every informer. */
  elected(): Promise<void> {
    this.leading = true;
    return this.transition(async () => {
      if (!this.leading) return;
      await this.forgetUnusedKeys();
      if (!this.leading) return;
      for (const w of this.watches.values()) this.startWhenRetired(w);
    });
  }

  /** Leadership lost: stop every informer at once (the new leader resumes from the cursors). */
  deposed(): Promise<void> {
    this.leading = false;
    return this.transition(async () => {
      await Promise.all([...this.watches.values()].map((w) => w.stop()));
    });
  }

  isLeading(): boolean {
    return this.leading;
  }

  informers(): number {
    return this.watches.size;
  }

  status(): Record<string, TriggerStatus> {
    const out: Record<string, TriggerStatus> = {};
    for (const [id, e] of this.entries) {
      const w = e.keyId ? this.watches.get(e.keyId) : undefined;
      if (e.refused) out[id] = { state: "refused", reason: e.refused };
      else if (w) out[id] = { ...w.status, watch: describeKey(w.key) };
    }
    return out;
  }

  async stop(): Promise<void> {
    await this.deposed();
    await Promise.all(this.retiring.values());
  }

  /**
   * A trigger watches its own namespace; another one only with FIZZ_WATCH_CLUSTER_SCOPE=true. The
   * registry refuses such triggers already; this is the second lock, for a registry configured
   * differently or an object written around it.
   */
  private scopeRefusal(t: WatchTrigger): string | undefined {
    if (this.deps.clusterScope || t.spec.namespace === t.metadata.namespace) return undefined;
    return `it lives in namespace "${t.metadata.namespace}" and watches namespace "${t.spec.namespace}"; set FIZZ_WATCH_CLUSTER_SCOPE=true to allow watching other namespaces`;
  }

  private detach(id: string, keyId: string): void {
    const w = this.watches.get(keyId);
    if (!w) return;
    w.triggers.delete(id);
    if (w.triggers.size > 0) return;
    this.watches.delete(keyId);
    this.log.info({ watch: describeKey(w.key) }, "informer no longer used; stopping it");
    const before = this.retiring.get(keyId) ?? Promise.resolve();
    const done = before
      .then(() => w.stop())
      .then(() => (this.leading ? this.deps.state.purge(keyId) : undefined))
      .catch((err: unknown) =>
        this.log.warn({ keyId, err: (err as Error).message }, "could not forget an unused key"),
      )
      .finally(() => {
        if (this.retiring.get(keyId) === done) this.retiring.delete(keyId);
      });
    this.retiring.set(keyId, done);
  }

  private startWhenRetired(w: KeyWatch): void {
    const pending = this.retiring.get(w.keyId);
    if (!pending) return w.start();
    void pending.then(() => {
      if (this.leading && this.watches.get(w.keyId) === w) w.start();
    });
  }

  private async forgetUnusedKeys(): Promise<void> {
    if (!this.listed()) return;
    try {
      for (const keyId of await this.deps.state.keyIds()) {
        if (this.watches.has(keyId) || this.retiring.has(keyId)) continue;
        await this.deps.state.purge(keyId);
        this.log.info({ keyId }, "forgot the state of a key no trigger uses");
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not look for unused keys");
    }
  }

  private transition(step: () => Promise<void>): Promise<void> {
    this.transitions = this.transitions.then(step, step);
    return this.transitions;
  }
}
