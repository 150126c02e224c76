import type { Redis } from "ioredis";
import { redisKeys } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { buildFunctionIndex, fnIndexBuiltKey } from "./function-index";
import { dropStaleMembers } from "./function-index-stale";
import { routeIndexBuiltKey, routeIndexKey, routeShape } from "./route-index";
import { listIndexBuild, listIndexBuiltKey, mgetAll } from "./store-list";
import type { Writes } from "./store-types";

/** Runs a body as one store transaction, its reads watched on `conn` (TxLanes.enqueue). */
type Transact = <T>(body: (conn: Redis) => Promise<{ writes: Writes; result: T }>) => Promise<T>;

/**
 * Store.buildRouteIndex: the list index, then the function index (its build pages the triggers
 * through the list index), then the route index, each built once per Redis and marked (every
 * registry since keeps them current with each write). Answers the triggers added to the route index.
 */
export async function buildIndexes(
  client: Redis,
  prefix: string,
  logger: Logger,
  transact: Transact,
): Promise<number> {
  const [routes, lists, fns] = await client.mget(
    routeIndexBuiltKey(prefix),
    listIndexBuiltKey(prefix),
    fnIndexBuiltKey(prefix),
  );
  if (lists === null)
    await transact(async (conn) => ({
      writes: await listIndexBuild(conn, prefix),
      result: undefined,
    }));
  // A build after an upgrade (its marker deleted) also drops the members an older replica left.
  if (fns === null) await dropStaleMembers(client, prefix, transact);
  await buildFunctionIndex(client, prefix, transact);
  if (routes !== null) return 0;
  return transact(async (conn) => {
    const claims = await storedRouteShapes(conn, prefix, logger);
    return {
      writes: {
        index: claims.map(({ member, shape }) => ({
          key: routeIndexKey(prefix, shape),
          add: member,
        })),
        marker: routeIndexBuiltKey(prefix),
      },
      result: claims.length,
    };
  });
}

/**
 * Every stored trigger's route shape, watched. A trigger the registry cannot read (written by a
 * newer registry, or behind its back) must not stop the build — it runs in the start-up tasks,
 * and the registry is not ready before they finish: its shape is taken from the JSON as it is
 * (a member is only a candidate), and one without even a route is left out, logged.
 */
async function storedRouteShapes(
  conn: Redis,
  prefix: string,
  logger: Logger,
): Promise<{ member: string; shape: string }[]> {
  const keys = redisKeys(prefix);
  const index = keys.kindIndex("httptriggers");
  const [, members] = await Promise.all([conn.watch(index), conn.smembers(index)]);
  if (members.length === 0) return [];
  const objKeys = members.map((m) => {
    const [ns = "", name = ""] = m.split("/");
    return keys.obj("httptriggers", ns, name);
  });
  const values = await mgetAll(conn, objKeys, true);
  const out: { member: string; shape: string }[] = [];
  values.forEach((raw, i) => {
    if (raw === null) return;
    const member = members[i] ?? "";
    let spec: unknown;
    try {
      spec = (JSON.parse(raw) as { spec?: unknown } | null)?.spec;
    } catch {
      spec = undefined;
    }
    const s = (typeof spec === "object" && spec !== null ? spec : {}) as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === "string" ? v : undefined);
    const [path, pathPrefix, host] = [str(s.path), str(s.prefix), str(s.host)];
    if (path === undefined && pathPrefix === undefined) {
      logger.error(
        { component: "store", trigger: member },
        "stored http trigger left out of the route index: no route can be read from it",
      );
      return;
    }
    const route = {
      ...(path !== undefined ? { path } : {}),
      ...(pathPrefix !== undefined ? { prefix: pathPrefix } : {}),
      ...(host !== undefined ? { host } : {}),
    };
    out.push({ member, shape: routeShape(route) });
  });
  return out;
}
