import { createHash, timingSafeEqual } from "node:crypto";
import type { NextFunction, Request, RequestHandler, Response } from "express";
import { FizzError } from "@fizz/events";
import { bool, optionalStr, type Env } from "@fizz/kit";

/**
 * Who may talk to the control API. The admin token may do everything; the read-only token may
 * list and get (not download code: code often embeds secrets). Only /healthz and /readyz are open.
 * A browser on any web page can reach a registry on localhost, so bodies must be JSON (a
 * cross-site form or text/plain POST is refused before it is parsed) and a non-GET request from
 * an Origin that is not configured is refused even when it carries a token.
 */
export interface AuthConfig {
  /** FIZZ_ADMIN_TOKEN; undefined only when auth is disabled. */
  adminToken: string | undefined;
  /** FIZZ_READ_TOKEN, optional. */
  readToken: string | undefined;
  /** FIZZ_AUTH_DISABLED=true: anyone may do anything. For unit and integration tests only. */
  authDisabled: boolean;
  /** FIZZ_CORS_ORIGINS, comma-separated exact origins; empty means no CORS headers at all. */
  corsOrigins: string[];
  /** FIZZ_METRICS_PUBLIC=true serves /metrics without a token (metrics name functions). */
  metricsPublic: boolean;
}

export const MIN_TOKEN_LENGTH = 16;
/** Visible ASCII only: a token must survive an HTTP header and a shell variable unchanged. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

function bad(name: string, why: string): FizzError {
  // Never the value: it is a secret, and this message reaches stderr.
  return new FizzError("VALIDATION_FAILED", `${name}: ${why}`, { field: name });
}

function token(env: Env, name: string): string | undefined {
  const v = optionalStr(env, name);
  if (v === undefined) return undefined;
  if (v.length < MIN_TOKEN_LENGTH)
    throw bad(name, `must be at least ${MIN_TOKEN_LENGTH} characters long`);
  if (!TOKEN_CHARS.test(v))
    throw bad(name, "must be visible ASCII characters only (no spaces or control characters)");
  return v;
}

export function loadAuthConfig(env: Env): AuthConfig {
  const authDisabled = bool(env, "FIZZ_AUTH_DISABLED", false);
  const adminToken = token(env, "FIZZ_ADMIN_TOKEN");
  const readToken = token(env, "FIZZ_READ_TOKEN");
  if (!authDisabled && adminToken === undefined)
    throw bad(
      "FIZZ_ADMIN_TOKEN",
      "is required (the registry refuses to run without authentication; " +
        "FIZZ_AUTH_DISABLED=true is for tests only)",
    );
  if (adminToken !== undefined && adminToken === readToken)
    throw bad("FIZZ_READ_TOKEN", "must differ from FIZZ_ADMIN_TOKEN");
  const corsOrigins = (optionalStr(env, "FIZZ_CORS_ORIGINS") ?? "")
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  for (const o of corsOrigins) {
    let parsed: URL;
    try {
      parsed = new URL(o);
    } catch {
      throw bad("FIZZ_CORS_ORIGINS", `"${o}" is not an origin like https://console.example.com`);
    }
    if (parsed.origin !== o)
      throw bad("FIZZ_CORS_ORIGINS", `"${o}" is not an origin (scheme://host[:port], no path)`);
  }
  return {
    adminToken,
    readToken,
    authDisabled,
    corsOrigins,
    metricsPublic: bool(env, "FIZZ_METRICS_PUBLIC", false),
  };
}

export type Role = "admin" | "read";

/** Digests have a fixed length, so timingSafeEqual leaks neither content nor length. */
const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

function matches(presented: Buffer, expected: Buffer | undefined): boolean {
  // Compare against something even when the token is not configured, to keep timing flat.
  return timingSafeEqual(presented, expected ?? ZERO) && expected !== undefined;
}
const ZERO = Buffer.alloc(32);

const READ_METHODS = new Set(["GET", "HEAD"]);

export class Authenticator {
  private readonly admin: Buffer | undefined;
  private readonly read: Buffer | undefined;

