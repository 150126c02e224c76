import {
  FizzError,
  Kinds,
  objectSchemas,
  type AnyObject,
  type Kind,
  type KindPlural,
  type ObjectsByPlural,
  type SkippedObject,
} from "@fizz/events";

const PLURAL_OF = Object.fromEntries(
  Object.entries(Kinds).map(([plural, kind]) => [kind, plural]),
) as Record<Kind, KindPlural>;

export function pluralOf(obj: AnyObject): KindPlural {
  return PLURAL_OF[obj.kind];
}

/**
 * A stored object, checked against its schema: Redis may hold what this registry did not write
 * (a newer registry during a rollout, an operator), and nothing unreadable may reach a caller.
 */
export function parseStored<K extends KindPlural>(
  kind: K,
  key: string,
  raw: string,
): ObjectsByPlural[K] {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new FizzError("INTERNAL", `stored object ${key} is not JSON`, { cause: err });
  }
  const parsed = objectSchemas[kind].safeParse(value);
  if (!parsed.success) {
    throw new FizzError(
      "INTERNAL",
      `stored object ${key} does not match its schema: ${parsed.error.issues[0]?.message}`,
    );
  }
  return parsed.data as ObjectsByPlural[K];
}

export function byNamespaceAndName(a: AnyObject, b: AnyObject): number {
  return byNamespaceAndNameOf(a.metadata, b.metadata);
}

export function byNamespaceAndNameOf(a: SkippedObject, b: SkippedObject): number {
  return compare(a.namespace, b.namespace) || compare(a.name, b.name);
}

/** Code-point order: names are ASCII, and locale rules would make the order depend on the host. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
