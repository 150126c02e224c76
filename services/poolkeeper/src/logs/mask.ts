import type { FunctionConfig, ConfigResolver } from "../function-config";

/**
 * Values shorter than this are not masked: replacing every "1" or "yes" in a function's output
 * would wreck its logs, and the pattern of stars would itself tell which short strings are a
 * secret (an oracle); a value that short is no secret anyway.
 */
export const MIN_MASKED_CHARS = 4;
export const MASK = "***";

/**
 * Replaces every occurrence of the given values with `***`: one regular expression, longest
 * values first, so a value containing a shorter one is masked whole.
 */
export class Masker {
  private readonly re: RegExp | undefined;
  /** The values masked, longest first (for the cut-line tail check). */
  readonly values: readonly string[];

  constructor(values: Iterable<string>) {
    const set = new Set<string>();
    for (const v of values) if (v.length >= MIN_MASKED_CHARS) set.add(v);
    this.values = [...set].sort((a, b) => b.length - a.length);
    this.re =
      this.values.length > 0
        ? new RegExp(
            this.values.map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"),
            "g",
          )
        : undefined;
  }

  mask(text: string): string {
    return this.re ? text.replace(this.re, MASK) : text;
  }

  /**
   * Also masks a secret's beginning at the very end of `text`: a line cut at the length limit
   * may end in the first characters of a value whose rest was not kept.
   */
  maskWithTail(text: string): string {
    const masked = this.mask(text);
    for (const v of this.values) {
      for (let k = v.length - 1; k >= MIN_MASKED_CHARS; k--) {
        if (masked.endsWith(v.slice(0, k))) return masked.slice(0, masked.length - k) + MASK;
      }
    }
    return masked;
  }
}

/**
 * The forms a secret value may take in output: as carried (base64), decoded, trimmed (a file
 * with a trailing newline), each line of a multi-line value (a PEM key is printed line by line),
 * and JSON-escaped (printed inside JSON).
 */
export function secretForms(base64: string): string[] {
  const bytes = Buffer.from(base64, "base64");
  if (bytes.length < MIN_MASKED_CHARS) return [];
  const forms = [base64];
  const text = bytes.toString("utf8");
  // Binary values (not UTF-8) show in output only as the encoding the function chose.
  if (!Buffer.from(text, "utf8").equals(bytes)) return forms;
  forms.push(text, text.trim());
  for (const line of text.split(/\r?\n/)) forms.push(line.trim());
  const json = JSON.stringify(text).slice(1, -1);
  if (json !== text) forms.push(json);
  return forms.filter((f) => f.length >= MIN_MASKED_CHARS);
}

/** Old values stay masked this long after a rotation: instances specialized before keep them. */
const VALUES_PER_SECRET = 4;
/** Bounds the book: secrets least recently read go first. */
const MAX_SECRETS = 4096;

/**
 * Every secret value this poolkeeper fetched for a specialization, by namespace. An instance's
 * lines are masked with all of its namespace's: a superset of its own function's secrets (a
 * namespace is the unit of trust, so masking a neighbour's value too costs nothing), known before
 * the instance is specialized (config is read first), and right for instances whose
 * specialization request this poolkeeper never saw.
 */
export class SecretBook {
  /** `<namespace>/<secret>` → forms of its recent values (insertion order = least recent first). */
  private readonly byName = new Map<string, string[][]>();
  private readonly versions = new Map<string, number>();
  private all: string[] | undefined;
  /** Changes whenever any namespace's values do. */
  generation = 0;

  /** Wraps a resolver: whatever it returns is recorded before the specializer sees it. */
  watch(resolve: ConfigResolver): ConfigResolver {
    return async (namespace, secrets, configmaps) => {
      const config = await resolve(namespace, secrets, configmaps);
      this.record(namespace, config);
      return config;
    };
  }

  record(namespace: string, config: Pick<FunctionConfig, "secrets">): void {
    for (const [name, data] of Object.entries(config.secrets)) {
      const key = `${namespace}/${name}`;
      const values = Object.values(data).map(secretForms);
      const flat = values.flat().sort().join("\0");
      const known = this.byName.get(key) ?? [];
      const kept = known.filter((v) => v.flat().sort().join("\0") !== flat);
      const changed = kept.length === known.length;
      this.byName.delete(key);
      this.byName.set(key, [...kept, values.flat()].slice(-VALUES_PER_SECRET));
      if (this.byName.size > MAX_SECRETS) {
        const oldest = this.byName.keys().next().value;
        if (oldest !== undefined) this.forget(oldest);
      }
      if (changed) this.bump(namespace);
    }
  }

  /** Changes whenever the namespace's values do: a cached Masker is rebuilt then. */
  version(namespace: string): number {
    return this.versions.get(namespace) ?? 0;
  }

  values(namespace: string): string[] {
    const out: string[] = [];
    const prefix = `${namespace}/`;
    for (const [key, values] of this.byName)
      if (key.startsWith(prefix)) for (const v of values) out.push(...v);
    return out;
  }

  /** Every namespace's: for output not yet tied to a function (a function loading). */
  allValues(): string[] {
    this.all ??= [...this.byName.values()].flat(2);
    return this.all;
  }

  private forget(key: string): void {
    this.byName.delete(key);
    this.bump(key.slice(0, key.indexOf("/")));
  }

  private bump(namespace: string): void {
    this.versions.set(namespace, this.version(namespace) + 1);
    this.generation++;
    this.all = undefined;
  }
}

/** The poolkeeper's own credentials: the NATS password folded into FIZZ_NATS_URL. */
export function platformSecrets(natsUrl: string): string[] {
  try {
    const password = decodeURIComponent(new URL(natsUrl).password);
    return password ? [password, encodeURIComponent(password)] : [];
  } catch {
    return [];
  }
}
