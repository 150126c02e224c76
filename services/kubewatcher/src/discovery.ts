import type { KubeClient } from "./kube-client";

/** What a trigger's `resource` names, as the apiserver's discovery describes it. */
export interface ResolvedResource {
  /** "" for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  /** `v1` or `apps/v1`: the objects' apiVersion. */
  apiVersion: string;
}

/** The apiserver does not serve the resource (yet: a CRD may be installed later), or cannot watch it. */
export class UnknownResourceError extends Error {
  override readonly name = "UnknownResourceError";
  constructor(
    readonly resource: string,
    why: string,
  ) {
    super(`resource "${resource}" ${why}`);
  }
}

interface ApiResource {
  name: string;
  singularName?: string;
  shortNames?: string[];
  namespaced: boolean;
  kind: string;
  verbs?: string[];
}
interface ApiGroup {
  name: string;
  versions: Array<{ groupVersion: string; version: string }>;
  preferredVersion?: { groupVersion: string; version: string };
}

const VERSION = /^v\d+((alpha|beta)\d+)?$/;

/**
 * Resolves `pods`, `services`, `deployments.apps`, `widgets.example.com` (also with a version,
 * `deployments.v1.apps`) through /api and /apis, like kubectl: the first dot-separated part is the
 * resource (plural, singular or short name), the rest the group; without a group, the core group
 * first, then every other group. Answers are cached; a miss refreshes the cache once, so a CRD
 * created since is found.
 */
export class Discovery {
  private groups: Promise<ApiGroup[]> | undefined;
  private readonly resources = new Map<string, Promise<ApiResource[]>>();

  constructor(private readonly client: KubeClient) {}

  async resolve(resource: string, signal?: AbortSignal): Promise<ResolvedResource> {
    const found = await this.find(resource, signal);
    if (found) return found;
    this.groups = undefined;
    this.resources.clear();
    const again = await this.find(resource, signal);
    if (again) return again;
    throw new UnknownResourceError(resource, "is not served by the apiserver");
  }

  private async find(
    resource: string,
    signal?: AbortSignal,
  ): Promise<ResolvedResource | undefined> {
    const [name = "", ...rest] = resource.split(".");
    const qualifier = rest.join(".");
    for (const gv of await this.candidates(qualifier, signal)) {
      const r = (await this.resourcesOf(gv, signal)).find((x) => matches(x, name));
      if (!r) continue;
      const verbs = r.verbs ?? [];
      if (!verbs.includes("list") || !verbs.includes("watch")) {
        throw new UnknownResourceError(resource, "cannot be listed and watched");
      }
      const [group, version] = gv.includes("/") ? gv.split("/", 2) : ["", gv];
      return {
        group: group ?? "",
        version: version ?? gv,
        plural: r.name,
        kind: r.kind,
        namespaced: r.namespaced,
        apiVersion: gv,
      };
    }
    return undefined;
  }

  /** Group versions to search, in order. */
  private async candidates(qualifier: string, signal?: AbortSignal): Promise<string[]> {
    const groups = await this.groupList(signal);
    const versionsOf = (name: string): string[] => {
      const g = groups.find((x) => x.name === name);
      if (!g) return [];
      const preferred = g.preferredVersion?.groupVersion;
      const all = g.versions.map((v) => v.groupVersion);
      return preferred ? [preferred, ...all.filter((v) => v !== preferred)] : all;
    };
    if (qualifier === "") {
      return [
        "v1",
        ...groups.flatMap((g) => (g.preferredVersion ? [g.preferredVersion.groupVersion] : [])),
      ];
    }
    const [first = "", ...more] = qualifier.split(".");
    if (VERSION.test(first)) {
      const group = more.join(".");
      if (group === "") return first === "v1" ? ["v1"] : [];
      return versionsOf(group).filter((gv) => gv === `${group}/${first}`);
    }
    return versionsOf(qualifier);
  }

  private groupList(signal?: AbortSignal): Promise<ApiGroup[]> {
    if (this.groups) return this.groups;
    const p = this.client
      .get<{ groups?: ApiGroup[] }>("/apis", {}, signal)
      .then((l) => l.groups ?? []);
    // A failed look-up is not cached: the next resolve asks again.
    p.catch(() => {
      if (this.groups === p) this.groups = undefined;
    });
    this.groups = p;
    return p;
  }

  private resourcesOf(groupVersion: string, signal?: AbortSignal): Promise<ApiResource[]> {
    let p = this.resources.get(groupVersion);
    if (!p) {
      const path = groupVersion === "v1" ? "/api/v1" : `/apis/${groupVersion}`;
      p = this.client
        .get<{ resources?: ApiResource[] }>(path, {}, signal)
        .then((l) => (l.resources ?? []).filter((r) => !r.name.includes("/")));
      const mine = p;
      mine.catch(() => {
        if (this.resources.get(groupVersion) === mine) this.resources.delete(groupVersion);
      });
      this.resources.set(groupVersion, mine);
    }
    return p;
  }
}

function matches(r: ApiResource, name: string): boolean {
  return r.name === name || r.singularName === name || (r.shortNames ?? []).includes(name);
}

/** The list/watch path: one namespace, or the whole cluster for cluster-scoped resources. */
export function collectionPath(r: ResolvedResource, namespace: string): string {
  const base = r.group === "" ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
  return r.namespaced ? `${base}/namespaces/${namespace}/${r.plural}` : `${base}/${r.plural}`;
}
