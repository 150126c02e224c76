import { json, SignInNeeded } from "../api";
import { clear, errorBox, h, link, table } from "../dom";
import { moreText, routeText, triggerText, type FunctionSummary, type Pool } from "../types";

/** Functions per page of the listing; "Load more" asks for the next one. */
const PAGE = 100;

interface FunctionsPage {
  items: FunctionSummary[];
  continue?: string;
  instancesKnown: boolean;
}

const functionsAfter = (token: string | undefined): Promise<FunctionsPage> =>
  json<FunctionsPage>(
    "GET",
    `/v1/console/functions?limit=${PAGE}${token === undefined ? "" : `&continue=${encodeURIComponent(token)}`}`,
  );

function functionRow(f: FunctionSummary): (HTMLElement | string)[] {
  return [
    link(["fn", f.namespace, f.name], f.name),
    f.namespace,
    f.environment,
    list(f.routes.map(routeText), moreText(f.routes.length, f.routesTotal)),
    list(f.triggers.map(triggerText), moreText(f.triggers.length, f.triggersTotal)),
    String(f.revision),
    String(f.instances.specialized),
  ];
}

/**
 * Every function, across namespaces, with what calls it and what runs it: a page at a time (the
 * registry answers pages, in namespace then name order), the next appended by "Load more".
 */
export async function functionsPage(): Promise<HTMLElement> {
  const first = await functionsAfter(undefined);
  const functionsTable = (items: FunctionSummary[]) =>
    table(
      ["name", "namespace", "environment", "routes", "triggers", "revision", "instances"],
      items.map(functionRow),
      "No functions yet: fizz fn create --name hello --env node --code hello.js --route /hello",
    );
  let rows = functionsTable(first.items);
  const more = h("button", { type: "button", id: "functions-more" }, "Load more");
  const failed = h("div", {});
  let token = first.continue;
  more.hidden = token === undefined;
  more.addEventListener("click", () => {
    more.disabled = true;
    clear(failed);
    functionsAfter(token).then(
      (page) => {
        const tbody = rows.querySelector("tbody");
        if (tbody)
          tbody.append(
            ...page.items.map((f) => h("tr", {}, ...functionRow(f).map((c) => h("td", {}, c)))),
          );
        else if (page.items.length > 0) {
          // The first page held no row (only objects the registry could not read).
          const next = functionsTable(page.items);
          rows.replaceWith(next);
          rows = next;
        }
        token = page.continue;
        more.hidden = token === undefined;
        more.disabled = false;
      },
      (err: unknown) => {
        if (err instanceof SignInNeeded) return;
        failed.appendChild(errorBox(err));
        more.disabled = false;
      },
    );
  });
  return h(
    "section",
    { id: "functions" },
    h("h1", {}, "Functions"),
    first.instancesKnown
      ? null
      : h("p", { class: "warn" }, "The poolkeeper did not answer: instance counts are unknown."),
    rows,
    failed,
    more,
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

/** A row's routes or triggers: a row holds the first few, `more` says how many it left out. */
function list(items: string[], more?: string): HTMLElement | string {
  if (items.length === 0 && more === undefined) return "—";
  const lis = items.map((i) => h("li", {}, i));
  if (more !== undefined) lis.push(h("li", { class: "muted" }, more));
  return h("ul", { class: "plain" }, ...lis);
}
