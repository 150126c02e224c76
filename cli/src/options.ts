/**
 * Parsers for option values. They throw commander's InvalidArgumentError, so a bad value is a
 * usage error (exit 2) reported before any request is sent.
 */
import { InvalidArgumentError } from "commander";

export function parseInteger(value: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError("must be an integer.");
  return Number(value);
}

/** Seconds may be fractional (`--timeout 0.5`); the registry checks the range. */
export function parseSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new InvalidArgumentError("must be a number of seconds.");
  }
  return n;
}

/** Accepts `--method GET --method POST` as well as `--method GET,POST`; methods are upper-cased. */
export function collectMethods(value: string, previous: string[] = []): string[] {
  const methods = value
    .split(",")
    .map((m) => m.trim().toUpperCase())
    .filter((m) => m !== "");
  for (const m of methods) {
    if (!/^[A-Z]+$/.test(m)) throw new InvalidArgumentError(`"${m}" is not an HTTP method.`);
  }
  return [...previous, ...methods.filter((m) => !previous.includes(m))];
}

/** `--query a=1 --query b=2` (Fission's `-q` habit) is `--query 'a=1&b=2'`; sent as written. */
export function joinQuery(value: string, previous?: string): string {
  const part = value.replace(/^[?&]+/, "");
  return previous === undefined || previous === "" ? part : `${previous}&${part}`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration in milliseconds: Go's notation as Fission takes it (`30s`, `1m30s`, `500ms`, `0`),
 * or a bare number of seconds as fizz's other options.
 */
export function parseDuration(value: string): number {
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) {
    throw new InvalidArgumentError("must be a duration such as 30s, 2m or 1m30s.");
  }
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    ms += Number(n) * (DURATION_UNITS[unit ?? "s"] ?? 1000);
  }
  return ms;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `'Content-Type: text/plain'` → `["Content-Type", "text/plain"]`. */
export function parseHeader(value: string): [string, string] {
  const colon = value.indexOf(":");
  const name = colon < 0 ? "" : value.slice(0, colon).trim();
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
    throw new InvalidArgumentError(`expected 'Name: value', got '${value}'.`);
  }
  return [name, value.slice(colon + 1).trim()];
}

export function collectHeaders(
  value: string,
  previous: Array<[string, string]> = [],
): Array<[string, string]> {
  return [...previous, parseHeader(value)];
}

/**
 * Splits `--command "python3 -u server.py"` into argv the way a shell would for the common cases
 * (whitespace, single and double quotes, backslash escapes), so paths with spaces can be quoted.
 */
export function splitCommand(value: string): string[] {
  const args: string[] = [];
  let current = "";
  let inArg = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < value.length; i++) {
    const ch = value.charAt(i);
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === "\\" && quote === '"' && i + 1 < value.length) current += value.charAt(++i);
      else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inArg = true;
    } else if (ch === "\\" && i + 1 < value.length) {
      current += value.charAt(++i);
      inArg = true;
    } else if (/\s/.test(ch)) {
      if (inArg) args.push(current);
      current = "";
      inArg = false;
    } else {
      current += ch;
      inArg = true;
    }
  }
  if (quote) throw new InvalidArgumentError(`unterminated ${quote} quote.`);
  if (inArg) args.push(current);
  if (args.length === 0) throw new InvalidArgumentError("must not be empty.");
  return args;
}

/** `--count`: how many of something to show; bounded so a typo cannot print a million lines. */
export function parseCount(value: string): number {
  const n = parseInteger(value);
  if (n < 1 || n > 100) throw new InvalidArgumentError("must be between 1 and 100.");
  return n;
}

export const WATCH_EVENTS = ["ADDED", "MODIFIED", "DELETED"] as const;

/** `--events ADDED,DELETED` or repeated `--events`; upper-cased, checked before anything is sent. */
export function collectEvents(value: string, previous: string[] = []): string[] {
  const events = value
    .split(",")
    .map((e) => e.trim().toUpperCase())
    .filter((e) => e !== "");
  for (const e of events) {
    if (!(WATCH_EVENTS as readonly string[]).includes(e)) {
      throw new InvalidArgumentError(`"${e}" is not one of ${WATCH_EVENTS.join(", ")}.`);
    }
  }
  return [...previous, ...events.filter((e) => !previous.includes(e))];
}

/**
 * On update, an empty value removes an optional field: it is sent as null, which the registry
 * reads as "unset" (the default applies again). No valid subject, stream or selector is empty.
 */
export function unsetIfEmpty(value: string): string | null {
  return value === "" ? null : value;
}

/**
 * `KEY=VALUE` (`--env-var`, `--from-literal`): split at the first '=', so values may hold '='.
 * The key must be non-empty; what a valid key is depends on the flag (checked by the caller).
 */
export function parseKeyValue(value: string): [string, string] {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`expected KEY=VALUE, got '${value}'.`);
  return [value.slice(0, eq), value.slice(eq + 1)];
}

/** Function env var names (the registry's rule, so a typo fails before anything is uploaded). */
const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Repeatable `--env-var K=V`; a later K wins. An empty value ("") on update clears all. */
export function collectEnvVars(
  value: string,
  previous: Record<string, string> = {},
): Record<string, string> {
  if (value === "") return previous;
  const [key, v] = parseKeyValue(value);
  if (!ENV_VAR_NAME.test(key)) {
    throw new InvalidArgumentError(`'${key}' is not a variable name (letters, digits, '_').`);
  }
  if (key.startsWith("FIZZ_")) {
    throw new InvalidArgumentError(`'${key}': FIZZ_* variables are the platform's.`);
  }
  return { ...previous, [key]: v };
}

/** Secret and configmap keys: Kubernetes' rule (they become file names in the instance). */
export function checkConfigKey(key: string): string {
  if (!/^[-._a-zA-Z0-9]{1,253}$/.test(key) || key === "." || key === "..") {
    throw new InvalidArgumentError(
      `'${key}' is not a valid key (letters, digits, '-', '_' and '.'; not '.' or '..').`,
    );
  }
  return key;
}

/** Repeatable `--from-literal K=V`; the same key twice is a mistake worth stopping for. */
export function collectLiterals(
  value: string,
  previous: Array<[string, string]> = [],
): Array<[string, string]> {
  const [key, v] = parseKeyValue(value);
  checkConfigKey(key);
  if (previous.some(([k]) => k === key)) {
    throw new InvalidArgumentError(`key '${key}' is given twice.`);
  }
  return [...previous, [key, v]];
}

/** Repeatable `--from-file K=path` or `--from-file path` (the key is then the file's name). */
export function collectFiles(
  value: string,
  previous: Array<[string, string]> = [],
): Array<[string, string]> {
  const eq = value.indexOf("=");
  let key: string;
  let path: string;
  if (eq > 0) {
    key = value.slice(0, eq);
    path = value.slice(eq + 1);
  } else {
    path = value;
    key = path.split(/[\\/]/).pop() ?? "";
  }
  if (path === "") throw new InvalidArgumentError(`expected KEY=PATH or PATH, got '${value}'.`);
  checkConfigKey(key);
  if (previous.some(([k]) => k === key)) {
    throw new InvalidArgumentError(`key '${key}' is given twice.`);
  }
  return [...previous, [key, path]];
}

/** Repeatable `--secret`/`--configmap` names; "" (on update) alone clears the list. */
export function collectNames(value: string, previous: string[] = []): string[] {
  if (value === "") return previous;
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(value)) {
    throw new InvalidArgumentError(
      `'${value}' is not a valid name (lowercase letters, digits, '-').`,
    );
  }
  return previous.includes(value) ? previous : [...previous, value];
}
