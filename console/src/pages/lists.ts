import { json } from "../api";
import { h, link, table } from "../dom";
import { routeText, triggerText, type FunctionSummary, type Pool } from "../types";

/** Every function, across namespaces, with what calls it and what runs it. */
export async function functionsPage(): Promise<HTMLElement> {
  const { items, instancesKnown } = await json<{
    items: FunctionSummary[];
    instancesKnown: boolean;
  }>("GET", "/v1/console/functions");
  const rows = items.map((f) => [
    link(["fn", f.namespace, f.name], f.name),
    f.namespace,
    f.environment,
    list(f.routes.map(routeText)),
    list(f.triggers.map(triggerText)),
    String(f.revision),
    String(f.instances.specialized),
  ]);
  return h(
    "section",
    { id: "functions" },
    h("h1", {}, "Functions"),
    instancesKnown
      ? null
      : h("p", { class: "warn" }, "The poolkeeper did not answer: instance counts are unknown."),
    table(
      ["name", "namespace", "environment", "routes", "triggers", "revision", "instances"],
      rows,
      "No functions yet: fizz fn create --name hello --env node --code hello.js --route /hello",
    ),
  );
}

/** Warm and specialized instances per environment. */
export async function poolsPage(): Promise<HTMLElement> {
  const { items } = await json<{ items: Pool[] }>("GET", "/v1/pools");
  return h(
    "section",
    { id: "pools" },
    h("h1", {}, "Pools"),
    table(
      ["namespace", "environment", "warm", "specialized", "total"],
      items.map((p) => [
        p.namespace,
        p.name,
        String(p.warm),
        String(p.specialized),
        String(p.total),
      ]),
      "No environments yet.",
    ),
  );
}

function list(items: string[]): HTMLElement | string {
  if (items.length === 0) return "—";
  return h("ul", { class: "plain" }, ...items.map((i) => h("li", {}, i)));
}
