/**
 * How `fizz fn logs` shows a line, and which lines a reconnect has already shown. Pure functions,
 * so the rules are tested without a registry.
 */

import { createHash } from "node:crypto";

/** LogLine v2 as the registry sends it (shared/events messages.ts; the CLI imports no workspace). */
export interface LogLine {
  namespace: string;
  function: string;
  revision: number;
  instanceId: string;
  stream: "stdout" | "stderr" | "system";
  line: string;
  ts: number;
  requestId?: string;
}

/** The shape check a line must pass before it is shown (a proxy's page is not log lines). */
export function parseLogLine(text: string): LogLine | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const l = v as Record<string, unknown>;
  const ok =
    typeof l.instanceId === "string" &&
    typeof l.line === "string" &&
    typeof l.ts === "number" &&
    (l.stream === "stdout" || l.stream === "stderr" || l.stream === "system") &&
    (l.requestId === undefined || typeof l.requestId === "string");
  return ok ? (v as LogLine) : undefined;
}

/**
 * A function's output is untrusted: escape sequences in it could retitle the terminal, hide
 * lines or fake a prompt, and bidi controls reorder what is shown (a line that reads unlike its
 * text). Control characters (but tab) are shown as `\xNN` / `\u{NN}`.
 */
export function visible(text: string): string {
  return text.replace(
    /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028-\u202e\u2066-\u2069]/g,
    (c) => {
      const code = c.charCodeAt(0);
      return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
    },
  );
}

/** Ids longer than LONG_ID (UUIDs, 32 hex) are shown by their first SHORT_ID characters. */
const SHORT_ID = 8;
const LONG_ID = 12;

/**
 * `2026-12-05T02:40:00.123Z stderr [req 3f2a9b1c…] message`; the platform's own lines read
 * `… system *** fizz: instance exited with code 1`; `detail` adds the instance and the whole request id.
 */
export function formatLine(l: LogLine, detail: boolean): string {
  const ts = Number.isFinite(l.ts) ? new Date(l.ts).toISOString() : String(l.ts);
  const parts = [ts, l.stream.padEnd(6)];
  if (detail) parts.push(`[${visible(l.instanceId)}]`);
  if (l.requestId) {
    const id = visible(l.requestId);
    parts.push(detail || id.length <= LONG_ID ? `[req ${id}]` : `[req ${id.slice(0, SHORT_ID)}…]`);
  }
  if (l.stream === "system") parts.push("***");
  parts.push(visible(l.line));
  return parts.join(" ");
}

/**
 * What a reconnect must not print twice. It resumes `overlapMs` before the last line seen (lines
 * of several instances are not stored in capture order), and the registry sends those lines again
 * in stream order; each line printed in that window is skipped once when it comes again.
 */
export class Resume {
  private lastTs: number | undefined;
  /** Printed lines in the window, oldest first. */
  private recent: Array<{ ts: number; key: string }> = [];
  private replay = new Map<string, number>();

  constructor(private readonly overlapMs: number) {}

  /** The `since` of the next request, or undefined before any line was seen. */
  since(): number | undefined {
    return this.lastTs === undefined ? undefined : this.lastTs - this.overlapMs;
  }

  /** Called before reconnecting: the window's lines are expected once more. */
  reconnecting(): void {
    this.replay = new Map();
    for (const { key } of this.recent) this.replay.set(key, (this.replay.get(key) ?? 0) + 1);
  }

  /** True when the line is new (and records it); false when it was printed before the reconnect. */
  admit(l: LogLine): boolean {
    // A digest, not the line: the window may hold seconds of a flood (16 KiB lines).
    const key = createHash("sha256")
      .update(JSON.stringify([l.instanceId, l.stream, l.ts, l.requestId ?? "", l.line]))
      .digest("base64");
    const owed = this.replay.get(key) ?? 0;
    if (owed > 0) {
      this.replay.set(key, owed - 1);
      return false;
    }
    this.lastTs = Math.max(this.lastTs ?? l.ts, l.ts);
    this.recent.push({ ts: l.ts, key });
    const cutoff = this.lastTs - this.overlapMs;
    let drop = 0;
    while (drop < this.recent.length && this.recent[drop]!.ts < cutoff) drop++;
    if (drop > 0) this.recent.splice(0, drop);
    return true;
  }
}
