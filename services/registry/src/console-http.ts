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
 * host it asked. The token still decides; this only keeps the cross-site refusal of writes
 * (auth.ts originPolicy) from refusing the console's own POSTs. A page on another host, even one
 * rebound to this address, sends its own host as Origin and no token.
 */
export function sameOrigin(req: Request): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (origin === undefined || host === undefined) return false;
  try {
    const u = new URL(origin);
    return (u.protocol === "http:" || u.protocol === "https:") && u.host === host.toLowerCase();
  } catch {
    return false;
  }
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
  router.use((req, res) => {
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
    const type = TYPES[path.extname(file)];
    if (type) res.type(type);
    res.set(
      "cache-control",
      HASHED.test(file) ? "public, max-age=31536000, immutable" : "no-cache",
    );
    res.sendFile(
      file,
      { dotfiles: "deny", lastModified: true, etag: true, cacheControl: false },
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
