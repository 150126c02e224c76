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
