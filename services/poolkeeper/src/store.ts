import { FizzError } from "@fizz/events";
import type { NatsConnection } from "@fizz/kit";
import { openArchiveStore, type ArchiveStore } from "@fizz/kit/archive-store";
import type { BlobStore } from "./specialize-source";

/**
 * The Object Store, opened on first use and again after a failed open: start() does not wait for
 * JetStream (the pools fill without it), and a store that is away fails one specialization with
 * UNAVAILABLE instead of the whole service.
 */
export function lazyArchiveStore(nc: NatsConnection): BlobStore & {
  /**
   * Opens the store ahead of the first specialization (its JetStream requests to the platform's
   * NATS, and the client's code run once, were in the first cold start); never throws: a failed
   * open is tried again at first use, as before.
   */
  open(): Promise<boolean>;
} {
  let opening: Promise<ArchiveStore> | undefined;
  const store = (): Promise<ArchiveStore> => {
    opening ??= openArchiveStore(nc).catch((err: unknown) => {
      opening = undefined;
      throw new FizzError(
        "UNAVAILABLE",
        `the archive store (JetStream) is not available: ${(err as Error).message}`,
        { retryable: true, cause: err },
      );
    });
    return opening;
  };
  return {
    get: async (digest) => (await store()).get(digest),
    getBuffer: async (digest, maxBytes) => (await store()).getBuffer(digest, maxBytes),
    has: async (digest) => (await store()).has(digest),
    open: () =>
      store().then(
        () => true,
        () => false,
      ),
  };
}
