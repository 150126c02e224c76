import { FizzError } from "@fizz/events";
import { retryUntil, type Logger } from "@fizz/kit";
import {
  ApiException,
  CoreV1Api,
  type KubeConfig,
  type V1ConfigMap,
  type V1Pod,
  type V1Secret,
} from "@kubernetes/client-node";

/**
 * Every Kubernetes API call the poolkeeper makes, in one place, so it can be checked against the
 * Role in k8s/rbac.yaml: pods list/watch (the informer, kube-watch.ts), create, delete, patch;
 * secrets and configmaps get (a function's config, at specialization).
 */
export class PodApi {
  readonly core: CoreV1Api;
  private readonly log: Logger;

  constructor(
    kubeConfig: KubeConfig,
    readonly namespace: string,
    logger: Logger,
  ) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.log = logger.child({ component: "kube-api" });
  }

  async create(pod: V1Pod): Promise<void> {
    try {
      await this.core.createNamespacedPod({ namespace: this.namespace, body: pod });
    } catch (err) {
      throw new FizzError(
        "INSTANCE_FAILED",
        `could not create pod ${pod.metadata?.name ?? "?"}: ${describeKubeError(err)}`,
        { cause: err },
      );
    }
  }

  /** The Secret of that name in the pods' namespace, or undefined when there is none. */
  readSecret(name: string): Promise<V1Secret | undefined> {
    return this.read("secret", name, () =>
      this.core.readNamespacedSecret({ name, namespace: this.namespace }),
    );
  }

  /** The ConfigMap of that name in the pods' namespace, or undefined when there is none. */
  readConfigMap(name: string): Promise<V1ConfigMap | undefined> {
    return this.read("configmap", name, () =>
      this.core.readNamespacedConfigMap({ name, namespace: this.namespace }),
    );
  }

  private async read<T>(
    kind: string,
    name: string,
    call: () => Promise<T>,
  ): Promise<T | undefined> {
    try {
      return await call();
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      // describeKubeError gives the Status message only: never a value of the object.
      throw new FizzError(
        "UNAVAILABLE",
        `could not read ${kind} ${name} from the Kubernetes API: ${describeKubeError(err)}`,
        { retryable: true },
      );
    }
  }

  /** True when the pod is deleted (or already gone). Never throws: a failure is logged. */
  async delete(name: string, gracePeriodSeconds: number, reason: string): Promise<boolean> {
    try {
      await this.core.deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds });
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return true;
      this.log.warn({ pod: name, reason, err: describeKubeError(err) }, "could not delete pod");
      return false;
    }
  }

  /**
   * Applies a JSON patch, retried with back-off (it is idempotent) until it lands, the pod is
   * gone, `stop()` says so, or the attempts run out. Never throws.
   */
  async patch(name: string, body: object[], stop: () => boolean, attempts = 5): Promise<boolean> {
    const warn = (err: unknown, attempt: number) =>
      this.log.warn({ pod: name, err: describeKubeError(err), attempt }, "could not patch pod");
    try {
      return await retryUntil(
        async () => {
          // A stop or a gone pod is an answer (false), not a failure to retry.
          if (stop()) return false;
          try {
            await this.core.patchNamespacedPod({ name, namespace: this.namespace, body });
            return true;
          } catch (err) {
            if (statusOf(err) === 404) return false;
            throw err;
          }
        },
        { attempts, baseMs: 200, maxMs: 3_000, onRetry: ({ err, attempt }) => warn(err, attempt) },
      );
    } catch (err) {
      warn(err, attempts - 1);
      return false;
    }
  }
}

/** The HTTP status of a failed API call, or undefined for a network error. */
export function statusOf(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

/**
 * One line for a log or an error reply. client-node's own message spans several lines with the
 * headers and the whole body; the Status object's `message` is what a person needs.
 */
export function describeKubeError(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = typeof err.body === "string" ? parseJson(err.body) : err.body;
    const msg =
      typeof body === "object" && body !== null && "message" in body
        ? String(body.message)
        : undefined;
    return `API answered ${err.code}${msg ? `: ${msg}` : ""}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function parseJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}
