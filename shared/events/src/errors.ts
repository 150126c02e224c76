/**
 * Typed errors shared by every service. A FizzError crosses the bus as `{code, message, field,
 * retryable}` and is rebuilt on receipt, so a gateway can act on a scheduler's NO_CAPACITY (queue
 * the request, then answer 429 TOO_MANY_REQUESTS) without knowing where it came from. The HTTP
 * status is derived from the code, in one table; NO_CAPACITY's own 503 is what a caller sees where
 * nothing stands in for it.
 */
export const ErrorCodes = {
  VALIDATION_FAILED: 400,
  /** An environment `command` (a host command on the process backend) without FIZZ_ALLOW_ENV_COMMAND. */
  ENV_COMMAND_DISABLED: 400,
  INVALID_NAME: 400,
  INVALID_BODY: 400,
  UNKNOWN_ENVIRONMENT: 400,
  UNKNOWN_FUNCTION: 400,
  UNKNOWN_IMAGE: 400,
  /** spec.package names a package that does not exist in the function's namespace. */
  UNKNOWN_PACKAGE: 400,
  /** A URL the platform would fetch for a user (X-Callback-Url) points at an internal address. */
  OUTBOUND_REFUSED: 400,
  MALFORMED_MESSAGE: 400,
  /** An uploaded archive breaks an extraction rule (traversal, escaping link, device, size, count, ratio); the message names the entry and the rule. */
  ARCHIVE_UNSAFE: 400,
  /** A list asked for without paging whose answer would pass the registry's bound; page it (limit, continue). */
  LIST_TOO_LARGE: 400,
  /** No bearer token, or one that matches no configured token. */
  UNAUTHENTICATED: 401,
  /** A valid token without the right (a read-only token writing), or a refused Origin. */
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  /**
   * The client was still sending its request body when the function's timeout passed: its upload,
   * not the function, was too slow (the instance is not counted as hung).
   */
  REQUEST_TIMEOUT: 408,
  NO_ROUTE: 404,
  ALREADY_EXISTS: 409,
  ROUTE_CONFLICT: 409,
  REVISION_CONFLICT: 409,
  IN_USE: 409,
  ALREADY_SPECIALIZED: 409,
  /** The package has no successful build (pending, running or failed), so nothing can run it. */
  PACKAGE_NOT_READY: 409,
  CODE_TOO_LARGE: 413,
  PAYLOAD_TOO_LARGE: 413,
  /** A request body that is not application/json (no cross-site "simple" requests). */
  UNSUPPORTED_MEDIA_TYPE: 415,
  MISDIRECTED: 421,
  TOO_MANY_REQUESTS: 429,
  INSTANCE_BUSY: 429,
  FUNCTION_LOAD_FAILED: 500,
  /** The code read from the store does not hash to its digest: tampered or corrupt, never served. */
  DIGEST_MISMATCH: 500,
  FUNCTION_ERROR: 500,
  /** A secret or configmap the function names does not exist; the message names it. */
  MISSING_CONFIG: 500,
  INTERNAL: 500,
  INSTANCE_FAILED: 502,
  UNAVAILABLE: 503,
  NO_CAPACITY: 503,
  NOT_SPECIALIZED: 503,
  TIMEOUT: 504,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Codes that are worth retrying as they are (the condition is expected to pass). */
const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "UNAVAILABLE",
  "NO_CAPACITY",
  "TIMEOUT",
  "INSTANCE_BUSY",
  "TOO_MANY_REQUESTS",
  "MISDIRECTED",
]);

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ErrorCodes, code);
}

export function httpStatusOf(code: ErrorCode): number {
  return ErrorCodes[code];
}

export interface WireError {
  code: ErrorCode;
  message: string;
  field?: string | undefined;
  retryable: boolean;
}

export interface FizzErrorOptions {
  field?: string | undefined;
  retryable?: boolean | undefined;
  cause?: unknown;
}

export class FizzError extends Error {
  override readonly name = "FizzError";
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, opts: FizzErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.field = opts.field;
    this.retryable = opts.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
  }

  get status(): number {
    return httpStatusOf(this.code);
  }

  toWire(): WireError {
    const wire: WireError = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.field !== undefined) wire.field = this.field;
    return wire;
  }

  /** Rebuilds an error received from the bus or an HTTP body; unknown codes become INTERNAL. */
  static fromWire(value: unknown): FizzError {
    if (typeof value !== "object" || value === null) {
      return new FizzError("INTERNAL", `malformed error: ${String(value)}`);
    }
    const v = value as Record<string, unknown>;
    const code = isErrorCode(v.code) ? v.code : "INTERNAL";
    const message = typeof v.message === "string" ? v.message : `error ${String(v.code)}`;
    return new FizzError(code, message, {
      field: typeof v.field === "string" ? v.field : undefined,
      retryable: typeof v.retryable === "boolean" ? v.retryable : undefined,
    });
  }

  /** Any thrown value as a FizzError, keeping the original as `cause`. */
  static from(err: unknown, fallback: ErrorCode = "INTERNAL"): FizzError {
    if (err instanceof FizzError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new FizzError(fallback, message, { cause: err });
  }
}

/** The JSON body every HTTP error answers with. */
export function errorBody(err: FizzError): { error: WireError } {
  return { error: err.toWire() };
}
