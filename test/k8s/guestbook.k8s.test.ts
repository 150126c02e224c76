import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type {
  V1LabelSelector,
  V1NetworkPolicyPeer,
  V1NetworkPolicyPort,
  V1Pod,
} from "@kubernetes/client-node";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { Redis } from "ioredis";
import { ROOT } from "../e2e/helpers";
import {
  fizzCli,
  isReady,
  NS,
  podLogs,
  startKubePlatform,
  type KubePlatform,
} from "./kube-platform";

const EXAMPLE = path.join(ROOT, "examples", "guestbook");
/** examples/guestbook/k8s/redis.yaml's Redis: in the function pods' namespace, these labels. */
const REDIS_SELECTOR = "app.kubernetes.io/name=guestbook-redis";
const ENTRY = "hello <b>k8s</b>";

/** The two variants of examples/guestbook: the same page and behaviour, each with its own list. */
const VARIANTS = [
  {
    name: "Python (Flask-style get.py and add.py)",
    route: "/guestbook",
    list: "guestbook:entries",
    functions: ["guestbook-get", "guestbook-add"],
  },
  {
    name: "Node (package built in a builder pod, npm redis client)",
    route: "/guestbook-node",
    list: "guestbook-node:entries",
    functions: ["guestbook-node-get", "guestbook-node-add"],
  },
] as const;

/**
 * Issue 12's guestbook, deployed on the kubernetes backend the way its README tells a user to:
 * Redis from examples/guestbook/k8s/redis.yaml with kubectl, then
 * `GUESTBOOK_REDIS_URL=... fizz spec apply -f examples/guestbook/specs`: the `guestbook`
 * ConfigMap is the registry's, which the poolkeeper hands out on Kubernetes too. Function pods are bare pods the poolkeeper creates
 * (as the fizz-poolkeeper service account) in k8s-lite, run by procnode; the Node package is built
 * by a builder pod. Everything is checked over HTTP through the gateway, as a browser would.
 */
