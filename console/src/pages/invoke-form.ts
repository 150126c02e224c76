import { fnPath, json } from "../api";
import { append, clear, errorBox, h } from "../dom";
import type { InvokeAnswer } from "../types";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/** "Name: value" per line; blank lines skipped. */
function parseHeaders(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const i = line.indexOf(":");
    if (i <= 0) throw new Error(`header line "${line}" is not "Name: value"`);
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

/** Calls the function through the registry (which calls the configured gateway) and shows the answer. */
export function invokeForm(ns: string, name: string): HTMLElement {
  const method = h(
    "select",
    { name: "method", id: "invoke-method" },
    ...METHODS.map((m) => h("option", { value: m }, m)),
  );
  const path = h("input", {
    name: "path",
    id: "invoke-path",
    placeholder: "/ (path below the function, query allowed)",
  });
  const headers = h("textarea", {
    name: "headers",
    id: "invoke-headers",
    rows: "3",
    placeholder: "Content-Type: application/json",
  });
  const body = h("textarea", { name: "body", id: "invoke-body", rows: "4" });
  const answer = h("div", { id: "invoke-answer" });
  const submit = h("button", { type: "submit" }, "Invoke");
  const form = h(
    "form",
    { id: "invoke" },
    h(
      "div",
      { class: "row" },
      h("label", {}, "Method ", method),
      h("label", { class: "grow" }, "Path ", path),
    ),
    h("label", {}, "Headers", headers),
    h("label", {}, "Body", body),
    submit,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    clear(answer);
    answer.appendChild(h("p", { class: "muted" }, "calling…"));
    void (async () => {
      try {
        const a = await json<InvokeAnswer>("POST", `${fnPath(ns, name)}/invoke`, {
          method: method.value,
          path: path.value,
          headers: parseHeaders(headers.value),
          body: body.value,
        });
        clear(answer);
        append(answer, [
          h(
            "p",
            { class: "status" },
            h("strong", { id: "invoke-status" }, String(a.status)),
            ` in ${a.durationMs} ms`,
          ),
          h(
            "pre",
            { class: "headers", id: "invoke-answer-headers" },
            a.headers.map(([k, v]) => `${k}: ${v}`).join("\n"),
          ),
          a.bodyEncoding === "base64"
            ? h("p", { class: "muted" }, "binary body, shown as base64")
            : null,
          a.truncated ? h("p", { class: "warn" }, "body cut at 1 MiB") : null,
          h("pre", { class: "body", id: "invoke-answer-body" }, a.body),
        ]);
      } catch (err) {
        clear(answer);
        answer.appendChild(errorBox(err));
      } finally {
        submit.disabled = false;
      }
    })();
  });
  return h("section", { id: "invoke-section" }, h("h2", {}, "Invoke"), form, answer);
}
