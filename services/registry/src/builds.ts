import {
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
} from "@nats-io/jetstream";
import {
  BUILD_STREAM,
  Codecs,
  type BuildRequest,
  type PackageObject,
  type Subjects,
} from "@fizz/events";
import type { NatsConnection } from "@fizz/kit";

/**
 * The build queue: JetStream stream FIZZ_BUILDS (BUILD_STREAM: work-queue retention, so a request
 * lives until a builder acknowledges it and none is lost while no builder runs; file storage, so a
 * nats-server restart loses none). The registry owns its settings: it creates or updates it at
 * every start; a builder that starts first creates it from the same shared settings and never
 * updates it. A request older than MAX_AGE is dropped: the registry asks again for every package
 * still pending at its next start, and a user can POST .../rebuild.
 */
export const BUILDS_STREAM = BUILD_STREAM.name;
const MAX_AGE_MS = 24 * 3600 * 1000;
const NS = 1_000_000; // JetStream durations are nanoseconds.

export interface BuildQueue {
  /** Stores the request in FIZZ_BUILDS (resolves on the stream's acknowledgement). */
  request(pkg: PackageObject): Promise<void>;
}

export async function ensureBuildStream(nc: NatsConnection, s: Subjects): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const config = {
    name: BUILDS_STREAM,
    subjects: [s.buildRequested],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    max_age: MAX_AGE_MS * NS,
    duplicate_window: BUILD_STREAM.duplicateWindowMs * NS,
  };
  try {
    await jsm.streams.add(config);
  } catch (err) {
    // It exists (an earlier start, or a builder that came first): bring it to these settings.
    if (!/already in use|exists/i.test(String((err as Error).message))) throw err;
    await jsm.streams.update(BUILDS_STREAM, config);
  }
}

/** `<ns>/<name>/<sourceDigest>/<revision>`: a re-publish of one request is stored once. */
export function buildMsgId(pkg: PackageObject, sourceDigest: string): string {
  const { namespace, name } = pkg.metadata;
  return `${namespace}/${name}/${sourceDigest}/${buildRevisionOf(pkg)}`;
}

/** The revision that asked for the package's current build (status writes bump the revision). */
export function buildRevisionOf(pkg: PackageObject): number {
  return pkg.status.buildRevision ?? pkg.metadata.revision;
}

export function buildRequestOf(pkg: PackageObject): BuildRequest | undefined {
  const source = pkg.spec.source;
  if (!source) return undefined;
  const { namespace, name } = pkg.metadata;
  return {
    package: { namespace, name, revision: buildRevisionOf(pkg) },
    environment: { namespace, name: pkg.spec.environment },
    source,
    ...(pkg.spec.buildCommand !== undefined ? { buildCommand: pkg.spec.buildCommand } : {}),
  };
}

export function jetStreamBuildQueue(
  nc: NatsConnection,
  s: Subjects,
  sender: string,
  js: JetStreamClient = jetstream(nc),
): BuildQueue {
  return {
    async request(pkg) {
      const req = buildRequestOf(pkg);
      if (!req) return;
      await js.publish(s.buildRequested, Codecs.buildRequested.encode(req, sender), {
        msgID: buildMsgId(pkg, req.source.digest),
      });
    },
  };
}
