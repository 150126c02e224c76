// What the service bundles get for `import … from "undici"` (service-build.mjs resolves it here for
// our own code; undici's own files and other packages still get the real entry). undici's index
// loads everything it has at start-up: fetch, WebSocket, EventSource, the cache stores with
// node:sqlite, the mock agents. Evaluated, that was about 7 MB of resident memory in each of the
// gateway and the poolkeeper, which use only the dispatchers below. The classes are undici's own
// modules, so behaviour is the same; the bundle fails to build when a service imports a name this
// file does not export (ESM named exports), instead of finding it undefined at run time. Only for
// the bundler: undici's modules are CommonJS, taken with the bundle's require (not run by node as is).
// @ts-expect-error -- undici declares types for its index only
const Agent = require("undici/lib/dispatcher/agent.js");
// @ts-expect-error -- undici declares types for its index only
const Client = require("undici/lib/dispatcher/client.js");
// @ts-expect-error -- undici declares types for its index only
const Dispatcher = require("undici/lib/dispatcher/dispatcher.js");
// @ts-expect-error -- undici declares types for its index only
const Pool = require("undici/lib/dispatcher/pool.js");
// @ts-expect-error -- undici declares types for its index only
const api = require("undici/lib/api/index.js");
// @ts-expect-error -- undici declares types for its index only
const buildConnector = require("undici/lib/core/connect.js");
// @ts-expect-error -- undici declares types for its index only
const errors = require("undici/lib/core/errors.js");
// @ts-expect-error -- undici declares types for its index only
const util = require("undici/lib/core/util.js");
// Installs the process-wide default dispatcher, as undici's index does on import.
// @ts-expect-error -- undici declares types for its index only
const undiciGlobal = require("undici/lib/global.js");

// As undici's index: the request/stream/pipeline/connect/upgrade methods of every dispatcher.
Object.assign(Dispatcher.prototype, api);

const { getGlobalDispatcher, setGlobalDispatcher } = undiciGlobal;

/**
 * The top-level `request(url, opts)` as our services call it: a URL (string or URL) with its path
 * and query, and options for `dispatcher.request` (the given dispatcher, else the global one; the
 * method GET, or PUT with a body, as undici's defaults). `opts.path` and the callback form are not
 * taken: no caller uses them, and a caller that tried would get an error, not another request.
 * @param {string | URL} url
 * @param {any} [opts]
 */
function request(url, opts = {}) {
  if (typeof url !== "string" && !(url instanceof URL))
    throw new errors.InvalidArgumentError("invalid url: a string or a URL");
  if (typeof opts !== "object" || opts === null)
    throw new errors.InvalidArgumentError("invalid opts: an object");
  if (opts.path != null)
    throw new errors.InvalidArgumentError("opts.path: put the path in the url");
  const target = util.parseURL(url);
  const { dispatcher = getGlobalDispatcher(), ...rest } = opts;
  return dispatcher.request({
    ...rest,
    origin: target.origin,
    path: `${target.pathname}${target.search}`,
    method: rest.method || (rest.body ? "PUT" : "GET"),
  });
}

export {
  Agent,
  Client,
  Dispatcher,
  Pool,
  buildConnector,
  errors,
  getGlobalDispatcher,
  request,
  setGlobalDispatcher,
};
