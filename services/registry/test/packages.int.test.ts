import { expect } from "chai";
import { AckPolicy, jetstream, jetstreamManager, type Consumer } from "@nats-io/jetstream";
import {
  BUILD_STREAM,
  Codecs,
  subjects,
  type ArchiveRef,
  type BuildReport,
  type BuildRequest,
  type RegistryChanged,
} from "@fizz/events";
import {
  connectNats,
  listen,
  request,
  silentLogger,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";
import { tarGz } from "../../../shared/kit/test/archive-builders";
import {
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  uploadArchive,
  type Running,
  type Stack,
} from "./helpers";

const s = subjects();

describe("registry packages and builds (real NATS)", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  let builds: Consumer;
  let events: RegistryChanged[];
  let sub: Subscription;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    nc = await connectNats({ url: stack.nats.url, name: "test-builder", logger: silentLogger() });
    // The builder's side of the queue: a durable pull consumer on FIZZ_BUILDS.
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(BUILD_STREAM.name, {
      durable_name: "test-builder",
      ack_policy: AckPolicy.Explicit,
    });
    builds = await jetstream(nc).consumers.get(BUILD_STREAM.name, "test-builder");
    events = [];
    sub = listen(nc, s.registryChangedAll, Codecs.registryChanged, (e) => void events.push(e), {
      logger: silentLogger(),
    });
    await reg.api.ns().create("environments", { name: "py", spec: { image: "fizz/env-python" } });
    await reg.api.ns().create("environments", { name: "node", spec: { image: "fizz/env-node" } });
  });
  after(async () => {
    sub?.unsubscribe();
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const ns = () => reg.api.ns();
  let n = 0;
  /** A fresh archive (its own digest) in the store. */
  const upload = async (): Promise<ArchiveRef> => {
    const res = await uploadArchive(
      reg.api,
      tarGz([{ name: "main.py", data: `def main():\n    return ${++n}\n` }]),
    );
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    return (res.body as unknown as { archive: ArchiveRef }).archive;
  };
  const nextBuild = async (): Promise<BuildRequest> => {
    const msg = await builds.next({ expires: 5000 });
    if (!msg) throw new Error("no build request on FIZZ_BUILDS");
    msg.ack();
    return Codecs.buildRequested.decode(msg.data).data;
  };
  const noBuild = async () => {
    const msg = await builds.next({ expires: 1000 });
    expect(msg, "unexpected build request").to.equal(null);
  };
  const report = (r: BuildReport) =>
    request(nc, s.registryBuildReport, Codecs.registryBuildReport, r, {
      sender: "test-builder",
      timeoutMs: 10_000,
    });
  const status = async (name: string) =>
    ((await ns().get("packages", name)).body as unknown as { status: Record<string, unknown> })
      .status;

  it("marks a package given a deployment succeeded at once, ignoring a client's status", async () => {
    const deployment = await upload();
    const res = await ns().create("packages", {
      name: "ready",
      spec: { environment: "py", deployment },
      status: { buildState: "failed" },
    });
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    expect(await status("ready")).to.deep.equal({
      buildState: "succeeded",
      deployment,
      buildLog: "",
    });
    await noBuild();
    const fn = await ns().create("functions", {
      name: "uses-ready",
      spec: { environment: "py", package: { name: "ready" } },
    });
    expect(fn.status, JSON.stringify(fn.body)).to.equal(201);
    expect(fn.body.spec.package).to.deep.equal({ name: "ready", deployment });
  });

  it("refuses archives that were never uploaded, unknown environments and packages", async () => {
    const missing = { digest: `sha256:${"0".repeat(64)}`, size: 1 };
    const res = await ns().create("packages", {
      name: "ghost",
      spec: { environment: "py", source: missing },
    });
    expect(res.status).to.equal(400);
    expect(res.body.error).to.include({ code: "VALIDATION_FAILED", field: "spec.source.digest" });
    expect(res.body.error.message).to.match(/not uploaded/);
    const noEnv = await ns().create("packages", {
      name: "ghost",
      spec: { environment: "nope", deployment: await upload() },
    });
    expect(noEnv.body.error.code).to.equal("UNKNOWN_ENVIRONMENT");
    const noPkg = await ns().create("functions", {
      name: "f",
      spec: { environment: "py", package: { name: "ghost" } },
    });
    expect(noPkg.body.error).to.include({ code: "UNKNOWN_PACKAGE", field: "spec.package.name" });
    const otherEnv = await ns().create("functions", {
      name: "f",
      spec: { environment: "node", package: { name: "ready" } },
    });
    expect(otherEnv.body.error).to.include({
      code: "VALIDATION_FAILED",
      field: "spec.package.name",
    });
    expect((await ns().get("packages", "ghost")).status).to.equal(404);
  });

  it("queues a build for a source, refuses functions until it succeeds, then rolls them before marking it succeeded", async () => {
    const source = await upload();
    const created = await ns().create("packages", {
      name: "app",
      spec: { environment: "py", source, buildCommand: "./build.sh" },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    expect(await status("app")).to.deep.include({
      buildState: "pending",
      sourceDigest: source.digest,
    });
    const req = await nextBuild();
    expect(req).to.deep.equal({
      package: { namespace: "default", name: "app", revision: 1 },
      environment: { namespace: "default", name: "py" },
      source,
      buildCommand: "./build.sh",
    });
    const early = await ns().create("functions", {
      name: "web",
      spec: { environment: "py", package: { name: "app" } },
    });
    expect(early.status).to.equal(409);
    expect(early.body.error.code).to.equal("PACKAGE_NOT_READY");
    expect(early.body.error.message).to.match(/pending/);

    expect(
      await report({ package: req.package, sourceDigest: source.digest, state: "running" }),
    ).to.deep.equal({ applied: true });
    expect(await status("app")).to.deep.include({ buildState: "running" });
    const first = await upload();
    expect(
      await report({
        package: req.package,
        sourceDigest: source.digest,
        state: "succeeded",
        deployment: first,
        log: "built",
      }),
    ).to.deep.equal({ applied: true });
    expect(await status("app")).to.deep.include({
      buildState: "succeeded",
      deployment: first,
      buildLog: "built",
    });
    const web = await ns().create("functions", {
      name: "web",
      spec: { environment: "py", package: { name: "app" } },
    });
    expect(web.body.spec.package).to.deep.equal({ name: "app", deployment: first });
    const webRevision = web.body.metadata.revision;

    // A new source: the function keeps running the first build until the second succeeds.
    const source2 = await upload();
    const patched = await ns().patch("packages", "app", { spec: { source: source2 } });
    expect(patched.status, JSON.stringify(patched.body)).to.equal(200);
    expect(await status("app")).to.deep.include({
      buildState: "pending",
      sourceDigest: source2.digest,
      deployment: first,
    });
    const req2 = await nextBuild();
    expect(req2.source).to.deep.equal(source2);
    expect((await ns().get("functions", "web")).body.spec.package).to.deep.equal({
      name: "app",
      deployment: first,
    });
    const second = await upload();
    events.length = 0;
    expect(
      await report({
        package: req2.package,
        sourceDigest: source2.digest,
        state: "succeeded",
        deployment: second,
      }),
    ).to.deep.equal({ applied: true });
    const fn = (await ns().get("functions", "web")).body;
    expect(fn.spec.package).to.deep.equal({ name: "app", deployment: second });
    expect(fn.metadata.revision).to.equal(webRevision + 1);
    // The function's update went out before the package said succeeded.
    const order = events.map((e) => {
      const st = (e.object as { status?: { buildState?: string } }).status;
      return `${e.kind}/${e.name}${st ? `:${st.buildState}` : ""}`;
    });
    expect(order).to.deep.equal(["functions/web", "packages/app:succeeded"]);
  });

  it("keeps the running deployment when a build fails, and ignores stale reports", async () => {
    const before = (await ns().get("functions", "web")).body;
    const running = (await status("app")).deployment as ArchiveRef;
    const source3 = await upload();
    await ns().patch("packages", "app", { spec: { source: source3 } });
    const req = await nextBuild();
    expect(
      await report({
        package: req.package,
        sourceDigest: source3.digest,
        state: "failed",
        message: "exit code 1",
        log: "npm ERR! something\n",
      }),
    ).to.deep.equal({ applied: true });
    expect(await status("app")).to.deep.include({
      buildState: "failed",
      sourceDigest: source3.digest,
      deployment: running,
      message: "exit code 1",
      buildLog: "npm ERR! something\n",
    });
    expect((await ns().get("functions", "web")).body).to.deep.equal(before);

    // A report for a source the package no longer has changes nothing.
    const pkgBefore = (await ns().get("packages", "app")).body;
    const stale = await report({
      package: req.package,
      sourceDigest: (await upload()).digest,
      state: "succeeded",
      deployment: await upload(),
    });
    expect(stale).to.deep.equal({ applied: false });
    const gone = await report({
      package: { namespace: "default", name: "nope", revision: 1 },
      sourceDigest: source3.digest,
      state: "running",
    });
    expect(gone).to.deep.equal({ applied: false });
    expect((await ns().get("packages", "app")).body).to.deep.equal(pkgBefore);
    expect((await ns().get("functions", "web")).body).to.deep.equal(before);
  });

  it("applies only reports of the build the package asked for last, and never reopens a finished one", async () => {
    const before = (await ns().get("functions", "web")).body;
    await ns().patch("packages", "app", { spec: { buildCommand: "echo a" } });
    const first = await nextBuild();
    await ns().patch("packages", "app", { spec: { buildCommand: "echo b" } });
    const second = await nextBuild();
    expect(second.buildCommand).to.equal("echo b");
    expect(second.package.revision).to.be.greaterThan(first.package.revision);
    // Same source, older build command: its success must not roll out.
    const old = await report({
      package: first.package,
      sourceDigest: first.source.digest,
      state: "succeeded",
      deployment: await upload(),
    });
    expect(old).to.deep.equal({ applied: false });
    expect(await status("app")).to.deep.include({
      buildState: "pending",
      buildRevision: second.package.revision,
    });
    expect((await ns().get("functions", "web")).body).to.deep.equal(before);

    const at = { package: second.package, sourceDigest: second.source.digest } as const;
    expect(await report({ ...at, state: "running" })).to.deep.equal({ applied: true });
    expect(await report({ ...at, state: "failed", message: "exit 2" })).to.deep.equal({
      applied: true,
    });
    // A redelivered request's reports come after the end: the failure stands.
    expect(await report({ ...at, state: "running" })).to.deep.equal({ applied: false });
    expect(await status("app")).to.deep.include({ buildState: "failed", message: "exit 2" });
  });

  it("rebuilds on request, and refuses to delete a package functions use", async () => {
    const res = await reg.api.call("POST", "/v1/namespaces/default/packages/app/rebuild");
    expect(res.status, JSON.stringify(res.body)).to.equal(202);
    const pkg = (res.body as unknown as { package: { status: { buildState: string } } }).package;
    expect(pkg.status.buildState).to.equal("pending");
    const req = await nextBuild();
    expect(req.package.name).to.equal("app");
    const noSource = await reg.api.call("POST", "/v1/namespaces/default/packages/ready/rebuild");
    expect(noSource.status).to.equal(400);

    const del = await ns().delete("packages", "app");
    expect(del.status).to.equal(409);
    expect(del.body.error.code).to.equal("IN_USE");
    expect(del.body.error.message).to.match(/functions "web"/);
    // Back to single-file code: the package is free.
    const toCode = await ns().patch("functions", "web", {
      spec: { code: fnBody("web", "py").spec.code },
    });
    expect(toCode.status, JSON.stringify(toCode.body)).to.equal(200);
    expect(toCode.body.spec.package).to.equal(undefined);
    expect((await ns().delete("packages", "app")).status).to.equal(200);
  });

  it("rolls functions to a package's new deployment before answering the patch", async () => {
    const d2 = await upload();
    await ns().patch("functions", "uses-ready", { spec: { maxInstances: 2 } });
    const res = await ns().patch("packages", "ready", { spec: { deployment: d2 } });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    expect((res.body as unknown as { status: Record<string, unknown> }).status).to.deep.include({
      buildState: "succeeded",
      deployment: d2,
    });
    expect((await ns().get("functions", "uses-ready")).body.spec.package).to.deep.equal({
      name: "ready",
      deployment: d2,
    });
  });

  it("asks again at start for a build whose request is no longer queued, once", async () => {
    const source = await upload();
    await ns().create("packages", { name: "later", spec: { environment: "py", source } });
    const first = await nextBuild();
    expect(
      await report({ package: first.package, sourceDigest: source.digest, state: "running" }),
    ).to.deep.equal({ applied: true });
    await noBuild();
    // The queue lost it (a builder that died holding it gets it back from JetStream; a wiped
    // stream does not): the registry's start asks again, for the same build.
    await reg.svc.stop();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(BUILD_STREAM.name);
    reg = await startRegistry(registryEnv(stack));
    await jsm.consumers.add(BUILD_STREAM.name, {
      durable_name: "test-builder",
      ack_policy: AckPolicy.Explicit,
    });
    builds = await jetstream(nc).consumers.get(BUILD_STREAM.name, "test-builder");
    const again = await nextBuild();
    // The revision that asked for it, not the one the `running` report wrote: the same request.
    expect(again.package).to.deep.equal(first.package);
    expect(again.source).to.deep.equal(source);
    // A second start within the duplicate window stores no second request.
    await reg.svc.stop();
    reg = await startRegistry(registryEnv(stack));
    await noBuild();
  });
});
