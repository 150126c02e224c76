// What a language gives the shared runtime contract suite: how to start its runtime, and the user
// functions (fixtures) written in that language that the contract calls.
import type { Files } from "./archive.js";
import type { CallMarkers } from "./contract-call-markers.js";
import type { Runtime, StartOptions } from "./harness.js";

/** A user function's file as the platform pushes it on specialize. */
export interface Source {
  filename: string;
  source: string;
  entrypoint?: string;
}

/**
 * The contract's test function. It answers according to the `kind` query parameter:
 * - `echo`: JSON `{method, path, query, headers, body, params, function, requestId}` from its
 *   context, `body` being the request body read as JSON through the language's own accessor;
 * - `text`: JSON `{text, length}`: the body decoded as UTF-8 and its length in bytes;
 * - `json`: the object `{hello: ["world"]}`; `list`: the array `[1, "two"]`;
 * - `created`: status 201, header `X-Custom: yes`, JSON `{created: true}`;
 * - `accepted`: status 202, text `accepted`;
 * - `not-a-response`: the object `{status: "ok"}` (a value, not a response with a status);
 * - `bytes`: the bytes 0, 1, 2, 255; `string` and no kind: the text `plain`;
 * - `env`: the value of `GREETING` in its environment;
 * - `log`: writes `log line from the function` to stdout and answers the text `logged`;
 * - `throw`: throws an error whose message is `boom from the function`;
 * - `unsendable`: returns a value the runtime cannot send as an answer.
 */
export type KindsFunction = Source;

/** A multi-file package (the archive form of specialize); a call of it answers `answer`. */
export interface PackageShape {
  what: string;
  files: Files;
  entrypoint?: string;
  answer: string;
}

export interface PackageFixtures {
  /** The file the default entrypoint loads: `index.js`, `main.py`. */
  main: string;
  /** Packages whose code is spread over several files, with and without an entrypoint. */
  shapes: PackageShape[];
  /** A package whose entry imports a module of the package that does not load; the message
   * names that module's file (relative to the package) and line. */
  loadFailure: { files: Files; entrypoint?: string; message: RegExp };
  /**
   * Answers the text, by the `kind` query parameter:
   * - `file`: the content of `<value of the variable named by dir>/<path>`;
   * - `env`: the value of the variable `name`, or `unset`;
   * - `relative`: the content of the file `path`, relative to the working directory.
   * Exported as the language's default (module.exports / main) so it loads as a single file and
   * as a package's main file.
   */
  configReader: Source;
}

export interface RuntimeFixtures {
  /** Fission's hello world in this language: answers `Hello, world!\n` as text/plain. */
  hello: Source;
  /** A file name of another language, which this runtime must refuse to load. */
  foreignFilename: string;
  /** Code that does not load, and the message the answer must carry (naming file and line). */
  loadFailures: Array<Source & { what: string; message: string | RegExp }>;
  /** The handler shapes the language supports (Fission's among them); each answers `answer`. */
  handlerShapes: Array<Source & { what: string; answer: string }>;
  kinds: KindsFunction;
  /** Waits `ms` milliseconds, then answers the text `answer`. */
  slow: (ms: number, answer: string) => Source;
  /** Answers the text value of FIZZ_SPECIALIZE_TOKEN in its own environment, or `absent`. */
  tokenLeak: Source;
  packages: PackageFixtures;
}

export interface RuntimeUnderTest {
  name: string;
  /** Starts a fresh runtime process; resolves once /healthz answers. */
  start: (env?: Record<string, string>, options?: StartOptions) => Promise<Runtime>;
  fixtures: RuntimeFixtures;
  /**
   * Compiled languages (Go, C#): what the builder makes of a package's source files, as the
   * platform would deploy it (the runtime's `build.sh` output). When present, the suite sends
   * every Source fixture in the archive form as `compile({[filename]: source}, entrypoint)`, and
   * every package as `compile(files, entrypoint)`, the entrypoint also going in the archive's
   * line. Tests of the JSON form's own checks (validation, token, digest, 421, 409) still send the
   * JSON form, which such a runtime answers before it would refuse to load a single file.
   * Rejecting fails the test that needed it.
   */
  compile?: (files: Files, entrypoint?: string) => Promise<Files>;
  /**
   * Only for the suite's own test of the compile path (Node posing as compiled): the runtime does
   * load source in the JSON form, so the check that a compiled runtime refuses it is skipped.
   */
  loadsSource?: boolean;
  /**
   * The runtime marks each call's output on stdout and stderr (contract-call-markers.ts): the
   * function those checks call, and what the language allows. Left out, the checks do not run
   * (output is then logged without request ids).
   */
  callMarkers?: CallMarkers;
  /**
   * A function whose `twice` kind writes the line `one <tag>` to stdout, waits the `ms` query
   * parameter's milliseconds, writes the line `two <tag>` to stdout and answers `twice` (`<tag>`
   * being the `tag` query parameter), as the call markers' function does. The abandoned-call check
   * (contract-abandoned-call.ts) reads those lines to tell whether a call's function ran on after
   * its client left, beside the next calls. For a runtime without `callMarkers` (whose function
   * serves otherwise); left out as well, that check only sees that the instance is not wedged.
   */
  twicePrinter?: Source;
}
