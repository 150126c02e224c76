import { createHash } from "node:crypto";
import { Codecs, type Invocation, type Subjects, type WatchTrigger } from "@fizz/events";
import { publishInvocation, retryUntil, tracer, type Logger } from "@fizz/kit";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { ResolvedResource } from "./discovery";
import type { KubeObject } from "./kube-client";

export type EventType = "ADDED" | "MODIFIED" | "DELETED";

/** One Kubernetes event, about to be handed to the triggers watching it. */
export interface KubeEvent {
  type: EventType;
  object: KubeObject;
  resource: ResolvedResource;
}

const MAX_CALL_ID = 128;
/** Room left in a NATS message for the envelope and headers around the body. */
const ENVELOPE_SLACK = 4096;

/**
 * `watch:<ns>:<trigger>:<uid>:<resourceVersion>:<type>`: the same event for the same trigger always
 * gets the same id, so a re-publish after a crash or a failover is dropped by JetStream's duplicate
 * window, and a function can deduplicate beyond it. Over 128 characters (long names), the
 * namespace and trigger become a hash of both.
 */
export function callIdOf(trigger: WatchTrigger, ev: KubeEvent): string {
  const { namespace, name } = trigger.metadata;
  const uid = ev.object.metadata?.uid ?? "";
  const rv = ev.object.metadata?.resourceVersion ?? "";
  const id = `watch:${namespace}:${name}:${uid}:${rv}:${ev.type}`;
  if (id.length <= MAX_CALL_ID) return id;
  const h = createHash("sha256").update(`${namespace}/${name}`).digest("hex").slice(0, 24);
  return `watch:${h}:${uid}:${rv}:${ev.type}`.slice(0, MAX_CALL_ID);
}

/** The invocation a trigger's function receives for an event, headers as Fission sends them. */
export function invocationOf(
  trigger: WatchTrigger,
  ev: KubeEvent,
  now: number,
  truncated = false,
): Invocation {
  const obj = truncated
    ? minimalObject(ev.object, ev.resource)
    : withTypeMeta(ev.object, ev.resource);
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "X-Kubernetes-Event-Type": ev.type,
    "X-Kubernetes-Object-Type": ev.resource.kind,
    "X-Kubernetes-Group": ev.resource.group,
    "X-Kubernetes-Version": ev.resource.version,
    "X-Kubernetes-Resource": ev.resource.plural,
    "X-Kubernetes-Namespace": ev.object.metadata?.namespace ?? "",
    "X-Kubernetes-Name": ev.object.metadata?.name ?? "",
  };
  if (truncated) headers["X-Kubernetes-Object-Truncated"] = "true";
  return {
    callId: callIdOf(trigger, ev),
    namespace: trigger.metadata.namespace,
    function: trigger.spec.function,
    source: "watch",
    trigger: trigger.metadata.name,
    method: "POST",
    path: "/",
    headers,
    body: Buffer.from(JSON.stringify(obj)).toString("base64"),
    maxRetries: 3,
    createdAt: now,
  };
}

/** Objects from a list carry no apiVersion and kind; watch events do. The function gets both. */
export function withTypeMeta(obj: KubeObject, r: ResolvedResource): KubeObject {
  return { ...obj, apiVersion: obj.apiVersion ?? r.apiVersion, kind: obj.kind ?? r.kind };
}

/** What is known of an object without its body: type and identity. */
export function minimalObject(obj: KubeObject, r: ResolvedResource): KubeObject {
  const m = obj.metadata ?? {};
  const metadata: Record<string, unknown> = {
    name: m.name,
    uid: m.uid,
    resourceVersion: m.resourceVersion,
  };
  if (m.namespace !== undefined) metadata.namespace = m.namespace;
  return { apiVersion: r.apiVersion, kind: r.kind, metadata };
}

export interface PublisherOptions {
  js: () => JetStreamClient | undefined;
  subjects: Subjects;
  sender: string;
  logger: Logger;
  /** The server's max_payload; larger invocations carry the object's identity only. */
  maxPayload: () => number;
  onPublished(type: EventType): void;
  onRetry(): void;
}

/**
 * Publishes an event's invocation for one trigger and waits for JetStream's acknowledgement,
 * retrying with back-off (NATS away, JetStream not ready) until it is stored or `signal` aborts —
 * the caller advances its resume point only after this returns, which is what makes delivery
 * at least once.
 */
export class Publisher {
  private readonly log: Logger;

  constructor(private readonly opts: PublisherOptions) {
    this.log = opts.logger.child({ component: "publisher" });
  }

  async publish(trigger: WatchTrigger, ev: KubeEvent, signal: AbortSignal): Promise<void> {
    let inv = invocationOf(trigger, ev, Date.now());
    const size = Codecs.invoke.encode(inv, this.opts.sender).length;
    if (size > this.opts.maxPayload() - ENVELOPE_SLACK) {
      this.log.warn(
        { trigger: trigger.metadata.name, object: ev.object.metadata?.name, bytes: size },
        "object too large for one message; the function gets its identity only",
      );
      inv = invocationOf(trigger, ev, inv.createdAt, true);
    }
    // Until stored or stopped (RetryStopped): the resume point must not pass an unstored event.
    await retryUntil(
      async () => {
        const js = this.opts.js();
        if (!js) throw new Error("JetStream is not ready");
        // Each event starts a trace; the invoker's delivery and the function continue it.
        const span = tracer().startSpan("watch.event", "producer", undefined, {
          "fizz.function": `${inv.namespace}/${inv.function}`,
          "fizz.trigger": trigger.metadata.name,
          "fizz.call_id": inv.callId,
        });
        try {
          await publishInvocation(js, this.opts.subjects, inv, this.opts.sender, span.context);
        } catch (err) {
          span.fail(err instanceof Error ? err.message : String(err));
          throw err;
        } finally {
          span.end();
        }
      },
      {
        baseMs: 200,
        maxMs: 5_000,
        signal,
        onRetry: ({ err, waitMs }) => {
          this.opts.onRetry();
          this.log.warn(
            {
              callId: inv.callId,
              err: err instanceof Error ? err.message : String(err),
              retryInMs: waitMs,
            },
            "could not publish an invocation; retrying",
          );
        },
      },
    );
    this.opts.onPublished(ev.type);
  }
}
