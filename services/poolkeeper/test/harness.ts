import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import {
  Codecs,
  FizzError,
  encodeError,
  natsPermissions,
  subjects,
  type Environment,
  type InstanceEventMessage,
  type LogLine,
  type SpecializeRequest,
} from "@fizz/events";
import { connectNats, request as natsRequest, silentLogger, type NatsConnection } from "@fizz/kit";
import { packDirectory } from "@fizz/kit/archive";
import { openArchiveStore, type ArchiveStore } from "@fizz/kit/archive-store";
import { startNats, type TestServer } from "@fizz/testkit";
import { expect } from "chai";
import { loadConfig, start, type Poolkeeper, type PoolkeeperDeps } from "../src/index";

const LOCKED_PASSWORD = "poolkeeper-test-password";

/**
 * A real nats-server (JetStream: the Object Store holds code and archives), a poolkeeper with the
 * process backend (real runtimes), and the test playing the registry: it answers registry.list /
 * registry.get from `environments` and publishes registry.changed events itself. No Redis: the
 * poolkeeper has none.
 */
export class Harness {
  nats!: TestServer;
  nc!: NatsConnection;
  store!: ArchiveStore;
  workDir!: string;
  pk!: Poolkeeper;
  readonly s = subjects();
  readonly environments = new Map<string, Environment>();
  readonly events: InstanceEventMessage[] = [];
  readonly logs: Array<{ subject: string; line: LogLine }> = [];
  /** What registry.config.read answers from, by `<namespace>/<name>`: base64 values per key. */
  readonly secrets = new Map<string, Record<string, string>>();
  readonly configmaps = new Map<string, Record<string, string>>();
  /** registry.config.read requests seen (names only: the test never logs values either). */
  readonly configReads: Array<{ namespace: string; secrets: string[]; configmaps: string[] }> = [];
  private registryAnswering = false;
  private locked = false;

  /**
   * `locked`: nats-server with the platform's users, the poolkeeper's permissions as
   * shared/events/src/permissions.ts gives them (startPoolkeeper then connects as `poolkeeper`),
   * and the test as an unrestricted user.
   */
  async setUp(opts: { locked?: boolean } = {}): Promise<void> {
    if (opts.locked) {
      const perms = natsPermissions().poolkeeper;
      this.nats = await startNats({
        users: [
          { user: "poolkeeper", password: LOCKED_PASSWORD, permissions: perms },
          { user: "test", password: LOCKED_PASSWORD },
        ],
      });
      this.locked = true;
    } else this.nats = await startNats();
    this.workDir = await mkdtemp(path.join(tmpdir(), "fizz-poolkeeper-"));
    const url = this.locked
      ? this.nats.url.replace("nats://", `nats://test:${LOCKED_PASSWORD}@`)
      : this.nats.url;
    this.nc = await connectNats({ url, name: "test", logger: silentLogger() });
    this.store = await openArchiveStore(this.nc);
    this.nc.subscribe(this.s.poolkeeperInstanceAll, {
      callback: (_e, m) => {
        this.events.push(Codecs.poolkeeperInstance.decode(m.data).data);
      },
    });
    this.nc.subscribe(`${this.s.prefix}.logs.>`, {
      callback: (_e, m) => {
        this.logs.push({ subject: m.subject, line: Codecs.logs.decode(m.data).data });
      },
    });
    await this.nc.flush();
  }

