import { mkdirSync } from "node:fs";
import path from "node:path";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { WaitError, type RunSpec } from "./container-runner";
import type { ImageMap } from "./images";
import type { Kube } from "./kube";
import { expand, mapMountPaths, resolveEnv } from "./pod-env";
import type { ServiceResolver } from "./service-resolver";

export interface SpecContext {
  pod: V1Pod;
  container: V1Container;
  podIP: string;
  hostIP: string;
  podDir: string;
  mounts: Array<{ mountPath: string; hostPath: string }>;
  /** KUBECONFIG for the pod's service account, when the container mounts its token. */
  kubeconfig: string | undefined;
  images: ImageMap;
  kube: Kube;
  resolver: ServiceResolver;
  /** procnode's base environment (PATH & co., ProcnodeOptions.env). */
  baseEnv: Record<string, string>;
}

/**
 * What a container runs here, from its image, command, args and env. The rules:
 * - argv = the image map's command + the container's args (through the map's `args` hook); a
 *   container `command` replaces the map's command only when the map allows it (allowCommand);
 * - $(VAR) is expanded in env values, command and args, as Kubernetes does;
 * - a mount path in an arg or env value becomes the volume's dir; the wildcard address 0.0.0.0
 *   becomes the pod IP (each pod's "all interfaces" is its own IP here);
 * - env values naming a Service in a URL are rewritten to a ready pod of it (see ServiceResolver).
 */
export async function containerSpec(ctx: SpecContext): Promise<RunSpec> {
  const { container: c, pod, podIP } = ctx;
  const image = c.image ?? "";
  const run = ctx.images(image);
  if (!run) {
    throw new WaitError(
      "ImageNotMapped",
      `image "${image}" has no local program in procnode's image map, so nothing was started (see tools/procnode/README.md)`,
    );
  }
  if (c.command?.length && !run.allowCommand) {
    throw new WaitError(
      "CommandNotSupported",
      `container sets command ${JSON.stringify(c.command)}, but image "${image}" runs "${run.command.join(" ")}" here and does not accept a command (only images mapped with allowCommand do)`,
    );
  }
  // No KUBERNETES_SERVICE_HOST: in-cluster config would look for a token at a path processes
  // cannot see. A container that mounts a service-account token gets KUBECONFIG instead.
  const under: Record<string, string> = {
    ...ctx.baseEnv,
    ...(ctx.kubeconfig ? { KUBECONFIG: ctx.kubeconfig } : {}),
    HOSTNAME: pod.metadata?.name ?? "",
    ...run.env,
    HOST: podIP,
    POD_IP: podIP,
  };
  const own = await resolveEnv(
    { pod, container: c, podIP, hostIP: ctx.hostIP, kube: ctx.kube },
    under,
  );
  const ns = pod.metadata?.namespace ?? "default";
  for (const [k, v] of Object.entries(own)) {
    const local = toLocal(v, ctx);
    const r = await ctx.resolver.rewrite(local, ns);
    if (r.pending !== undefined) {
      throw new WaitError(
        "ServiceNotReady",
        `env ${k}=${v}: Service ${r.pending} has no ready pod yet (procnode resolves Service names to pod IPs; there is no cluster DNS)`,
        1000,
      );
    }
    own[k] = r.value;
  }
  // FIZZ_PARENT_STDIN is procnode's own mechanism (no orphans if it dies), so it always wins.
  const env = { ...under, ...own, FIZZ_PARENT_STDIN: "1" };
  const args = (c.args ?? []).map((a) => toLocal(expand(a, env), ctx));
  const argv = c.command?.length
    ? [...c.command.map((a) => toLocal(expand(a, env), ctx)), ...args]
    : [...run.command, ...(run.args ? run.args(args, { podIP }) : args)];
  const cwd =
    c.workingDir && mapMountPaths(c.workingDir, ctx.mounts) !== c.workingDir
      ? mapMountPaths(c.workingDir, ctx.mounts)
      : path.join(ctx.podDir, "containers", c.name);
  mkdirSync(cwd, { recursive: true });
  return { argv, env, cwd };
}

function toLocal(s: string, ctx: SpecContext): string {
  return s === "0.0.0.0" ? ctx.podIP : mapMountPaths(s, ctx.mounts);
}
