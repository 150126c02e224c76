import type { LeaseService } from "../src/lease";
import { leaseReq } from "./fakes";

interface Held {
  id: string;
  slots: number;
  inFlight: number;
  /** Lease.more: topped up, not excluded, once full. */
  more: string | undefined;
}

/**
 * A gateway's lease behaviour (services/gateway/src/front-door/leases.ts), reduced to what the scheduler's
 * policy depends on: a request takes a free slot of a held lease; with none free it asks
 * scheduler.lease (one ask at a time, shared by every waiting request) excluding the full leases,
 * and a lease for an instance it holds replaces that lease's slots. Requests keep their slot.
 * With `partial`, it takes leases answered early (`more`) and tops a full one up instead of
 * excluding it, once per lease.
 */
export class GatewaySim {
  readonly leases: Held[] = [];
  asks = 0;
  private pending: Promise<void> | undefined;

  constructor(
    private readonly scheduler: LeaseService,
    readonly name: string,
    private readonly fn = "hello",
    private readonly partial = false,
  ) {}

  topUps = 0;

  /** One request: resolves with the instance it runs on, once it has a slot. */
  async request(): Promise<string> {
    for (;;) {
      const free = this.leases.find((l) => l.inFlight < l.slots);
      if (free) {
        free.inFlight++;
        return free.id;
      }
      this.pending ??= this.ask().finally(() => (this.pending = undefined));
      await this.pending;
    }
  }

  private async ask(): Promise<void> {
    this.asks++;
    const topUp = this.leases.find((l) => l.more !== undefined && l.inFlight >= l.slots);
    const exclude = this.leases
      .filter((l) => l.inFlight >= l.slots && l !== topUp)
      .map((l) => l.id);
    const req = { ...leaseReq(this.fn, { gateway: this.name, exclude }), partial: this.partial };
    if (topUp?.more !== undefined) {
      this.topUps++;
      Object.assign(req, { topUp: { instanceId: topUp.id, claim: topUp.more } });
      topUp.more = undefined;
    }
    const { lease } = await this.scheduler.lease(req);
    const held = this.leases.find((l) => l.id === lease.instanceId);
    if (held) {
      held.slots = lease.slots;
      held.more = lease.more;
    } else
      this.leases.push({ id: lease.instanceId, slots: lease.slots, inFlight: 0, more: lease.more });
  }
}