describe("the guestbook example on the kubernetes backend (k8s-lite + procnode)", function () {
  this.timeout(240_000);
  let kp: KubePlatform | undefined;
  let work: string;
  let redisUrl = "";
  let redis: Redis | undefined;

  before(async function () {
    work = await mkdtemp(path.join(tmpdir(), "fizz-k8s-guestbook-"));
    kp = await startKubePlatform(work);
  });

  after(async () => {
    // FIZZ_K8S_LOGS=1 prints every pod's log tail and the platform's (as platform.k8s.test.ts).
    if (process.env.FIZZ_K8S_LOGS && kp) {
      console.log(kp.platform.logs.join("\n"));
      console.log(podLogs(kp.node, 400));
    }
    redis?.disconnect();
    await kp?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state !== "failed" || !kp) return;
    console.error(kp.platform.logs.slice(-80).join("\n"));
    console.error(podLogs(kp.node));
  });

  async function fizz(args: string[], env: Record<string, string> = {}) {
    const r = await fizzCli(kp!.platform, args, { cwd: work, env });
    expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  }

  async function api(route: string): Promise<unknown> {
    const r = await kp!.platform.api("GET", route);
    expect(r.status, `GET ${route}: ${r.text}`).to.equal(200);
    return r.json;
  }

  /** The poolkeeper's pods serving `fn` (relabelled in place once specialized). */
  async function functionPods(fn: string): Promise<V1Pod[]> {
    const list = await kp!.core.listNamespacedPod({
      namespace: NS,
      labelSelector: `fizz.dev/managed-by=poolkeeper,fizz.dev/state=specialized,fizz.dev/function-namespace=default,fizz.dev/function=${fn}`,
    });
    return list.items.filter((p) => !p.metadata?.deletionTimestamp);
  }

  it("runs Redis from examples/guestbook/k8s/redis.yaml: the API accepts the manifest and its pod becomes Ready", async () => {
    const manifest = path.join(EXAMPLE, "k8s", "redis.yaml");
    kp!.kubectl("apply", "-f", manifest);
    const kinds = kp!
      .kubectl("get", "-f", manifest, "-o", "name")
      .trim()
      .split("\n")
      .map((n) => n.split("/")[0])
      .sort();
    expect(kinds).to.deep.equal([
      "deployment.apps",
      "networkpolicy.networking.k8s.io",
      "networkpolicy.networking.k8s.io",
      "service",
    ]);
    const pod = await waitFor(
      async () => {
        const list = await kp!.core.listNamespacedPod({
          namespace: NS,
          labelSelector: REDIS_SELECTOR,
        });
        return list.items.find(isReady);
      },
      { timeoutMs: 60_000, intervalMs: 200, what: "the guestbook's Redis pod Ready" },
    );
    // No cluster DNS under procnode: the function reaches Redis by its pod IP, where a cluster
    // would use the Service name.
    redisUrl = `redis://${pod.status!.podIP!}:6379/0`;
    redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    expect(await redis.ping()).to.equal("PONG");
  });

  it("`fizz spec apply -f examples/guestbook/specs` deploys every object, labelled with the deployment config", async () => {
    // The address comes from the spec's ConfigMap, in the registry: on Kubernetes the poolkeeper
    // hands the registry's configmaps out first (function-config.ts), so no kubectl step.
    await fizz(["spec", "apply", "-f", path.join(EXAMPLE, "specs")], {
      GUESTBOOK_REDIS_URL: redisUrl,
    });
    for (const [kind, names] of [
      ["environments", ["python", "nodejs"]],
      ["packages", ["guestbook-node"]],
      ["functions", VARIANTS.flatMap((v) => v.functions)],
    ] as const) {
      for (const name of names) {
        const o = (await api(`/v1/namespaces/default/${kind}/${name}`)) as {
          metadata: { labels?: Record<string, string> };
        };
        expect(o.metadata.labels, `${kind}/${name}`).to.include({ "fizz.dev/spec": "guestbook" });
      }
    }
    // The Node package is built from its source by a builder pod: wait for it to be served.
    const status = await waitFor(
      async () => {
        const pkg = (await api("/v1/namespaces/default/packages/guestbook-node")) as {
          status: { buildState: string; message?: string; buildLog?: string };
        };
        if (pkg.status.buildState === "failed")
          throw new Error(`build failed: ${pkg.status.message}\n${pkg.status.buildLog}`);
        return pkg.status.buildState === "succeeded" ? pkg.status : undefined;
      },
      { timeoutMs: 150_000, intervalMs: 250, what: "package guestbook-node built" },
    );
    expect(status.buildState).to.equal("succeeded");
  });

  for (const v of VARIANTS) {
    describe(`${v.name} at ${v.route}`, () => {
      const url = () => `${kp!.platform.gatewayUrl}${v.route}`;

      it("GET answers the HTML page with a form that POSTs `text` to the same route", async () => {
        const res = await fetch(url(), { signal: AbortSignal.timeout(60_000) });
        const html = await res.text();
        expect(res.status, html).to.equal(200);
        expect(res.headers.get("content-type")).to.match(/^text\/html/);
        expect(html).to.match(new RegExp(`<form[^>]*action="${v.route}"`));
        expect(html).to.match(/<form[^>]*method="post"/i);
        expect(html).to.match(/<input[^>]*name="text"/);
      });

      it("POST with a form entry answers 303 to the page, which then shows the entry HTML-escaped", async () => {
        const res = await post(url(), ENTRY);
        expect(res.status, await res.text()).to.equal(303);
        expect(res.headers.get("location")).to.equal(v.route);
        const page = await (await fetch(url())).text();
        // Shown as text: escaped (either variant's way), no markup of the visitor's in the page.
        expect(listed(page)).to.deep.equal([ENTRY]);
        expect(page).to.not.include("<b>");
        // It went to the Redis the ConfigMap names (the example's default would be 127.0.0.1:6379).
        expect(await redis!.lrange(v.list, 0, -1)).to.deep.equal([ENTRY]);
      });

      it("an empty entry answers 400 and adds nothing", async () => {
        for (const text of ["", "   "]) {
          const res = await post(url(), text);
          expect(res.status, `text=${JSON.stringify(text)}`).to.equal(400);
          await res.body?.cancel();
        }
        expect(await redis!.llen(v.list)).to.equal(1);
      });

      it("its function pods got the guestbook ConfigMap: the Redis address is a file under /configs", async () => {
        for (const fn of v.functions) {
          // The poolkeeper patches a pod's labels once it is specialized, off the cold-start path
          // (recordSpecialized), so on a loaded machine they can land after the calls above.
          const pods = await waitFor(
            async () => {
              const found = await functionPods(fn);
              return found.length > 0 ? found : undefined;
            },
            { timeoutMs: 15_000, intervalMs: 100, what: `${fn}'s pods labelled specialized` },
          );
          expect(pods, `${fn} pods`).to.have.length.greaterThan(0);
          for (const pod of pods) {
            const env = pod.spec!.containers[0]!.env ?? [];
            expect(env).to.deep.include({ name: "FIZZ_CONFIGS_DIR", value: "/configs" });
            // procnode maps the pod's /configs emptyDir to a directory of its own.
            const dir = kp!.node.pods().find((p) => p.name === pod.metadata!.name)?.dir;
            expect(dir, `${pod.metadata!.name} run by procnode`).to.be.a("string");
            const file = path.join(dir!, "volumes", "configs", "default", "guestbook", "redis-url");
            expect(existsSync(file), file).to.equal(true);
            expect(readFileSync(file, "utf8")).to.equal(redisUrl);
          }
        }
      });
    });
  }

  // After both variants: mocha runs a suite's own tests before its nested suites.
  describe("redis.yaml's NetworkPolicies", () => {
    it("let exactly the guestbook's four function pods reach its Redis: not a same-named function of another Fizz namespace, not a warm pod", async () => {
      // An attacker's function in Fizz namespace team-b, named like one of the guestbook's.
      await writeFile(path.join(work, "hello.py"), 'def main():\n    return "hi"\n');
      await fizz([
        "-n",
        "team-b",
        "env",
        "create",
        "--name",
        "python",
        "--image",
        "fizz/env-python",
        "--poolsize",
        "1",
      ]);
      await fizz([
        "-n",
        "team-b",
        "fn",
        "create",
        "--name",
        "guestbook-get",
        "--env",
        "python",
        "--code",
        "hello.py",
      ]);
      const hi = await fetch(`${kp!.platform.gatewayUrl}/function/guestbook-get.team-b`);
      expect(await hi.text()).to.equal("hi");
      // Every guestbook function has a live pod (a GET and a refused POST specialize them again if
      // they were reaped since).
      for (const v of VARIANTS) {
        await (await fetch(`${kp!.platform.gatewayUrl}${v.route}`)).body?.cancel();
        await (await post(`${kp!.platform.gatewayUrl}${v.route}`, "")).body?.cancel();
      }
      const names = (pods: V1Pod[]) => pods.map((p) => p.metadata!.name!).sort();
      // Labels land once a pod is specialized, off the request path (see above): wait for them.
      const labelled = async () =>
        names((await Promise.all(VARIANTS.flatMap((v) => v.functions).map(functionPods))).flat());
      await waitFor(async () => (await labelled()).length === 4, {
        timeoutMs: 15_000,
        intervalMs: 100,
        what: "the four guestbook functions' pods labelled specialized",
      }).catch(() => undefined); // the assertion below says what is missing
      const functions = await labelled();
      expect(functions).to.have.length(4);
      const list = async (selector: string) =>
        names(
          (
            await kp!.core.listNamespacedPod({ namespace: NS, labelSelector: selector })
          ).items.filter((p) => !p.metadata?.deletionTimestamp),
        );
      const redisPods = await list(REDIS_SELECTOR);
      const attacker = await list(
        "fizz.dev/function=guestbook-get,fizz.dev/function-namespace=team-b",
      );
      expect(attacker).to.have.length(1);
      const warm = await list("fizz.dev/state=warm");
      expect(warm).to.have.length.greaterThan(0);
      // The policies as the API server stores them; their selectors evaluated by the API server.
      const peers = async (ps: V1NetworkPolicyPeer[] | undefined) => {
        expect(ps, "peers").to.have.length.greaterThan(0);
        const out: string[] = [];
        for (const peer of ps!) {
          // Pod selectors only (the policy's own namespace): then the pod list is the whole answer.
          expect(peer.namespaceSelector).to.equal(undefined);
          expect(peer.ipBlock).to.equal(undefined);
          out.push(...(await list(selectorString(peer.podSelector!))));
        }
        return out.sort();
      };
      const policies = (
        await kp!.net.listNamespacedNetworkPolicy({
          namespace: NS,
          labelSelector: "app.kubernetes.io/part-of=guestbook",
        })
      ).items;
      const egress = policies.filter((p) => p.spec?.policyTypes?.includes("Egress"));
      const ingress = policies.filter((p) => p.spec?.policyTypes?.includes("Ingress"));
      expect(egress).to.have.length(1);
      expect(ingress).to.have.length(1);
      const out = egress[0]!.spec!;
      expect(await list(selectorString(out.podSelector!))).to.deep.equal(functions);
      expect(await peers(out.egress?.[0]?.to)).to.deep.equal(redisPods);
      expect(ports(out.egress?.[0]?.ports)).to.deep.equal(["TCP/6379"]);
      const into = ingress[0]!.spec!;
      expect(await list(selectorString(into.podSelector!))).to.deep.equal(redisPods);
      expect(await peers(into.ingress?.[0]?._from)).to.deep.equal(functions);
      expect(ports(into.ingress?.[0]?.ports)).to.deep.equal(["TCP/6379"]);
      for (const outsider of [...attacker, ...warm]) expect(functions).to.not.include(outsider);
    });
  });
});

