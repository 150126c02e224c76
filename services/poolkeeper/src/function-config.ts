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

/** What a source holds of the names asked for; names it does not hold are simply absent. */
export interface FoundConfig {
  secrets: Map<string, Record<string, string>>;
  configmaps: Map<string, Record<string, string>>;
}

/**
 * Kubernetes backend: the registry first, then the cluster. `fizz secret|configmap create` and
 * `fizz spec apply` write the registry, and what the registry accepts must run on every backend,
 * so its objects are the function's on Kubernetes too. Names the registry lacks come from the
 * cluster's labelled Secrets and ConfigMaps, the way Fission users create them with kubectl; when
 * a name is in both, the registry's wins, so the object `fizz` shows is the one the function gets.
 * A name in neither is MISSING_CONFIG with the cluster's explanation (the fallback throws it).
 */
export function layeredConfigResolver(
  first: (
    ns: string,
    secrets: readonly string[],
    configmaps: readonly string[],
  ) => Promise<FoundConfig>,
  fallback: ConfigResolver,
): ConfigResolver {
  return async (namespace, secrets, configmaps) => {
    if (secrets.length === 0 && configmaps.length === 0) return { secrets: {}, configmaps: {} };
    const found = await first(namespace, secrets, configmaps);
    const restSecrets = secrets.filter((n) => !found.secrets.has(n));
    const restConfigmaps = configmaps.filter((n) => !found.configmaps.has(n));
    const rest =
      restSecrets.length + restConfigmaps.length > 0
        ? await fallback(namespace, restSecrets, restConfigmaps)
        : { secrets: {}, configmaps: {} };
    const pick = (
      names: readonly string[],
      got: Map<string, Record<string, string>>,
      other: Record<string, Record<string, string>>,
    ) => {
      const out: Record<string, Record<string, string>> = {};
      for (const name of names) {
        const data = got.get(name) ?? other[name];
        if (data) out[name] = { ...data };
      }
      return out;
    };
    return {
      secrets: pick(secrets, found.secrets, rest.secrets),
      configmaps: pick(configmaps, found.configmaps, rest.configmaps),
    };
  };
}

/**
 * The registry's values for the names it holds (registry.config.read), nothing thrown for the rest.
 * The registry answers MISSING_CONFIG for a whole request when one name is missing, so each name
 * is asked alone (a handful at most, once per specialize); any other error fails the lookup.
 */
export function registryConfigLookup(opts: {
  nc: NatsConnection;
  subjects: ReturnType<typeof subjects>;
  sender: string;
  timeoutMs: number;
}): (
  ns: string,
  secrets: readonly string[],
  configmaps: readonly string[],
) => Promise<FoundConfig> {
  const one = async (namespace: string, kind: ConfigKind, name: string) => {
    try {
      const reply = await request(
        opts.nc,
        opts.subjects.registryConfigRead,
        Codecs.registryConfigRead,
        {
          namespace,
          secrets: kind === "secret" ? [name] : [],
          configmaps: kind === "configmap" ? [name] : [],
        },
        { sender: opts.sender, timeoutMs: opts.timeoutMs },
      );
      const got = kind === "secret" ? reply.secrets : reply.configmaps;
      const data = got.find((v) => v.name === name)?.data;
      return data ? { ...data } : undefined;
    } catch (err) {
      if (err instanceof FizzError && err.code === "MISSING_CONFIG") return undefined;
      throw err;
    }
  };
  const all = async (namespace: string, kind: ConfigKind, names: readonly string[]) => {
    const values = await Promise.all(names.map((n) => one(namespace, kind, n)));
    const found = new Map<string, Record<string, string>>();
    names.forEach((n, i) => {
      const v = values[i];
      if (v) found.set(n, v);
    });
    return found;
  };
  return async (namespace, secrets, configmaps) => {
    const [s, c] = await Promise.all([
      all(namespace, "secret", secrets),
      all(namespace, "configmap", configmaps),
    ]);
    return { secrets: s, configmaps: c };
  };
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
