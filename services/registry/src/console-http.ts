import { realpath } from "node:fs/promises";
import path from "node:path";
import express, {
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from "express";

/**
 * The web console's static files under /console/ (FIZZ_CONSOLE_DIR, built by esbuild from
 * console/). They need no token: they hold no data, and the page asks for the token itself, then
 * sends it as a header on every API call. The headers below make the page refuse anything but its
 * own script, style and API: an injected string can neither load a script nor send data away.
 */
export const CONSOLE_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/** Content types by extension; anything else is not served (the build makes only these). */
const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
};

/** Built asset names carry their content hash (`app-<hash>.js`): cached for good. */
const HASHED = /-[A-Z0-9]{8,}\.(js|css)$/;

/**
 * The file a console URL path names inside `root`, or undefined when it names nothing servable:
 * a dot segment or dotfile, a backslash, a NUL, an encoded slash, or anything outside `root` once
 * resolved. `express.static` checks too; this is the rule written down, and tested on its own.
 */
export function resolveConsolePath(root: string, urlPath: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (/%2f|%5c/i.test(urlPath) || decoded.includes("\0") || decoded.includes("\\"))
    return undefined;
  const rel = decoded === "/" || decoded === "" ? "index.html" : decoded.replace(/^\//, "");
  const segments = rel.split("/");
  if (segments.some((s) => s === "" || s.startsWith("."))) return undefined;
  if (!(path.extname(rel) in TYPES)) return undefined;
  const base = path.resolve(root);
  const file = path.resolve(base, rel);
  if (!file.startsWith(base + path.sep)) return undefined;
  return file;
}

/**
 * A browser request from a page the registry itself served (the console): its Origin names the
 * host it asked, port included (a page on another port of this host is another origin). This only
 * keeps the cross-site refusal of writes (auth.ts originPolicy) from refusing the console's own
 * POSTs; the token still decides, and a page rebound by DNS to this address never has it.
 * `tokenRequired` false (FIZZ_AUTH_DISABLED): no token stands behind the rule, so a rebound page
 * (Origin and Host both its own name) must not pass; only hosts that no other site can take do
 * (an IP literal or localhost).
 */
export function sameOrigin(req: Request, tokenRequired: boolean): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (origin === undefined || host === undefined) return false;
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  if ((u.protocol !== "http:" && u.protocol !== "https:") || u.host !== host.toLowerCase())
    return false;
  return tokenRequired || isLiteralHost(u.hostname);
}

/** `127.0.0.1`, `[::1]`, `localhost`: names a DNS answer cannot point at another site's page. */
function isLiteralHost(hostname: string): boolean {
  return (
    hostname === "localhost" ||
    hostname.startsWith("[") ||
    /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}

function notFound(res: Response, why: string): void {
  res.status(404).type("text/plain; charset=utf-8").set("cache-control", "no-store").send(why);
}

/** Mounted at /console, before authentication. `dir` undefined: the console is off. */
export function consoleStatic(dir: string | undefined): RequestHandler {
  const router = express.Router({ strict: true });
  router.use((_req, res, next) => {
    res.set(CONSOLE_SECURITY_HEADERS);
    next();
  });
  // Resolved once: the directory itself may be a symlink (an image's /app/console, a checkout).
  let realRoot: Promise<string> | undefined;
  router.use(async (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.set("allow", "GET, HEAD").status(405).type("text/plain").send("method not allowed");
      return;
    }
    // /console → /console/, so the page's relative asset URLs resolve under /console/.
    if (req.originalUrl.split("?")[0] === "/console") return res.redirect(301, "/console/");
    if (dir === undefined)
      return notFound(res, "the console is not configured on this registry (FIZZ_CONSOLE_DIR)");
    const file = resolveConsolePath(dir, req.path);
    if (file === undefined) return notFound(res, "not found");
    // A symlink inside the directory must not serve what it points to outside it.
    realRoot ??= realpath(dir).catch(() => path.resolve(dir));
    const root = await realRoot;
    const real = await realpath(file).catch(() => undefined);
    if (real === undefined || !real.startsWith(root + path.sep)) return notFound(res, "not found");
    const type = TYPES[path.extname(file)];
    if (type) res.type(type);
    res.set(
      "cache-control",
      HASHED.test(file) ? "public, max-age=31536000, immutable" : "no-cache",
    );
    // Relative to `root`: the dotfile rule then looks only at names inside the console directory
    // (a checkout under ~/.local or a .fizz data directory still serves).
    res.sendFile(
      path.relative(root, real),
      { root, dotfiles: "deny", lastModified: true, etag: true, cacheControl: false },
      (err?: Error) => {
        if (!err) return;
        if (res.headersSent) return void res.destroy();
        notFound(res, "not found");
      },
    );
  });
  router.use((_err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    notFound(res, "not found");
  });
  return router;
}
