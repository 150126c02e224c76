import {
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  type Harness,
  type Instance,
} from "./harness";
import { echoHandler } from "./own-frontend-lb-traffic";

/** A gateway serving one function, `lb`, from one echo instance (own-frontend-lb-traffic.ts). */
export interface EchoGateway {
  h: Harness;
  inst: Instance;
  /** The gateway's client port. */
  port: number;
  close(): Promise<void>;
}

/**
 * The set-up of the front-door tests that drive real connections through the gateway: a harness
 * on `frontend` with `env`, and the `lb` function leased to one echo instance with `slots` (and
 * as much concurrency). A plain function, not mocha hooks: a suite orders its own tear-down around
 * it (nginx stops before the gateway behind it).
 */
export async function startEchoGateway(
  frontend: "node" | "own",
  env: Record<string, string>,
  slots = 64,
): Promise<EchoGateway> {
  const h = await startHarness({
    functions: [functionObject("lb")],
    triggers: [],
    env: { FIZZ_GATEWAY_FRONTEND: frontend, ...env },
  });
  let inst: Instance;
  try {
    inst = await startInstance("lb-1", echoHandler);
  } catch (err) {
    await h.close();
    throw err;
  }
  h.leases.set("lb", () => leaseOf(inst, "lb", { slots, concurrency: slots }));
  return {
    h,
    inst,
    port: h.gateway.port,
    close: async () => {
      await h.close();
      await inst.close();
    },
  };
}
