import { Codecs, FizzError, type ConfigValues, type subjects } from "@fizz/events";
import { request, type NatsConnection } from "@fizz/kit";

/**
 * A function's secrets and configmaps as the runtime takes them (docs/runtime-contract.md):
 * `{ "<name>": { "<key>": "<base64 value>" } }` for each. Values are never logged, never put in an
 * error message, and live only as long as the specialize request that carries them.
 */
export interface FunctionConfig {
  secrets: Record<string, Record<string, string>>;
  configmaps: Record<string, Record<string, string>>;
}

/** Resolves the named secrets and configmaps of a function's namespace; MISSING_CONFIG if one is not there. */
export type ConfigResolver = (
  namespace: string,
  secrets: readonly string[],
  configmaps: readonly string[],
) => Promise<FunctionConfig>;

export type ConfigKind = "secret" | "configmap";

export function missingConfig(
  kind: ConfigKind,
  namespace: string,
  name: string,
  why = "",
): FizzError {
  return new FizzError(
    "MISSING_CONFIG",
    `${kind} ${namespace}/${name} does not exist${why ? ` (${why})` : ""}; the function names it in spec.${kind === "secret" ? "secrets" : "configmaps"}`,
    { field: kind === "secret" ? "spec.secrets" : "spec.configmaps", retryable: false },
  );
}

/**
 * Checks that every name asked for came back (a resolver must never drop one silently: the function
 * would start without its credentials) and shapes the lists into the runtime's maps.
 */
export function collect(
  namespace: string,
  kind: ConfigKind,
  wanted: readonly string[],
  got: readonly ConfigValues[],
): Record<string, Record<string, string>> {
  const byName = new Map(got.map((v) => [v.name, v.data]));
  const out: Record<string, Record<string, string>> = {};
  for (const name of wanted) {
    const data = byName.get(name);
    if (!data) throw missingConfig(kind, namespace, name);
    out[name] = { ...data };
  }
  return out;
}

/**
 * Process backend: the registry holds the values (encrypted at rest) and answers only the
 * poolkeeper's NATS user on registry.config.read. No round trip when the function names none.
 */
export function registryConfigResolver(opts: {
  nc: NatsConnection;
  subjects: ReturnType<typeof subjects>;
  sender: string;
  timeoutMs: number;
}): ConfigResolver {
  return async (namespace, secrets, configmaps) => {
    if (secrets.length === 0 && configmaps.length === 0) return { secrets: {}, configmaps: {} };
    const reply = await request(
      opts.nc,
      opts.subjects.registryConfigRead,
      Codecs.registryConfigRead,
      { namespace, secrets: [...secrets], configmaps: [...configmaps] },
      { sender: opts.sender, timeoutMs: opts.timeoutMs },
    );
    return {
      secrets: collect(namespace, "secret", secrets, reply.secrets),
      configmaps: collect(namespace, "configmap", configmaps, reply.configmaps),
    };
  };
}
