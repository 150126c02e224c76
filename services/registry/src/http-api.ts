import express, { type NextFunction, type Request, type Response } from "express";
import { FizzError, errorBody } from "@fizz/events";
import { handleOps, type Logger, type ReadinessChecks } from "@fizz/kit";
import {
  Authenticator,
  adminOnly,
  challengeOf,
  jsonBodiesOnly,
  originPolicy,
  type AuthConfig,
} from "./auth";
import { downloadPackageArchive, uploadArchive } from "./archives-http";
import { consoleApi, type ConsoleOptions } from "./console-api";
import { consoleStatic, sameOrigin } from "./console-http";
import { listBodyJson, listJson, type ListBounds } from "./list-params";
import type { FunctionLogs } from "./logs-http";
import { httpMetrics, rememberKind, type RegistryMetrics } from "./metrics";
import type { Operations } from "./operations";

/**
 * The REST API of docs/api.md. Handlers only translate HTTP to Operations; every error, including
 * the body parser's, leaves through `sendError` as `{ error: { code, message, field, retryable } }`.
 */
export interface HttpApiOptions {
  /** Undefined until the service is connected; requests before that answer 503. */
  ops: () => Operations | undefined;
  checks: ReadinessChecks;
  metrics: RegistryMetrics;
  logger: Logger;
  /** The JSON body limit in bytes: it must fit base64 of the largest allowed code. */
  bodyLimitBytes: number;
  auth: AuthConfig;
  /** Where archive uploads are spooled (FIZZ_REGISTRY_WORKDIR). */
  workDir: string;
  /** FIZZ_ARCHIVE_MAX_BYTES. */
  archiveMaxBytes: number;
  /** FIZZ_LIST_PAGE_MAX_BYTES and FIZZ_LIST_ALL_MAX_BYTES (list-params.ts). */
  listBounds: ListBounds;
  /** GET …/functions/{name}/logs (logs-http.ts). */
  logs?: FunctionLogs;
  /** The web console: its files (no token) and its endpoints (console-api.ts). */
  console?: ConsoleOptions;
}

/** Probes must work without credentials (kubelet, the launcher); nothing else does. */
const OPEN_PATHS = new Set(["/healthz", "/readyz"]);

const BASE = "/v1/namespaces/:ns";

