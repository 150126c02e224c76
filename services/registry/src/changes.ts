import type { AnyObject, KindPlural, ObjectsByPlural } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import type { ArchiveStore } from "@fizz/kit/archive-store";
import type { BuildQueue } from "./builds";
import type { Store, StoreReader } from "./store";

/**
 * The write path's types, apart from Operations itself, so the package lifecycle can use the
 * write path (PackageHost) without importing Operations, which constructs it.
 */
export type ChangeOp = "created" | "updated" | "deleted";
export interface Change {
  kind: KindPlural;
  op: ChangeOp;
  object: AnyObject;
}

/** Decides an update from the stored object; undefined writes nothing. */
export type Decide = (current: AnyObject, r: StoreReader) => Promise<AnyObject | undefined>;

/** What the package lifecycle needs of Operations. */
export interface PackageHost {
  readonly opts: { archives: ArchiveStore; builds: BuildQueue; logger?: Logger | undefined };
  readonly store: Store;
  readonly now: () => Date;
  commitUpdate<K extends KindPlural>(
    kind: K,
    ns: string,
    name: string,
    decide: Decide,
    opts?: { quiet?: boolean },
  ): Promise<ObjectsByPlural[K] | undefined>;
  emit(change: Change): Promise<void>;
}