  async startPoolkeeper(
    extra: Record<string, string> = {},
    deps: Omit<PoolkeeperDeps, "logger"> = {},
  ): Promise<Poolkeeper> {
    const env: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("FIZZ_")) env[k] = v;
    const config = loadConfig({
      ...env,
      FIZZ_NATS_URL: this.nats.url,
      ...(this.locked ? { FIZZ_NATS_USER: "poolkeeper", FIZZ_NATS_PASSWORD: LOCKED_PASSWORD } : {}),
      FIZZ_WORKDIR: this.workDir,
      FIZZ_KILL_GRACE_MS: "2000",
      FIZZ_LOG_LEVEL: "silent",
      ...extra,
    });
    this.pk = await start(config, { logger: silentLogger(), ...deps });
    return this.pk;
  }

  /**
   * Starts answering registry.list, registry.get and registry.config.read, as the registry would
   * (MISSING_CONFIG naming the first secret or configmap it does not have).
   */
  answerRegistry(): void {
    if (this.registryAnswering) return;
    this.registryAnswering = true;
    this.nc.subscribe(this.s.registryList, {
      callback: (_e, m) => {
        const items = [...this.environments.values()];
        m.respond(Codecs.registryList.reply.encode({ items }, "registry-test"));
      },
    });
    this.nc.subscribe(this.s.registryConfigRead, {
      callback: (_e, m) => {
        const q = Codecs.registryConfigRead.request.decode(m.data).data;
        this.configReads.push(q);
        const pick = (kind: "secret" | "configmap", names: string[]) =>
          names.map((name) => {
            const data = (kind === "secret" ? this.secrets : this.configmaps).get(
              `${q.namespace}/${name}`,
            );
            if (!data)
              throw new FizzError(
                "MISSING_CONFIG",
                `${kind} ${q.namespace}/${name} does not exist`,
                { field: kind === "secret" ? "spec.secrets" : "spec.configmaps" },
              );
            return { name, data };
          });
        try {
          const reply = {
            secrets: pick("secret", q.secrets),
            configmaps: pick("configmap", q.configmaps),
          };
          m.respond(Codecs.registryConfigRead.reply.encode(reply, "registry-test"));
        } catch (err) {
          m.respond(encodeError(FizzError.from(err), "registry-test"));
        }
      },
    });
    this.nc.subscribe(this.s.registryGet, {
      callback: (_e, m) => {
        const q = Codecs.registryGet.request.decode(m.data).data;
        const obj = this.environments.get(q.name);
        m.respond(
          obj
            ? Codecs.registryGet.reply.encode({ object: obj }, "registry-test")
            : encodeError(
                new FizzError("NOT_FOUND", `environment ${q.name} not found`),
                "registry-test",
              ),
        );
      },
    });
  }

  /** Publishes registry.changed.environments like the registry after a write. */
  async changed(op: "created" | "updated" | "deleted", obj: Environment): Promise<void> {
    if (op === "deleted") this.environments.delete(obj.metadata.name);
    else this.environments.set(obj.metadata.name, obj);
    const { namespace, name, revision } = obj.metadata;
    this.nc.publish(
      this.s.registryChanged("environments"),
      Codecs.registryChanged.encode(
        { kind: "environments", op, namespace, name, revision, object: obj },
        "registry-test",
      ),
    );
    await this.nc.flush();
  }

  /** Stores a code blob the way the registry does (the Object Store, by digest); returns its CodeRef. */
  async putCode(filename: string, source: string) {
    const { digest, size } = await this.store.putStream(Readable.from([Buffer.from(source)]));
    return { filename, digest, size };
  }

  /** Stores `source` as `<name>.js` and asks the poolkeeper to specialize a node instance with it. */
  async specializeNode(name: string, source: string, req: Partial<SpecializeRequest> = {}) {
    const code = await this.putCode(`${name}.js`, source);
    return natsRequest(
      this.nc,
      this.s.poolkeeperSpecialize,
      Codecs.poolkeeperSpecialize,
      {
        environment: { namespace: "default", name: "node" },
        function: { namespace: "default", name, revision: 1 },
        code,
        concurrency: 1,
        ...req,
      },
      { sender: "test", timeoutMs: 30_000 },
    );
  }

  /** A directory as the registry stores a package: canonical tar.gz, in the Object Store. */
  async putPackage(files: Record<string, string>) {
    const dir = await mkdtemp(path.join(this.workDir, "pkg-"));
    try {
      for (const [name, content] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(dir, "src", name)), { recursive: true });
        await writeFile(path.join(dir, "src", name), content);
      }
      const out = path.join(dir, "package.tar.gz");
      const packed = await packDirectory(path.join(dir, "src"), out);
      const stored = await this.store.putFile(out);
      expect(stored.digest).to.equal(packed.digest);
      return { digest: stored.digest, size: stored.size };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async tearDown(): Promise<void> {
    await this.pk?.stop();
    await this.nc?.close();
    await this.nats?.cleanup();
    if (this.workDir) await rm(this.workDir, { recursive: true, force: true });
  }
}

export function environment(
  name: string,
  image: string,
  poolSize: number,
  revision = 1,
): Environment {
  return {
    apiVersion: "fizz.dev/v1",
    kind: "Environment",
    metadata: {
      namespace: "default",
      name,
      uid: `uid-${name}`,
      revision,
      labels: {},
      createdAt: "2024-01-01T00:00:00Z",
      updatedAt: "2024-01-01T00:00:00Z",
    },
    spec: { image, poolSize },
  };
}

export function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Live (not zombie) processes whose real uid is `uid`. */
export function liveOfUid(uid: number): number {
  let n = 0;
  for (const name of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, "latin1");
      if (new RegExp(`^Uid:\\s+${uid}\\s`, "m").test(status) && !/^State:\s+Z/m.test(status)) n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}
