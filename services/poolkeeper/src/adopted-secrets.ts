import { Codecs, FizzError, type subjects } from "@fizz/events";
import { backoffMs, request, type Logger, type NatsConnection } from "@fizz/kit";
import type { AdoptedInstance } from "./backend";
import type { ConfigResolver } from "./function-config";

/** What masking needs of a function: the names of its secrets (undefined: the function is gone). */
export type SecretNamesLookup = (
  namespace: string,
  name: string,
) => Promise<readonly string[] | undefined>;

/**
 * Reads the secrets of the functions whose instances were adopted at start, through the same
 * (book-watched) resolver a specialization uses: an adopted instance was specialized by an earlier
 * poolkeeper, so this one never fetched its values and could not mask them in its output.
 * Each secret is read alone, so one missing does not leave the others unmasked. Retries until
 * every function is done or `signal` aborts: the adopted pods' log follows wait for this, and
 * their lines stay on the node meanwhile (nothing is lost, nothing leaks unmasked).
 */
export async function recordAdoptedSecrets(opts: {
  adopted: readonly AdoptedInstance[];
  secretNames: SecretNamesLookup;
  readConfig: ConfigResolver;
  logger: Logger;
  signal: AbortSignal;
  sleep?: (ms: number) => Promise<void>;
}): Promise<void> {
  const sleep = opts.sleep ?? ((ms) => new Promise<void>((r) => setTimeout(r, ms).unref()));
  const fns = new Map<string, { namespace: string; name: string }>();
  for (const a of opts.adopted) fns.set(`${a.function.namespace}/${a.function.name}`, a.function);
  const one = async (namespace: string, name: string): Promise<void> => {
    const names = await opts.secretNames(namespace, name);
    for (const secret of names ?? []) {
      try {
        await opts.readConfig(namespace, [secret], []);
      } catch (err) {
        // Gone since: nothing of it can be in a log line it was never given to.
        if (!(err instanceof FizzError && err.code === "MISSING_CONFIG")) throw err;
      }
    }
  };
  await Promise.all(
    [...fns.values()].map(async ({ namespace, name }) => {
      for (let attempt = 0; !opts.signal.aborted; attempt++) {
        try {
          return await one(namespace, name);
        } catch (err) {
          opts.logger.warn(
            { err, function: `${namespace}/${name}`, attempt },
            "cannot read an adopted function's secrets (its output waits to be masked); retrying",
          );
          await sleep(backoffMs(attempt + 1, 500, 10_000));
        }
      }
    }),
  );
}

/** The secret names in a function's current spec, from the registry (undefined: no such function). */
export function functionSecretNames(opts: {
  nc: NatsConnection;
  subjects: ReturnType<typeof subjects>;
  sender: string;
  timeoutMs: number;
}): SecretNamesLookup {
  return async (namespace, name) => {
    try {
      const reply = await request(
        opts.nc,
        opts.subjects.registryGet,
        Codecs.registryGet,
        { kind: "functions", namespace, name },
        { sender: opts.sender, timeoutMs: opts.timeoutMs },
      );
      const o = reply.object;
      return o.kind === "Function" ? (o.spec.secrets ?? []) : undefined;
    } catch (err) {
      if (err instanceof FizzError && err.code === "NOT_FOUND") return undefined;
      throw err;
    }
  };
}