/** A label selector as the API server takes it in `labelSelector` (the same semantics). */
function selectorString(sel: V1LabelSelector): string {
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions ?? []) {
    const values = `(${(e.values ?? []).join(",")})`;
    if (e.operator === "In") parts.push(`${e.key} in ${values}`);
    else if (e.operator === "NotIn") parts.push(`${e.key} notin ${values}`);
    else if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
    else throw new Error(`unknown selector operator ${e.operator}`);
  }
  return parts.join(",");
}

function ports(ps: V1NetworkPolicyPort[] | undefined): string[] {
  return (ps ?? []).map((p) => `${p.protocol}/${String(p.port)}`);
}

function post(url: string, text: string): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ text }).toString(),
    redirect: "manual",
    signal: AbortSignal.timeout(60_000),
  });
}

/** The text of each `<li>` of the page (entities decoded); throws on markup inside one. */
function listed(page: string): string[] {
  return [...page.matchAll(/<li>([^]*?)<\/li>/g)].map((m) => {
    const inner = m[1]!;
    if (/[<>]/.test(inner)) throw new Error(`markup in an entry: ${inner}`);
    return inner.replace(/&(#x[0-9a-f]+|#\d+|lt|gt|amp|quot|apos);/gi, (_, e: string) => {
      const named: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
      if (e[0] !== "#") return named[e.toLowerCase()]!;
      const hex = e[1] === "x" || e[1] === "X";
      return String.fromCodePoint(hex ? parseInt(e.slice(2), 16) : Number(e.slice(1)));
    });
  });
}
