import { z } from "zod";
import { dnsLabel } from "./names";
import { isValidSchedule } from "./schedule";

/** Specs of the triggers that are not HTTP routes: NATS subjects, timers, Kubernetes watches. */

const subjectToken = "[A-Za-z0-9_$-]+";
/** A NATS subject a trigger may listen on: plain tokens, `*` tokens, `>` last. */
export const listenSubject = z
  .string()
  .max(255)
  .regex(
    new RegExp(`^(${subjectToken}|\\*)(\\.(${subjectToken}|\\*))*(\\.>)?$|^>$`),
    "must be a NATS subject: dot-separated tokens, '*' for one token, '>' only last",
  );
/** A subject to publish to: no wildcards. */
export const publishSubject = z
  .string()
  .max(255)
  .regex(
    new RegExp(`^${subjectToken}(\\.${subjectToken})*$`),
    "must be a NATS subject without wildcards",
  );

export const MessageQueueTriggerSpec = z
  .object({
    function: dnsLabel,
    subject: listenSubject,
    /** Replicas in one queue group share the messages; default `fizz-mqt-<ns>-<name>`. */
    queueGroup: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/)
      .max(128)
      .optional(),
    responseSubject: publishSubject.optional(),
    errorSubject: publishSubject.optional(),
    maxRetries: z.number().int().min(0).max(100).default(3),
    contentType: z.string().min(1).max(255).default("application/json"),
    /**
     * With a stream, at least once through JetStream (durable consumer, ack after success, NAK with
     * back-off, dead letter after maxRetries); without, core NATS: at most once, lowest latency.
     */
    stream: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, "must be a JetStream stream name (letters, digits, '_', '-')")
      .max(64)
      .optional(),
  })
  .strict();
export type MessageQueueTriggerSpec = z.infer<typeof MessageQueueTriggerSpec>;

export const TimeTriggerSpec = z
  .object({
    function: dnsLabel,
    cron: z
      .string()
      .min(1, "is required")
      .max(128)
      .refine(
        isValidSchedule,
        "must be a cron expression (5 or 6 fields), @hourly-style or @every <duration>",
      ),
    method: z.enum(["GET", "POST", "PUT", "PATCH", "DELETE"]).default("POST"),
    body: z.string().max(65536).optional(),
    contentType: z.string().min(1).max(255).default("application/json"),
  })
  .strict();
export type TimeTriggerSpec = z.infer<typeof TimeTriggerSpec>;

export const WATCH_EVENTS = ["ADDED", "MODIFIED", "DELETED"] as const;

export const WatchTriggerSpec = z
  .object({
    function: dnsLabel,
    /** The Kubernetes namespace watched; cluster scope only where the operator allows it. */
    namespace: dnsLabel,
    /** A resource the apiserver serves: `pods`, `services`, `deployments.apps`, `widgets.example.com`. */
    resource: z
      .string()
      .regex(
        /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
        "must be a resource like pods or deployments.apps",
      ),
    labels: z.string().max(1024).optional(),
    fields: z.string().max(1024).optional(),
    events: z
      .array(z.enum(WATCH_EVENTS))
      .min(1)
      .default([...WATCH_EVENTS]),
  })
  .strict();
export type WatchTriggerSpec = z.infer<typeof WatchTriggerSpec>;
