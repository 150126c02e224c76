import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";

export interface Kube {
  kc: KubeConfig;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  /** Clients for look-ups a node identity may not make (see ProcnodeOptions.lookupKubeconfig). */
  lookup: CoreV1Api;
  /** The API server URL (injected as KUBERNETES_SERVICE_HOST/PORT). */
  server: string;
}

export function makeKube(kubeconfig: string, lookupKubeconfig?: string): Kube {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  let lookup = kc.makeApiClient(CoreV1Api);
  if (lookupKubeconfig && lookupKubeconfig !== kubeconfig) {
    const lkc = new KubeConfig();
    lkc.loadFromFile(lookupKubeconfig);
    lookup = lkc.makeApiClient(CoreV1Api);
  }
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    lookup,
    server: kc.getCurrentCluster()?.server ?? "",
  };
}

/**
 * JSON merge patch (RFC 7386). The 1.x client sends JSON Patch by default, so the content type is
 * set explicitly. Merge patch replaces lists whole, which is what status updates want: the agent
 * always sends the complete containerStatuses, so no stale `waiting` survives beside `running`.
 */
export const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

/** HTTP status of a failed API call, if it was one. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : undefined;
}

export const isNotFound = (err: unknown) => statusOf(err) === 404;
export const isConflict = (err: unknown) => statusOf(err) === 409;

/** metav1.MicroTime wants exactly six fractional digits; Date#toISOString gives three. */
export function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** metav1.Time: RFC 3339 in seconds. */
export function rfc3339(d = new Date()): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A short message for logs and statuses: the API's own message when there is one. */
export function errorMessage(err: unknown): string {
  const body = (err as { body?: unknown } | null)?.body;
  if (typeof body === "string") {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      // not JSON: fall through to the error's own message
    }
  }
  if (body && typeof body === "object" && "message" in body) return String(body.message);
  return err instanceof Error ? err.message : String(err);
}
