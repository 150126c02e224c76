// Human-readable lines for `npm start`: the services log JSON (for machines and log shippers);
// the terminal shows `time service level message key=value`, and a function's own output as
// `ns/fn | line`, so a user's print() is easy to spot.
/** @type {Record<number, string>} */
const LEVELS = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
/** @type {Record<string, string>} */
const COLORS = { warn: "\x1b[33m", error: "\x1b[31m", fatal: "\x1b[31m" };
const SKIP = new Set(["level", "time", "service", "msg", "pid", "hostname", "component", "v"]);

/**
 * A pino record's level name ("info", "warn", ...), or undefined for a line that is not one (a
 * function's plain output, a crash trace).
 * @param {string} line
 * @returns {string | undefined}
 */
export function levelOf(line) {
  const rec = parse(line);
  return rec && typeof rec.level === "number" ? (LEVELS[rec.level] ?? "info") : undefined;
}

/**
 * @param {string} line
 * @returns {Record<string, unknown> | undefined}
 */
function parse(line) {
  if (!line.startsWith("{")) return undefined;
  try {
    /** @type {unknown} */
    const rec = JSON.parse(line);
    return typeof rec === "object" && rec !== null && !Array.isArray(rec)
      ? /** @type {Record<string, unknown>} */ (rec)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * @param {string} name  the process the line came from
 * @param {string} line
 * @param {{ color?: boolean }} [opts]
 * @returns {string}
 */
export function prettyLine(name, line, { color = false } = {}) {
  const rec = parse(line);
  if (rec === undefined || !("msg" in rec)) return `${name.padEnd(11)} ${line}`;
  const time = new Date(typeof rec.time === "number" ? rec.time : Date.now())
    .toTimeString()
    .slice(0, 8);
  const msg = text(rec.msg);
  if (rec.function && rec.stream) return `${time} ${text(rec.function).padEnd(18)} | ${msg}`;
  const level = (typeof rec.level === "number" ? LEVELS[rec.level] : undefined) ?? "info";
  const service = rec.service === undefined ? name : text(rec.service);
  const who = rec.component ? `${service}/${text(rec.component)}` : service;
  const extra = Object.entries(rec)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${text(v)}`)
    .join(" ");
  const out = `${time} ${who.padEnd(18)} ${level.padEnd(5)} ${msg}${extra ? `  ${extra}` : ""}`;
  const paint = color ? COLORS[level] : undefined;
  return paint ? `${paint}${out}\x1b[0m` : out;
}

/**
 * A field as the terminal shows it: objects as JSON, the rest as themselves.
 * @param {unknown} v
 */
function text(v) {
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}
