// What the services' bundles get for `import … from "undici"` (service-build.mjs): the dispatchers
// and `request` the platform uses, from undici's own modules, without what its index loads besides
// (fetch, WebSocket, cache storage, mocks, SQLite cache, interceptors): about 8 MB less resident
// memory per service that uses undici. Every other export is undici's own, loaded on first use,
// so nothing differs but when it loads. `request` is undici's index.js `makeDispatcher(api.request)`,
// kept as it is there (undici 7).
"use strict";

const Dispatcher = require("undici/lib/dispatcher/dispatcher");
const Client = require("undici/lib/dispatcher/client");
const Pool = require("undici/lib/dispatcher/pool");
const Agent = require("undici/lib/dispatcher/agent");
const errors = require("undici/lib/core/errors");
const util = require("undici/lib/core/util");
const api = require("undici/lib/api");
const buildConnector = require("undici/lib/core/connect");
const { getGlobalDispatcher, setGlobalDispatcher } = require("undici/lib/global");

// As undici's index does: dispatchers get request(), stream(), pipeline(), connect(), upgrade().
Object.assign(Dispatcher.prototype, api);

/** @param {Function} fn */
function makeDispatcher(fn) {
  /**
   * @param {any} url
   * @param {any} opts
   * @param {any} handler
   */
  return (url, opts, handler) => {
    if (typeof opts === "function") {
      handler = opts;
      opts = null;
    }
    if (!url || (typeof url !== "string" && typeof url !== "object" && !(url instanceof URL)))
      throw new errors.InvalidArgumentError("invalid url");
    if (opts != null && typeof opts !== "object")
      throw new errors.InvalidArgumentError("invalid opts");
    if (opts && opts.path != null) {
      if (typeof opts.path !== "string") throw new errors.InvalidArgumentError("invalid opts.path");
      const path = opts.path.startsWith("/") ? opts.path : `/${opts.path}`;
      url = new URL(util.parseOrigin(url).origin + path);
    } else {
      if (!opts) opts = typeof url === "object" ? url : {};
      url = util.parseURL(url);
    }
    const { agent, dispatcher = getGlobalDispatcher() } = opts;
    if (agent)
      throw new errors.InvalidArgumentError("unsupported opts.agent. Did you mean opts.client?");
    return fn.call(
      dispatcher,
      {
        ...opts,
        origin: url.origin,
        path: url.search ? `${url.pathname}${url.search}` : url.pathname,
        method: opts.method || (opts.body ? "PUT" : "GET"),
      },
      handler,
    );
  };
}

const lean = {
  Dispatcher,
  Client,
  Pool,
  Agent,
  errors,
  buildConnector,
  getGlobalDispatcher,
  setGlobalDispatcher,
  request: makeDispatcher(api.request),
  stream: makeDispatcher(api.stream),
  pipeline: makeDispatcher(api.pipeline),
  connect: makeDispatcher(api.connect),
  upgrade: makeDispatcher(api.upgrade),
};

/** @type {any} */
let full;
// The path, not the bare name, so the bundler's "undici" → this file mapping does not apply.
const fullUndici = () => (full ??= require("undici/index.js"));

// undici's export names, listed by the build (service-build.mjs defines the constant).
for (const name of __FIZZ_UNDICI_EXPORTS__) {
  if (Object.hasOwn(lean, name)) continue;
  Object.defineProperty(lean, name, { enumerable: true, get: () => fullUndici()[name] });
}
module.exports = lean;
