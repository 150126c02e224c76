import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  Codecs,
  FizzError,
  subjects,
  type Instance,
  type InstancesChanged,
  type SpecializeRequest,
} from "@fizz/events";
import { publish, serve, silentLogger } from "@fizz/kit";
import { envObj, fnObj, instanceFor } from "./fixtures";

export const s = subjects("fizz.v1");
export const logger = silentLogger();

/** The test plays the registry and the poolkeeper on the real bus, recording what it is asked. */
export class Stage {
  readonly objects = new Map<string, ReturnType<typeof fnObj> | ReturnType<typeof envObj>>();
  readonly specializeCalls: SpecializeRequest[] = [];
  readonly retireCalls: string[] = [];
  readonly changes: InstancesChanged[] = [];
  instances: Instance[] = [];
  /** Envelope sender of each specialize request: which scheduler replica asked. */
  readonly specializeSenders: string[] = [];
  specializeDelayMs = 30;
  listAnswers = true;
  /** False: retire answers but the instance lives on (a kill that did not take). */
  retireTakes = true;
  failWith: FizzError | undefined;
  private subs: Subscription[] = [];

  constructor(private readonly nc: NatsConnection) {}

  put(...objs: Array<ReturnType<typeof fnObj> | ReturnType<typeof envObj>>): void {
    for (const o of objs)
      this.objects.set(`${o.kind}/${o.metadata.namespace}/${o.metadata.name}`, o);
  }

  start(): void {
    const opts = { sender: "stage-test", logger };
    this.subs = [
      serve(
        this.nc,
        s.registryList,
        Codecs.registryList,
        (req) =>
          Promise.resolve({
            items: [...this.objects.values()].filter(
              (o) => o.kind === (req.kind === "functions" ? "Function" : "Environment"),
            ),
          }),
        opts,
      ),
      serve(
        this.nc,
        s.registryGet,
        Codecs.registryGet,
        (req) => {
          const o = this.objects.get(
            `${req.kind === "functions" ? "Function" : "Environment"}/${req.namespace}/${req.name}`,
          );
          if (!o)
            return Promise.reject(
              new FizzError("NOT_FOUND", `${req.kind} ${req.namespace}/${req.name} not found`),
            );
          return Promise.resolve({ object: o });
        },
        opts,
      ),
      serve(
        this.nc,
        s.poolkeeperSpecialize,
        Codecs.poolkeeperSpecialize,
        async (req, msg) => {
          this.specializeCalls.push(req);
          this.specializeSenders.push(Codecs.poolkeeperSpecialize.request.decode(msg.data).sender);
          await new Promise((r) => setTimeout(r, this.specializeDelayMs));
          if (this.failWith) throw this.failWith;
          const instance = instanceFor(req.function, {
            env: req.environment.name,
            concurrency: req.concurrency,
          });
          this.instances.push(instance);
          this.announce("specialized", instance);
          return { instance };
        },
        opts,
      ),
      serve(
        this.nc,
        s.poolkeeperRetire,
        Codecs.poolkeeperRetire,
        (req) => {
          this.retireCalls.push(req.instanceId);
          const inst = this.instances.find((i) => i.id === req.instanceId);
          if (this.retireTakes) {
            this.instances = this.instances.filter((i) => i.id !== req.instanceId);
            if (inst) this.announce("retired", inst);
          }
          return Promise.resolve({ retired: inst !== undefined });
        },
        opts,
      ),
      serve(
        this.nc,
        s.poolkeeperList,
        Codecs.poolkeeperList,
        () =>
          this.listAnswers
            ? Promise.resolve({ instances: [...this.instances] })
            : Promise.reject(new FizzError("UNAVAILABLE", "poolkeeper is restarting")),
        opts,
      ),
      this.nc.subscribe(s.schedulerInstancesAll, {
        callback: (_err, msg) => {
          this.changes.push(Codecs.schedulerInstances.decode(msg.data).data);
        },
      }),
    ];
  }

  /** poolkeeper.instance.<event>, as the poolkeeper publishes it. */
  announce(event: "specialized" | "died" | "retired", instance: Instance): void {
    publish(
      this.nc,
      s.poolkeeperInstance(event),
      Codecs.poolkeeperInstance,
      { event, instance },
      "stage-test",
    );
  }

  stop(): void {
    for (const sub of this.subs) sub.unsubscribe();
  }
}