  constructor(private readonly config: AuthConfig) {
    this.admin = config.adminToken === undefined ? undefined : digest(config.adminToken);
    this.read = config.readToken === undefined ? undefined : digest(config.readToken);
  }

  /** The role of an Authorization header value; throws UNAUTHENTICATED. */
  roleOf(header: string | undefined): Role {
    if (this.config.authDisabled) return "admin";
    if (header === undefined || header === "")
      throw unauthenticated("the registry needs a token: send Authorization: Bearer <token>");
    const m = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
    if (!m) throw unauthenticated("the Authorization header must be: Bearer <token>");
    const presented = digest(m[1]!);
    const isAdmin = matches(presented, this.admin);
    const isRead = matches(presented, this.read);
    if (isAdmin) return "admin";
    if (isRead) return "read";
    throw unauthenticated("the token is not valid for this registry", "invalid_token");
  }

  /** Refuses anyone without a token, and a read-only token on anything but GET/HEAD. */
  authenticate(): RequestHandler {
    return (req: Request, res: Response, next: NextFunction) => {
      const role = this.roleOf(req.headers.authorization);
      if (role === "read" && !READ_METHODS.has(req.method))
        throw forbidden(`a read-only token cannot ${req.method}: use the admin token`);
      res.locals.role = role;
      next();
    };
  }
}

/** Route guard for what the read-only token must not see (function code). */
export function adminOnly(what: string): RequestHandler {
  return (_req: Request, res: Response, next: NextFunction) => {
    if (res.locals.role !== "admin") throw forbidden(`${what} needs the admin token`);
    next();
  };
}

function unauthenticated(message: string, error?: string): FizzError {
  return Object.assign(new FizzError("UNAUTHENTICATED", message, { field: "Authorization" }), {
    wwwAuthenticate: `Bearer realm="fizz"${error ? `, error="${error}"` : ""}`,
  });
}

function forbidden(message: string, field = "Authorization"): FizzError {
  return new FizzError("FORBIDDEN", message, { field });
}

/** The WWW-Authenticate challenge a 401 carries. */
export function challengeOf(err: FizzError): string | undefined {
  const w = (err as FizzError & { wwwAuthenticate?: unknown }).wwwAuthenticate;
  return typeof w === "string" ? w : undefined;
}

const CORS_METHODS = "GET, POST, PATCH, DELETE";
const CORS_HEADERS = "Authorization, Content-Type";

/**
 * CORS only for the configured origins; everything else gets no CORS headers (a browser then
 * hides the answer from the page), and a non-GET request from any other Origin is refused
 * outright, so a cross-site write cannot even reach the handlers.
 */
export function originPolicy(origins: readonly string[]): RequestHandler {
  const allowed = new Set(origins);
  return (req: Request, res: Response, next: NextFunction) => {
    const origin = req.headers.origin;
    if (origin === undefined) return next();
    if (!allowed.has(origin)) {
      if (READ_METHODS.has(req.method)) return next();
      throw forbidden(
        `requests from Origin ${JSON.stringify(origin)} are not allowed (FIZZ_CORS_ORIGINS)`,
        "Origin",
      );
    }
    res.vary("Origin");
    res.set("access-control-allow-origin", origin);
    if (req.method === "OPTIONS") {
      res.set({
        "access-control-allow-methods": CORS_METHODS,
        "access-control-allow-headers": CORS_HEADERS,
        "access-control-max-age": "600",
      });
      res.status(204).end();
      return;
    }
    next();
  };
}

/**
 * A body must be application/json. Browsers send text/plain, forms and multipart across sites
 * without a preflight; refusing them before parsing is what stops a page from writing here.
 */
export function jsonBodiesOnly(): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    const length = req.headers["content-length"];
    const hasBody =
      req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
    if (hasBody && req.is("application/json") !== "application/json")
      throw new FizzError(
        "UNSUPPORTED_MEDIA_TYPE",
        `Content-Type must be application/json, got ${JSON.stringify(req.headers["content-type"] ?? "")}`,
        { field: "Content-Type" },
      );
    next();
  };
}
