/**
 * The only way the console builds DOM: elements from tag names and attributes, children as nodes
 * or strings that become text nodes. Nothing from the API ever goes through innerHTML, so a
 * function named or printing `<img onerror=…>` shows those characters and runs nothing.
 */
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? text(c) : c);
  }
}

export function text(v: string | number): Text {
  return document.createTextNode(String(v));
}

export function clear(el: Element): void {
  el.replaceChildren();
}

/** A hash link; `href` is built from encoded parts only. */
export function link(parts: string[], label: string): HTMLAnchorElement {
  return h("a", { href: "#/" + parts.map(encodeURIComponent).join("/") }, label);
}

export function table(head: string[], rows: Child[][], empty: string): HTMLElement {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, ...head.map((c) => h("th", {}, c)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))),
  );
}

export function errorBox(err: unknown): HTMLElement {
  return h(
    "p",
    { class: "error", role: "alert" },
    err instanceof Error ? err.message : String(err),
  );
}
