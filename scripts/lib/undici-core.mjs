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
 * undici's top-level `request(url, opts)`: the same argument checks and URL handling as its index
 * (an `opts.path` replaces the URL's path; the method defaults to PUT with a body, GET without),
 * then `dispatcher.request` on the given dispatcher or the global one.
 * @param {any} url  a string, URL or options object, as undici takes it
 * @param {any} [opts]
 * @param {any} [handler]
 */
function request(url, opts, handler) {
  if (typeof opts === "function") {
    handler = opts;
    opts = null;
  }
  if (!url || (typeof url !== "string" && typeof url !== "object")) {
    throw new errors.InvalidArgumentError("invalid url");
  }
  if (opts != null && typeof opts !== "object") {
    throw new errors.InvalidArgumentError("invalid opts");
  }
  let target;
  if (opts && opts.path != null) {
    if (typeof opts.path !== "string") throw new errors.InvalidArgumentError("invalid opts.path");
    const p = opts.path.startsWith("/") ? opts.path : `/${opts.path}`;
    target = new URL(util.parseOrigin(url).origin + p);
  } else {
    opts ??= typeof url === "object" ? url : {};
    target = util.parseURL(url);
  }
  const { agent, dispatcher = getGlobalDispatcher() } = opts;
  if (agent) {
    throw new errors.InvalidArgumentError("unsupported opts.agent. Did you mean opts.client?");
  }
  return api.request.call(
    dispatcher,
    {
      ...opts,
      origin: target.origin,
      path: target.search ? `${target.pathname}${target.search}` : target.pathname,
      method: opts.method || (opts.body ? "PUT" : "GET"),
    },
    handler,
  );
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
