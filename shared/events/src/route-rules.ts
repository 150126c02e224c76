/**
 * What an HTTP trigger's path or prefix may be, decided in one place: the registry refuses a
 * route that breaks a rule, and the gateway skips (and logs) a stored route that breaks one, so a
 * route is either served as written or refused, never half-matched.
 *
 * A route is matched against the raw request path, segment by segment, so it must be something a
 * client can actually send: no control characters (raw or percent-encoded), no `.`/`..` segments
 * (clients resolve those before sending), valid percent-escapes, and `{name}` parameters only as
 * whole segments of an exact path, each name used once. And it must not claim the gateway's own
 * paths, which the gateway answers before any trigger: `/healthz`, `/readyz`, `/metrics`, and the
 * `/function/` and `/async-function/` spaces — in any letter case, so no look-alike route reads as
 * the platform's.
 */
export interface RouteProblem {
  field: "spec.path" | "spec.prefix";
  message: string;
}

/** The gateway's exact paths (main and ops port). */
export const GATEWAY_PATHS = ["/healthz", "/readyz", "/metrics"] as const;
/** The gateway's path spaces: everything under them is the gateway's. */
export const GATEWAY_SPACES = ["/function", "/async-function"] as const;

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,62}$/;
const CONTROL = /[\x00-\x1f\x7f]/;
/**
 * Characters a client sends as they are in a path (RFC 3986 pchar, plus `/`, and `{}` for
 * parameters): anything else (non-ASCII, a quote, `<`, `>`, a backslash, `^`, a backtick, `|`)
 * arrives percent-encoded, so a route holding it raw would never match.
 */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%/{}]*$/;

export function routeProblem(spec: { path?: string; prefix?: string }): RouteProblem | undefined {
  if (spec.path !== undefined) return check(spec.path, "spec.path", false);
  if (spec.prefix !== undefined) return check(spec.prefix, "spec.prefix", true);
  return undefined;
}

function check(
  route: string,
  field: RouteProblem["field"],
  isPrefix: boolean,
): RouteProblem | undefined {
  const bad = (why: string): RouteProblem => ({
    field,
    message: `${field}: ${JSON.stringify(route)} ${why}`,
  });
  if (!route.startsWith("/")) return bad("must start with '/'");
  if (CONTROL.test(route)) return bad("must not contain control characters (NUL, newline, ...)");
  if (!PATH_CHARS.test(route)) {
    return bad(
      "holds characters clients always percent-encode (non-ASCII, '\"', '<', '>', '\\', '^', '`', '|'); write them as %XX",
    );
  }
  const names = new Set<string>();
  for (const segment of route.split("/").slice(1)) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return bad("has a malformed percent-escape ('%' must be followed by two hex digits)");
    }
    if (CONTROL.test(decoded)) return bad("must not contain encoded control characters");
    if (decoded === "." || decoded === "..") {
      return bad("must not contain '.' or '..' segments (clients resolve them before sending)");
    }
    if (!segment.includes("{") && !segment.includes("}")) continue;
    if (isPrefix) return bad("must not contain '{' or '}': a prefix takes no parameters");
    const name = /^\{([^{}]*)\}$/.exec(segment)?.[1];
    if (name === undefined) {
      return bad("has unbalanced '{' '}': a parameter is a whole segment, like /users/{id}");
    }
    if (!PARAM_NAME.test(name)) {
      return bad(
        `has a bad parameter name "${name}": letters, digits, '_' and '-', starting with a letter or '_'`,
      );
    }
    if (names.has(name)) return bad(`uses the parameter name "${name}" twice`);
    names.add(name);
  }
  const lower = route.toLowerCase();
  // `/api/` and `/api` claim the same requests; compare without the trailing slash.
  const key = lower.length > 1 ? lower.replace(/\/+$/, "") : lower;
  const owned =
    (GATEWAY_PATHS as readonly string[]).includes(key) ||
    GATEWAY_SPACES.some((space) => key === space || key.startsWith(`${space}/`));
  if (owned) {
    return bad(
      `is the gateway's own (${[...GATEWAY_PATHS, ...GATEWAY_SPACES.map((s) => `${s}/`)].join(", ")}); pick another ${isPrefix ? "prefix" : "path"}`,
    );
  }
  return undefined;
}

/** `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`. */
export function stripPort(host: string): string {
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    return close < 0 ? host : host.slice(0, close + 1);
  }
  const colon = host.indexOf(":");
  return colon < 0 ? host : host.slice(0, colon);
}

/**
 * The host a route is matched by, decided in one place: the gateway compares a trigger's host and
 * a request's Host header this way (letter case folded, port dropped: `A.example:8080` is
 * `a.example`), and the registry compares two triggers' hosts this way, so two triggers the
 * gateway would take for one route are refused as a conflict instead of both being stored.
 */
export function routeHost(host: string): string {
  return stripPort(host.toLowerCase());
}