export function createApp(opts: HttpApiOptions): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.use(httpMetrics(opts.metrics));
  const authenticator = new Authenticator(opts.auth);
  const authenticate = authenticator.authenticate();
  const ops = (req: Request, res: Response, next: NextFunction): void => {
    if (!handleOps(req, res, opts.checks, opts.metrics.registry)) next();
  };
  app.use((req, res, next) => {
    if (OPEN_PATHS.has(req.path)) return ops(req, res, next);
    next();
  });
  // The console's static files need no token (the page asks for it); its API calls do.
  app.use("/console", consoleStatic(opts.console?.dir));
  // The console's own writes (invoke) come from the registry's origin; everything else as before.
  const cors = originPolicy(opts.auth.corsOrigins);
  const tokenRequired = !opts.auth.authDisabled;
  app.use((req, res, next) => (sameOrigin(req, tokenRequired) ? next() : cors(req, res, next)));
  app.use((req, res, next) => {
    if (req.path === "/metrics" && opts.auth.metricsPublic) return ops(req, res, next);
    authenticate(req, res, next);
  });
  app.use(ops);
  app.param("kind", rememberKind);
  // Before the JSON-only guard: its body is the raw archive, with its own content-type rule.
  app.post(
    `${BASE}/archives`,
    uploadArchive({
      ops: opts.ops,
      workDir: opts.workDir,
      maxBytes: opts.archiveMaxBytes,
      logger: opts.logger,
    }),
  );
  app.use(jsonBodiesOnly());
  app.use(express.json({ limit: opts.bodyLimitBytes, type: "application/json", strict: true }));
  app.use((req, _res, next) => {
    // An empty body is an empty object, so a bare POST is told which field is missing.
    req.body ??= {};
    next();
  });

  const operations = (): Operations => {
    const o = opts.ops();
    if (!o)
      throw new FizzError("UNAVAILABLE", "the registry is starting (not connected to NATS yet)", {
        retryable: true,
      });
    return o;
  };
  const p = (req: Request, name: string): string => String(req.params[name] ?? "");

  if (opts.console) consoleApi(app, opts.console, operations);
  if (opts.logs) app.get(`${BASE}/functions/:name/logs`, opts.logs.handler(operations));
  app.get(`${BASE}/functions/:name/code`, adminOnly("downloading code"), async (req, res) => {
    const code = await operations().code(p(req, "ns"), p(req, "name"));
    res.attachment(code.filename);
    res.set({ "content-type": "application/octet-stream", "x-fizz-code-digest": code.digest });
    res.status(200).send(code.bytes);
  });
  // Sources often embed secrets, like code: admin only.
  app.get(
    `${BASE}/packages/:name/source`,
    adminOnly("downloading a package's source"),
    downloadPackageArchive(opts.ops, "source"),
  );
  app.get(
    `${BASE}/packages/:name/deployment`,
    adminOnly("downloading a package's deployment"),
    downloadPackageArchive(opts.ops, "deployment"),
  );
  app.post(`${BASE}/packages/:name/rebuild`, async (req, res) => {
    res.status(202).json({ package: await operations().rebuild(p(req, "ns"), p(req, "name")) });
  });
  // `?limit=&continue=` pages (list-params.ts), each up to FIZZ_LIST_PAGE_MAX_BYTES of objects;
  // without either, every object up to FIZZ_LIST_ALL_MAX_BYTES (LIST_TOO_LARGE past it). The
  // objects' JSON is spliced into the body (what res.json gave for them, byte for byte).
  app.get(`${BASE}/:kind`, async (req, res) => {
    const q = (name: string) => (name in req.query ? req.query[name] : undefined);
    const page = await listJson(
      operations().store,
      p(req, "kind"),
      p(req, "ns"),
      { limit: q("limit"), continue: q("continue") },
      opts.listBounds,
    );
    res.set("content-type", "application/json");
    res.status(200).send(listBodyJson(page.items, undefined, page.continue));
  });
  app.post(`${BASE}/:kind`, async (req, res) => {
    res.status(201).json(await operations().create(p(req, "kind"), p(req, "ns"), req.body));
  });
  app.get(`${BASE}/:kind/:name`, async (req, res) => {
    res.status(200).json(await operations().get(p(req, "kind"), p(req, "ns"), p(req, "name")));
  });
  app.patch(`${BASE}/:kind/:name`, async (req, res) => {
    res
      .status(200)
      .json(await operations().patch(p(req, "kind"), p(req, "ns"), p(req, "name"), req.body));
  });
  app.delete(`${BASE}/:kind/:name`, async (req, res) => {
    res.status(200).json(await operations().delete(p(req, "kind"), p(req, "ns"), p(req, "name")));
  });

  app.use((req: Request) => {
    throw new FizzError("NOT_FOUND", `no such endpoint: ${req.method} ${req.path}`);
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    sendError(res, toFizzError(err), opts.logger);
  });
  return app;
}

interface BodyParserError {
  type?: string;
  status?: number;
  message?: string;
  limit?: number;
}

/** body-parser errors carry a `type`; everything else that is not a FizzError is our bug. */
export function toFizzError(err: unknown): FizzError {
  if (err instanceof FizzError) return err;
  const e = (typeof err === "object" && err !== null ? err : {}) as BodyParserError;
  switch (e.type) {
    case "entity.too.large":
      return new FizzError(
        "PAYLOAD_TOO_LARGE",
        `body is larger than the limit of ${e.limit ?? "?"} bytes`,
      );
    case "entity.parse.failed":
      return new FizzError("INVALID_BODY", `body is not valid JSON: ${e.message ?? "parse error"}`);
    case "charset.unsupported":
    case "encoding.unsupported":
    case "request.size.invalid":
    case "request.aborted":
      return new FizzError("INVALID_BODY", `body could not be read: ${e.message ?? e.type}`);
    case undefined:
    default:
      return FizzError.from(err);
  }
}

function sendError(res: Response, err: FizzError, logger: Logger): void {
  if (err.code === "INTERNAL") logger.error({ err, cause: err.cause }, "request failed");
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const challenge = challengeOf(err);
  if (challenge) res.set("www-authenticate", challenge);
  res.status(err.status).json(errorBody(err));
}
