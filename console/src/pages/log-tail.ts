import { call, fnPath, readLines, SignInNeeded } from "../api";
import { h } from "../dom";
import type { LogLine } from "../types";

const KEEP = 1000;
const RETRY_MS = 3000;

/**
 * The live tail: `GET …/logs?follow=true&tail=N` read as an NDJSON stream with fetch (EventSource
 * cannot send the Authorization header). Reconnects after the stream ends or fails, asking only
 * for lines after the last one shown.
 */
export function logTail(ns: string, name: string): { el: HTMLElement; stop: () => void } {
  const lines = h("div", { class: "log", role: "log", "aria-live": "polite" });
  const status = h("p", { class: "muted" }, "connecting…");
  const stopper = new AbortController();
  let lastTs: number | undefined;

  const show = (raw: string) => {
    let l: LogLine;
    try {
      l = JSON.parse(raw) as LogLine;
    } catch {
      l = { line: raw };
    }
    if (typeof l.ts === "number") lastTs = l.ts;
    const row = h(
      "div",
      {
        class: `log-line ${l.stream === "stderr" ? "stderr" : l.stream === "system" ? "system" : ""}`,
      },
      h("span", { class: "ts" }, l.ts ? new Date(l.ts).toLocaleTimeString() : ""),
      h("span", { class: "inst" }, (l.instanceId ?? "").slice(-8)),
      h("span", { class: "text" }, typeof l.line === "string" ? l.line : raw),
    );
    const atBottom = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
    lines.appendChild(row);
    while (lines.childElementCount > KEEP) lines.firstElementChild?.remove();
    if (atBottom) lines.scrollTop = lines.scrollHeight;
  };

  const run = async () => {
    while (!stopper.signal.aborted) {
      try {
        const q = lastTs === undefined ? "tail=100" : `since=${new Date(lastTs + 1).toISOString()}`;
        const res = await call(
          "GET",
          `${fnPath(ns, name)}/logs?follow=true&${q}`,
          undefined,
          stopper.signal,
        );
        if (!res.ok) {
          status.textContent = `logs unavailable (${res.status})`;
          await res.body?.cancel();
        } else {
          status.textContent = "following";
          await readLines(res, show, stopper.signal);
          if (!stopper.signal.aborted) status.textContent = "reconnecting…";
        }
      } catch (err) {
        if (err instanceof SignInNeeded || stopper.signal.aborted) return;
        status.textContent = "reconnecting…";
      }
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  };
  void run();
  return {
    el: h("section", { id: "logs" }, h("h2", {}, "Live log"), status, lines),
    stop: () => stopper.abort(),
  };
}
