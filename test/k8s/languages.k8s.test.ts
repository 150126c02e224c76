import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { caseDir, FIXTURES, selectedLanguages } from "../e2e/languages/cases";
import {
  fizzCli,
  isReady,
  NS,
  podLogs,
  startKubePlatform,
  type KubePlatform,
} from "./kube-platform";

/**
 * Issue 13 on the kubernetes backend: for every language, an environment of image
 * fizz/env-<lang> (Go and C# with their builder image, fizz/builder-<lang>) and Fission's hello
 * world deployed with `fizz fn create --code`, answered through the gateway by a pod procnode runs
 * from procnode's image map. Go's and C#'s hello world is compiled by a builder pod first.
 */
describe("every language on the kubernetes backend (k8s-lite + procnode): hello world through the gateway", function () {
  this.timeout(600_000);
  let kp: KubePlatform | undefined;
  let work: string;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "fizz-k8s-lang-"));
    await cp(FIXTURES, path.join(work, "languages"), { recursive: true });
    kp = await startKubePlatform(work);
  });
  after(async () => {
    await kp?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });
  afterEach(function () {
    if (this.currentTest?.state !== "failed" || !kp) return;
    console.error(kp.platform.logs.slice(-80).join("\n"));
    console.error(podLogs(kp.node));
  });

  async function api(method: string, route: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${kp!.platform.registryUrl}${route}`, {
      method,
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${kp!.platform.adminToken}`,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
    return JSON.parse(text) as unknown;
  }

  async function pods(selector: string): Promise<V1Pod[]> {
    const list = await kp!.core.listNamespacedPod({
      namespace: NS,
      labelSelector: `fizz.dev/managed-by=poolkeeper,${selector}`,
    });
    return list.items.filter((x) => !x.metadata?.deletionTimestamp);
  }

  /** The builder pods' labels (services/poolkeeper/src/build/pod-runner-pod.ts). */
  const BUILDER_SELECTOR =
    "app.kubernetes.io/component=fizz-builder,app.kubernetes.io/part-of=fizz";

  for (const c of selectedLanguages()) {
    it(`${c.lang}: a hello function on ${c.image} answers from a specialized pod of that image`, async () => {
      // Never a silent skip: the CI machine has every runtime.
      const why = await c.unavailable();
      if (why !== undefined) throw new Error(`${c.lang} is unavailable on this machine: ${why}`);
      const env = `${c.lang}-k8s`;
      // Through the CLI, as a user (or a Fission user's `--builder`) would name the builder image.
      const made = await fizzCli(
        kp!.platform,
        [
          "env",
          "create",
          "--name",
          env,
          "--image",
          c.image,
          "--poolsize",
          "1",
          ...(c.builder !== undefined ? ["--builder", c.builder] : []),
        ],
        { cwd: work },
      );
      expect(made.code, made.stderr).to.equal(0);
      if (c.builder !== undefined) {
        const got = (await api("GET", `/v1/namespaces/default/environments/${env}`)) as {
          spec: { builder?: { image?: string } };
        };
        expect(got.spec.builder?.image).to.equal(c.builder);
      }
      await waitFor(
        async () =>
          (await pods(`fizz.dev/state=warm,fizz.dev/environment=${env}`)).filter(isReady).length,
        { timeoutMs: 90_000, intervalMs: 200, what: `a warm ${env} pod Ready` },
      );
      const name = `hello-${c.lang}`;
      const file = path.join(
        work,
        "languages",
        path.relative(FIXTURES, caseDir(c, "hello")),
        c.files.hello,
      );
      // Builder pods seen while fn create runs (they are deleted once the build is over).
      const builderImages = new Set<string>();
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const list = await kp!.core.listNamespacedPod({
            namespace: NS,
            labelSelector: BUILDER_SELECTOR,
          });
          for (const b of list.items)
            for (const ct of b.spec?.containers ?? []) if (ct.image) builderImages.add(ct.image);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const started = performance.now();
      const created = await fizzCli(
        kp!.platform,
        [
          "fn",
          "create",
          "--name",
          name,
          "--env",
          env,
          "--code",
          file,
          ...(c.entrypoint !== undefined ? ["--entrypoint", c.entrypoint] : []),
        ],
        { cwd: work },
      );
      watching = false;
      await watcher;
      expect(created.code, `fn create\n${created.stdout}\n${created.stderr}`).to.equal(0);
      const deployed = performance.now();
      const res = await fetch(`${kp!.platform.gatewayUrl}/function/${name}`, {
        signal: AbortSignal.timeout(120_000),
      });
      const text = await res.text();
      console.log(
        `      ${c.lang}: fn create ${Math.round(deployed - started)} ms, first call ${Math.round(performance.now() - deployed)} ms`,
      );
      expect(res.status, text).to.equal(200);
      expect(text.trim()).to.equal("Hello, world!");
      const serving = await waitFor(
        async () => {
          const found = await pods(`fizz.dev/state=specialized,fizz.dev/function=${name}`);
          return found.length === 1 ? found[0] : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: `one pod labelled specialized for ${name}` },
      );
      expect(serving.metadata?.labels).to.include({ "fizz.dev/environment": env });
      expect(serving.spec?.containers[0]?.image).to.match(new RegExp(`${c.image}(:|@|$)`));
      if (c.compiled) {
        const fn = (await api("GET", `/v1/namespaces/default/functions/${name}`)) as {
          spec: { code?: unknown; package?: { name: string } };
        };
        expect(fn.spec.code, "--code became a source package").to.equal(undefined);
        const pkg = (await api(
          "GET",
          `/v1/namespaces/default/packages/${fn.spec.package?.name ?? name}`,
        )) as { status: { buildState: string } };
        expect(pkg.status.buildState, "compiled by a builder pod").to.equal("succeeded");
        expect([...builderImages], "the builder pod's image").to.include(c.builder);
      }
    });
  }
});
