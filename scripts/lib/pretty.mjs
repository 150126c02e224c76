// Human-readable lines for `npm start`: the services log JSON (for machines and log shippers);
// the terminal shows `time service level message key=value`, and a function's own output as
// `ns/fn | line`, so a user's print() is easy to spot.
const LEVELS = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
const COLORS = { warn: "\x1b[33m", error: "\x1b[31m", fatal: "\x1b[31m" };
const SKIP = new Set(["level", "time", "service", "msg", "pid", "hostname", "component", "v"]);

export function prettyLine(name, line, { color = false } = {}) {
  let rec;
  try {
    rec = JSON.parse(line);
  } catch {
    return `${name.padEnd(11)} ${line}`;
  }
  if (typeof rec !== "object" || rec === null || !("msg" in rec))
    return `${name.padEnd(11)} ${line}`;
  const time = new Date(rec.time ?? Date.now()).toTimeString().slice(0, 8);
  if (rec.function && rec.stream) return `${time} ${String(rec.function).padEnd(18)} | ${rec.msg}`;
  const level = LEVELS[rec.level] ?? "info";
  const who = rec.component ? `${rec.service ?? name}/${rec.component}` : (rec.service ?? name);
  const extra = Object.entries(rec)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" ");
  const text = `${time} ${who.padEnd(18)} ${level.padEnd(5)} ${rec.msg}${extra ? `  ${extra}` : ""}`;
  return color && COLORS[level] ? `${COLORS[level]}${text}\x1b[0m` : text;
}
