import type { Redis } from "ioredis";
import { FizzError } from "@fizz/events";

/**
 * One page's reads from the list index, in Redis (one script, one round trip, one snapshot): both
 * sets' sizes, and when they agree, the page's members after the cursor and their stored texts.
 *
 * Why a script: read from the client (ZRANGEBYLEX, then MGET of 500 keys), a page left on the
 * registry's heap a command string and a key string per object, a reply array of 500 Buffer
 * objects and the members as 500 strings, all alive from the first reply to the answer. With the
 * registry's 1 MB young generation, scavenges ran while pages were in flight and promoted ~100 KB
 * of each page to the old generation, whose mark-compacts (11–45 ms pauses) landed on pages and
 * were the slowest of them. Here the texts come back concatenated in one bulk reply (one Buffer,
 * with their lengths), the members joined in another (names are DNS labels, so no newline), and a
 * page's objects only ever exist as short-lived views.
 *
 * KEYS: the kind's sorted set, the kind's set. ARGV: ZRANGEBYLEX min, max, the page size, and the
 * object key prefix (`<prefix>obj:<kind>:`; a member `<ns>NUL<name>` is the key `<ns>:<name>`
 * after it; the objects' keys are not declared, which a single Redis allows). A key holding
 * something that is not a string reads as missing, as MGET answers it.
 */
const PAGE_SCRIPT = `
local zc = redis.call('ZCARD', KEYS[1])
local sc = redis.call('SCARD', KEYS[2])
if zc ~= sc then return {zc, sc} end
local limit = tonumber(ARGV[3])
local names = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, limit + 1)
local n = math.min(#names, limit)
local lens, texts = {}, {}
for i = 1, n do
  local m = names[i]
  local at = string.find(m, '\\0', 1, true)
  local v = false
  if at then v = redis.pcall('GET', ARGV[4] .. string.sub(m, 1, at - 1) .. ':' .. string.sub(m, at + 1)) end
  if type(v) == 'string' then
    lens[i] = #v
    texts[#texts + 1] = v
  else
    lens[i] = -1
  end
end
local more = 0
if #names > n then more = 1 end
return {zc, sc, table.concat(names, '\\n', 1, n), lens, table.concat(texts), more}
`;

export interface IndexPage {
  zcard: number;
  scard: number;
  /** The page's members (`<ns>NUL<name>`), in order; empty when the sizes differ. */
  members: string[];
  /** Each member's stored text (a view on one Buffer), or null: gone. Call in order, once each. */
  nextText: () => Buffer | null;
  /** Members follow the page. */
  more: boolean;
}

type Reply = [number, number, Buffer?, number[]?, Buffer?, number?];

export async function readIndexPage(
  client: Redis,
  sortedSet: string,
  kindSet: string,
  range: { min: string; max: string },
  limit: number,
  objPrefix: string,
): Promise<IndexPage> {
  let reply: Reply;
  try {
    reply = (await client.callBuffer(
      "EVAL",
      PAGE_SCRIPT,
      2,
      sortedSet,
      kindSet,
      range.min,
      range.max,
      limit,
      objPrefix,
    )) as Reply;
  } catch (err) {
    throw FizzError.from(err);
  }
  const [zcard, scard, names, lens = [], texts = Buffer.alloc(0), more = 0] = reply;
  const members = names && names.length > 0 ? names.toString("utf8").split("\n") : [];
  let i = 0;
  let at = 0;
  return {
    zcard,
    scard,
    members,
    nextText: () => {
      const len = lens[i++] ?? -1;
      if (len < 0) return null;
      const text = texts.subarray(at, at + len);
      at += len;
      return text;
    },
    more: more === 1,
  };
}
