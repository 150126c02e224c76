/**
 * Errors the CLI knows how to report. Anything else that escapes a command is a bug and is
 * printed with its message too, but these carry the exact wording users see.
 */

/** A failure that is reported as one `Error: ...` line on stderr and exit status 1. */
export class CliError extends Error {
  override name = "CliError";
  /** A second line telling the user what state things are in or what to do next. */
  hint?: string;
}

/** Adds a hint to an error on its way out, wrapping errors that cannot carry one. */
export function withHint(err: unknown, hint: string): CliError {
  const wrapped =
    err instanceof CliError ? err : new CliError(err instanceof Error ? err.message : String(err));
  wrapped.hint = hint;
  return wrapped;
}

/** An error answered by the registry or the gateway: `{ "error": { code, message, field } }`. */
export class ApiError extends CliError {
  override name = "ApiError";

  constructor(
    readonly status: number,
    message: string,
    /** The stable error code; absent when the body was not the API's JSON (e.g. a proxy page). */
    readonly code?: string,
    readonly field?: string,
  ) {
    super(message);
  }

  /**
   * `<message> (<code>)`: the code is what users grep for and what scripts can match. A body
   * that was not the API's JSON has no code, so the HTTP status is the only hint left.
   */
  describe(): string {
    return this.code ? `${this.message} (${this.code})` : `HTTP ${this.status}: ${this.message}`;
  }
}

/** The TCP connection could not be made, or the server did not answer in time. */
export class UnreachableError extends CliError {
  override name = "UnreachableError";
}
