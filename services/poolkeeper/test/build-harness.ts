import { createWriteStream } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { jetstream } from "@nats-io/jetstream";
import {
  ARCHIVE_MAX_BYTES,
  Codecs,
  subjects,
  type ArchiveRef,
  type BuildReport,
  type Environment,
  type EnvironmentSpec,
} from "@fizz/events";
import {
  connectNats,
  serve,
  silentLogger,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";
import { extractArchive, packDirectory } from "@fizz/kit/archive";
import { openArchiveStore, type ArchiveStore } from "@fizz/kit/archive-store";
import { startNats, waitFor, type TestServer } from "@fizz/testkit";
import { ProcessBuildRunner, startBuilds, type Builds } from "../src/build/index";
import { loadConfig } from "../src/config";
import { ensureBuildQueue } from "../src/build/queue";
import { environment } from "./harness";

/**
 * Real nats-server with JetStream, the real archive store, a builder with the process backend's
 * isolation (as root: its own uid), and the test playing the registry: it answers build reports
 * on the real subject and publishes build requests on the real stream.
 */
export class BuildHarness {
  nats!: TestServer;
  nc!: NatsConnection;
  store!: ArchiveStore;
  dir!: string;
  builds: Builds | undefined;
  readonly s = subjects();
  readonly environments = new Map<string, Environment>();
  readonly reports: BuildReport[] = [];
  /** What the test registry answers (`applied`), per package name; true when absent. */
  readonly applied = new Map<string, boolean>();
  private responder: Subscription | undefined;
  private revision = 0;
  private extracted = 0;

  async setUp(): Promise<void> {
    this.nats = await startNats();
    this.dir = await mkdtemp(path.join(tmpdir(), "fizz-build-"));
    this.nc = await connectNats({ url: this.nats.url, name: "test", logger: silentLogger() });
    this.store = await openArchiveStore(this.nc);
    this.answerReports();
    await ensureBuildQueue(this.nc, this.s);
  }

  /** The registry's side of registryBuildReport; stop it to play a registry that is away. */
  answerReports(): void {
    this.responder = serve(
      this.nc,
      this.s.registryBuildReport,
      Codecs.registryBuildReport,
      (r) => {
        this.reports.push(r);
        return Promise.resolve({ applied: this.applied.get(r.package.name) ?? true });
      },
      { sender: "registry-test", logger: silentLogger() },
    );
  }

  stopAnswering(): void {
    this.responder?.unsubscribe();
    this.responder = undefined;
  }

  async startBuilder(concurrency = 1): Promise<Builds> {
    // The isolation, interpreter and base environment the poolkeeper would use here.
    const config = loadConfig({ FIZZ_WORKDIR: path.join(this.dir, "work") });
    const dir = path.join(this.dir, "builds");
    const logger = silentLogger();
    this.builds = await startBuilds({
      nc: this.nc,
      subjects: this.s,
      sender: "poolkeeper-test",
      logger,
      concurrency,
      dir,
      runner: new ProcessBuildRunner({
        dir,
        isolation: config.isolation,
        python: config.python,
        runtimesDir: config.runtimesDir,
        go: config.build.go,
        goEnv: config.build.goEnv,
        killGraceMs: 500,
        baseEnv: config.instanceEnv,
        logger,
      }),
      lookupEnvironment: (ref) => Promise.resolve(this.environments.get(ref.name)),
    });
    await this.builds.ready;
    return this.builds;
  }

  addEnvironment(
    name: string,
    image: string,
    builder?: Partial<NonNullable<EnvironmentSpec["builder"]>>,
  ): void {
    const env = environment(name, image, 0);
    if (builder)
      env.spec.builder = { timeoutSeconds: 300, maxDeploymentBytes: ARCHIVE_MAX_BYTES, ...builder };
    this.environments.set(name, env);
  }

  /** Files (path -> content) packed as a canonical source archive and stored. */
  async upload(files: Record<string, string>): Promise<ArchiveRef> {
    const src = await mkdtemp(path.join(this.dir, "src-"));
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(src, name)), { recursive: true });
      await writeFile(path.join(src, name), content);
      if (name.endsWith(".sh")) await chmod(path.join(src, name), 0o755);
    }
    const out = path.join(this.dir, `${path.basename(src)}.tar.gz`);
    const packed = await packDirectory(src, out);
    const stored = await this.store.putFile(out);
    return { ...stored, files: packed.files };
  }

  /** Publishes a build request the way the registry does; returns the revision asked for. */
  async requestBuild(
    pkg: string,
    envName: string,
    source: ArchiveRef,
    buildCommand?: string,
  ): Promise<number> {
    const revision = ++this.revision;
    await jetstream(this.nc).publish(
      this.s.buildRequested,
      Codecs.buildRequested.encode(
        {
          package: { namespace: "default", name: pkg, revision },
          environment: { namespace: "default", name: envName },
          source,
          ...(buildCommand !== undefined ? { buildCommand } : {}),
        },
        "registry-test",
      ),
      { msgID: `default/${pkg}/${source.digest}/${revision}` },
    );
    return revision;
  }

  /** The final report (succeeded or failed) of a package's build. */
  async finalReport(pkg: string, timeoutMs = 120_000): Promise<BuildReport> {
    let found: BuildReport | undefined;
    await waitFor(
      () =>
        (found = this.reports.find((r) => r.package.name === pkg && r.state !== "running")) !==
        undefined,
      { timeoutMs, what: `the final build report of ${pkg}` },
    );
    return found!;
  }

  /** The deployment extracted into a fresh directory. */
  async deployment(ref: ArchiveRef): Promise<string> {
    const n = ++this.extracted;
    const file = path.join(this.dir, `deployment-${n}.tar.gz`);
    const src = await this.store.get(ref.digest);
    if (!src) throw new Error(`${ref.digest} is not in the store`);
    await pipeline(src, createWriteStream(file));
    const dir = path.join(this.dir, `deployment-${n}`);
    await extractArchive({ path: file }, dir);
    return dir;
  }

  async stopBuilder(): Promise<void> {
    await this.builds?.stop();
    this.builds = undefined;
  }

  async tearDown(): Promise<void> {
    await this.stopBuilder();
    await this.nc?.close();
    await this.nats?.cleanup();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
