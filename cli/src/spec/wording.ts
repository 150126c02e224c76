/**
 * Schema issues in the registry's words: `spec.poolSize: must be at most 100`, so a problem found
 * by `fizz spec validate` reads like the registry's answer to the same mistake would.
 */

/** The part of a zod issue this file reads. */
export interface SchemaIssue {
  code: string;
  path: readonly PropertyKey[];
  message: string;
}

export interface WordedIssue {
  path: Array<string | number>;
  message: string;
}

/** One entry per problem: an unknown-keys issue becomes one per key, at that key. */
export function wordIssues(issues: readonly SchemaIssue[], input: unknown): WordedIssue[] {
  const out: WordedIssue[] = [];
  for (const issue of issues) {
    const path = issue.path.map((p) => (typeof p === "number" ? p : String(p)));
    const extra = issue as unknown as Record<string, unknown>;
    if (issue.code === "unrecognized_keys" && Array.isArray(extra.keys)) {
      for (const key of extra.keys as unknown[])
        out.push({ path: [...path, String(key)], message: "unknown field" });
      continue;
    }
    if (issue.code === "invalid_key" && Array.isArray(extra.issues)) {
      // A bad record key: the key's own issue says why; the path ends at the key.
      const inner = (extra.issues as SchemaIssue[])[0];
      out.push({ path, message: `key ${inner?.message ?? issue.message}` });
      continue;
    }
    out.push({ path, message: word(issue, extra, valueAt(input, path)) });
  }
  return out;
}

function word(issue: SchemaIssue, extra: Record<string, unknown>, value: unknown): string {
  const { maximum, minimum, origin, inclusive, expected } = extra;
  switch (issue.code) {
    case "invalid_type":
      if (value === undefined) return "is required";
      if (value === null) return "must not be null";
      if (expected === "int") return "must be an integer";
      if (expected === "record" || expected === "object") return "must be a mapping";
      if (expected === "array") return "must be a list";
      return `must be ${/^[aeiou]/i.test(String(expected)) ? "an" : "a"} ${String(expected)}`;
    case "too_big":
      if (origin === "string") return `must be at most ${String(maximum)} characters`;
      if (origin === "array") return `must have at most ${String(maximum)} items`;
      return `must be ${inclusive === false ? "less than" : "at most"} ${String(maximum)}`;
    case "too_small":
      if (origin === "string")
        return Number(minimum) <= 1
          ? "must not be empty"
          : `must be at least ${String(minimum)} characters`;
      if (origin === "array")
        return `must have at least ${String(minimum)} item${Number(minimum) === 1 ? "" : "s"}`;
      return `must be ${inclusive === false ? "greater than" : "at least"} ${String(minimum)}`;
    case "invalid_value":
      return Array.isArray(extra.values)
        ? `must be one of ${extra.values.map((v) => String(v)).join(", ")}`
        : issue.message;
    default:
      return issue.message;
  }
}

export function valueAt(input: unknown, path: ReadonlyArray<string | number>): unknown {
  let node = input;
  for (const segment of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string | number, unknown>)[segment];
  }
  return node;
}
