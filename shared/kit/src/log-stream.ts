import {
  DiscardPolicy,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { LOG_STREAM, type Subjects } from "@fizz/events";
import type { NatsConnection } from "./nats";

const NS = 1_000_000; // JetStream durations are nanoseconds.

/** Overrides of LOG_STREAM's limits (the poolkeeper's FIZZ_LOG_MAX_* settings). */
export interface LogStreamLimits {
  maxAgeMs?: number;
  maxBytes?: number;
  /** Lines kept per function (the stream's per-subject cap). */
  maxMsgsPerSubject?: number;
}

/**
 * Room for one line's message: the envelope and tags, plus the line JSON-escaped, where a control
 * byte (an ANSI colour's ESC) takes 6 bytes. A bigger message would not be stored at all.
 */
export const LOG_MAX_MSG_BYTES = LOG_STREAM.maxLineBytes * 6 + 4096;

/** FIZZ_LOGS as it should be: limits retention, oldest lines discarded first. */
export function logStreamConfig(subjects: Subjects, limits: LogStreamLimits = {}) {
  return {
    name: LOG_STREAM.name,
    subjects: [subjects.logsAll],
    retention: RetentionPolicy.Limits,
    storage: LOG_STREAM.storage === "file" ? StorageType.File : StorageType.Memory,
    discard: DiscardPolicy.Old,
    max_age: (limits.maxAgeMs ?? LOG_STREAM.maxAgeMs) * NS,
    max_bytes: limits.maxBytes ?? LOG_STREAM.maxBytes,
    max_msgs_per_subject: limits.maxMsgsPerSubject ?? LOG_STREAM.maxMsgsPerSubject,
    max_msg_size: LOG_MAX_MSG_BYTES,
    num_replicas: 1,
  } satisfies Partial<StreamConfig> & { name: string };
}

/**
 * Creates FIZZ_LOGS, or brings an existing one to these limits (a changed FIZZ_LOG_MAX_*). Lines
 * reach it by core NATS publishes on `<prefix>.logs.<ns>.<fn>`, which the stream captures: the
 * publisher never waits for JetStream. Idempotent and safe to race (several poolkeepers, a test).
 */
export async function ensureLogStream(
  nc: NatsConnection,
  subjects: Subjects,
  limits: LogStreamLimits = {},
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const want = logStreamConfig(subjects, limits);
  let current: Partial<StreamConfig> | undefined;
  try {
    current = (await jsm.streams.info(want.name)).config;
  } catch (err) {
    if (!/not found/i.test(String((err as Error).message))) throw err;
  }
  if (!current) {
    try {
      await jsm.streams.add(want);
      return;
    } catch (err) {
      // Another poolkeeper created it meanwhile: bring it to our limits below.
      if (!/already in use|exists/i.test(String((err as Error).message))) throw err;
      current = (await jsm.streams.info(want.name)).config;
    }
  }
  const same = (Object.keys(want) as Array<keyof typeof want>).every(
    (k) => JSON.stringify(current[k]) === JSON.stringify(want[k]),
  );
  if (!same) await jsm.streams.update(want.name, want);
}
