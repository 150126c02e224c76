import type { z } from "zod";
import { FizzError, type ErrorCode } from "@fizz/events";

/**
 * zod issues → one FizzError naming the field (`spec.poolSize`), the way the API promises. Only
 * the first issue is reported: one clear sentence beats a list the user has to untangle, and the
 * next one shows up on the next try.
 */

/** Wording for zod's default messages; messages a schema sets itself (regexes) are kept. */
export const errorMap: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case "invalid_type":
      if (iss.input === undefined) return "is required";
      if (iss.input === null) return "must not be null";
      if (iss.expected === "int") return "must be an integer";
      if (iss.expected === "record") return "must be an object";
      return `must be ${article(iss.expected)} ${iss.expected}`;
    case "too_big":
      return iss.origin === "string"
        ? `must be at most ${String(iss.maximum)} characters`
        : iss.origin === "array"
          ? `must have at most ${String(iss.maximum)} items`
          : `must be ${iss.inclusive === false ? "less than" : "at most"} ${String(iss.maximum)}`;
    case "too_small":
      if (iss.origin === "string")
        return Number(iss.minimum) <= 1
          ? "must not be empty"
          : `must be at least ${String(iss.minimum)} characters`;
      if (iss.origin === "array")
        return `must have at least ${String(iss.minimum)} item${Number(iss.minimum) === 1 ? "" : "s"}`;
      return `must be ${iss.inclusive === false ? "greater than" : "at least"} ${String(iss.minimum)}`;
    case "invalid_value":
      return `must be one of ${iss.values.map((v) => String(v)).join(", ")}`;
    case "unrecognized_keys":
      return `unknown field${iss.keys.length === 1 ? "" : "s"} ${iss.keys.join(", ")}`;
    // zod's own wording reads well enough for these (and schemas word their refinements).
    case "custom":
    case "invalid_element":
    case "invalid_format":
    case "invalid_key":
    case "invalid_union":
    case "not_multiple_of":
    default:
      return undefined;
  }
};

function article(word: string): string {
  return /^[aeiou]/i.test(word) ? "an" : "a";
}

export function fieldOf(prefix: string | undefined, path: readonly PropertyKey[]): string {
  return [...(prefix ? [prefix] : []), ...path.map(String)].join(".");
}

/**
 * The FizzError for a failed parse. `codeFor` picks the code from the field (INVALID_NAME for
 * names); everything else is VALIDATION_FAILED.
 */
export function issueError(
  error: z.ZodError,
  prefix?: string,
  codeFor: (field: string) => ErrorCode = () => "VALIDATION_FAILED",
): FizzError {
  const issue = error.issues[0];
  if (!issue)
    return new FizzError("VALIDATION_FAILED", `${prefix ?? "body"}: invalid`, { field: prefix });
  // A bad record key reports "Invalid key in record"; the key's own issue says why.
  const message =
    issue.code === "invalid_key" ? (issue.issues[0]?.message ?? issue.message) : issue.message;
  const field = fieldOf(prefix, issue.path);
  if (field === "") return new FizzError("INVALID_BODY", `body: ${message}`);
  return new FizzError(codeFor(field), `${field}: ${message}`, { field });
}

/** Refuses keys a schema does not know: a typo (`poolsize`) must not be silently dropped. */
export function checkKnownKeys(
  value: Record<string, unknown>,
  known: readonly string[],
  prefix?: string,
): void {
  const unknown = Object.keys(value).find((k) => !known.includes(k));
  if (unknown !== undefined) {
    const field = fieldOf(prefix, [unknown]);
    throw new FizzError(
      "VALIDATION_FAILED",
      `${field}: unknown field (known: ${known.join(", ")})`,
      { field },
    );
  }
}
