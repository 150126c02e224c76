/**
 * Rendering for humans (borderless tables in the style of kubectl) and for scripts (the API's
 * JSON, untouched). Commands decide what to show; this file decides how it looks.
 */
import Table from "cli-table3";

export type OutputFormat = "table" | "json";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["table", "json"];

/** process.stdout or a test's buffer. */
export interface Writable {
  write(chunk: string | Uint8Array): unknown;
}

/** Shown in a cell whose field is not set. */
export const NONE = "-";

/** Pretty-printed, but otherwise exactly what the API returned, so `jq` sees the real fields. */
export function printJson(out: Writable, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

const NO_BORDERS = {
  top: "",
  "top-mid": "",
  "top-left": "",
  "top-right": "",
  bottom: "",
  "bottom-mid": "",
  "bottom-left": "",
  "bottom-right": "",
  left: "",
  "left-mid": "",
  mid: "",
  "mid-mid": "",
  right: "",
  "right-mid": "",
  middle: "",
};

/** Columns separated by three spaces, no borders or colours: easy to read and to `awk`. */
export function renderTable(head: string[], rows: string[][]): string {
  const table = new Table({
    head,
    chars: NO_BORDERS,
    style: { head: [], border: [], "padding-left": 0, "padding-right": 3 },
  });
  table.push(...rows);
  return `${table
    .toString()
    .split("\n")
    .map((line) => line.trimEnd())
    .join("\n")}\n`;
}

/** A `Key:  value` block for one object (`get`), aligned on the longest key. */
export function renderDetails(rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([key]) => key.length)) + 2;
  return rows.map(([key, value]) => `${`${key}:`.padEnd(width)}${value}\n`).join("");
}

/** How long ago, in the largest unit that fits (`45s`, `12m`, `3h`, `5d`, `2y`), like kubectl. */
export function formatAge(iso: string | undefined, now: number): string {
  const then = iso ? Date.parse(iso) : NaN;
  if (Number.isNaN(then)) return NONE;
  const seconds = Math.max(0, Math.floor((now - then) / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (days < 365 * 2) return `${days}d`;
  return `${Math.floor(days / 365)}y`;
}

/** A timestamp with its age, for detail views: `2024-05-01T10:00:00Z (3h ago)`. */
export function formatTime(iso: string | undefined, now: number): string {
  if (!iso) return NONE;
  const age = formatAge(iso, now);
  return age === NONE ? iso : `${iso} (${age} ago)`;
}

/** Renders an optional scalar, so tables never show `undefined`. */
export function cell(value: string | number | undefined | null): string {
  return value === undefined || value === null || value === "" ? NONE : String(value);
}

/** `512 B`, `12.3 KiB`, `4.0 MiB`: sizes of archives and code. */
export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined) return NONE;
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
