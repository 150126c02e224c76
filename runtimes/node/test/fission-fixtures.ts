// Functions written the way Fission's Node environment runs them (context.request is Express's
// request; callback(status, body, headers) answers through Express's res.send), for
// fission-compat.int.test.ts. Written for these tests, not taken from Fission's examples.
import type { Source } from "../../contract/runtime-contract.js";

export interface Shape extends Source {
  what: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  answer: string;
}

/** Every signature Fission's Node environment accepts, each answering `answer`. */
export const SHAPES: Shape[] = [
  {
    what: "module.exports = async (context) => …",
    filename: "greet.js",
    source: `module.exports = async (context) => ({
  status: 200,
  headers: { "x-shape": "arrow" },
  body: "hello " + context.request.query.name,
});
`,
    path: "/?name=ada",
    answer: "hello ada",
  },
  {
    what: "module.exports = async function (context) { … }",
    filename: "greet.js",
    source: `module.exports = async function (context) {
  const who = context.request.get("X-Who");
  return { status: 200, body: "hi " + who };
};
`,
    path: "/",
    headers: { "x-who": "grace" },
    answer: "hi grace",
  },
  {
    what: "a function of no arguments",
    filename: "ping.js",
    source: `module.exports = () => ({ status: 200, body: "pong" });\n`,
    path: "/",
    answer: "pong",
  },
  {
    what: "export default in an .mjs file",
    filename: "greet.mjs",
    source: `export default async (context) => ({ status: 200, body: "esm " + context.request.path });\n`,
    path: "/some/where",
    answer: "esm /some/where",
  },
  {
    what: "export default in a .js file",
    filename: "greet.js",
    source: `import { basename } from "node:path";
export default async function (context) {
  return { status: 200, body: "esm in js, at " + basename(context.request.path) };
}
`,
    path: "/a/b",
    answer: "esm in js, at b",
  },
  ...namedEntries(),
];

/** One file, several functions: the entrypoint picks one, as `file.fn` or `fn`. */
function namedEntries(): Shape[] {
  const cjs = `exports.list = async () => ({ status: 200, body: "the list" });
exports.add = async (context) => ({ status: 201, body: "added " + context.request.body.item });
`;
  const esm = `export async function hello(context) { return { status: 200, body: "hello from multi" }; }
export const bye = (context, callback) => callback(200, "bye from multi");
`;
  const form = { "content-type": "application/x-www-form-urlencoded" };
  return [
    { entrypoint: "routes.add", source: cjs, filename: "routes.js", answer: "added tea" },
    { entrypoint: "list", source: cjs, filename: "routes.js", answer: "the list" },
    { entrypoint: "multi.bye", source: esm, filename: "multi.mjs", answer: "bye from multi" },
    { entrypoint: "hello", source: esm, filename: "multi.mjs", answer: "hello from multi" },
  ].map((s) => ({
    ...s,
    what: `the named entry point ${s.entrypoint} of ${s.filename}`,
    path: "/",
    ...(s.entrypoint === "routes.add" ? { headers: form, body: "item=tea" } : {}),
  }));
}

/**
 * Reports what a Fission function sees of `context.request`. `?set=1` assigns request.body
 * first, as Express middleware may.
 */
export const REQUEST_ECHO: Source = {
  filename: "echo.js",
  source: `module.exports = async (context) => {
  const req = context.request;
  if (req.query.set) req.body = "assigned";
  const body = req.body;
  const kind = Buffer.isBuffer(body) ? "buffer" : body === null ? "null" : typeof body;
  return {
    status: 200,
    body: {
      method: req.method, url: req.url, originalUrl: req.originalUrl, path: req.path,
      query: req.query, params: req.params,
      body: kind === "buffer" ? body.toString("hex") : body,
      kind,
      prototype: kind === "object" && !Array.isArray(body)
        ? (Object.getPrototypeOf(body) === null ? "none" : "Object") : undefined,
      keys: kind === "object" ? Object.keys(body) : undefined,
      topBody: Buffer.isBuffer(context.body) ? "buffer" : context.body,
      sameHeaders: req.headers === context.headers,
      serializedBody: JSON.parse(JSON.stringify(req)).body,
      contentType: req.get("Content-Type") ?? null,
      contentTypeByHeader: req.header("CONTENT-TYPE") ?? null,
      referrer: req.get("Referrer") ?? null,
      is: {
        none: req.is(), json: req.is("json"), form: req.is("urlencoded"),
        text: req.is("text/*"), list: req.is(["html", "+json"]), png: req.is("image/png"),
      },
      hostname: req.hostname ?? null, ip: req.ip, protocol: req.protocol, secure: req.secure,
      xhr: req.xhr,
      pollutedObjects: Object.keys(Object.prototype).concat(
        [{}.isAdmin, {}.polluted].filter((v) => v !== undefined),
      ),
    },
  };
};
`,
};

/** Callback answers of every body type Express's res.send tells apart, chosen by `?kind=`. */
export const CALLBACK_ANSWERS: Source = {
  filename: "answers.js",
  source: `const { Readable } = require("node:stream");
module.exports = function (context, callback) {
  switch (context.request.query.kind) {
    case "html": return callback(200, "<p>héllo</p>");
    case "typed": return callback(200, "plain text", { "Content-Type": "text/plain" });
    case "short-type": return callback(200, '{"a":1}', { "Content-Type": "json" });
    case "other-charset": return callback(200, "x", { "content-type": "text/csv; charset=latin1" });
    case "buffer": return callback(200, Buffer.from([0, 1, 254, 255]));
    case "typed-buffer": return callback(200, Buffer.from("GIF89a"), { "content-type": "image/gif" });
    case "object": return callback(200, { hello: ["world"] });
    case "array": return callback(200, [1, "two"]);
    case "number": return callback(200, 42);
    case "null": return callback(200, null);
    case "status-only": return callback(201);
    case "no-content": return callback(204, "dropped", { "content-type": "text/plain" });
    case "redirect": return callback(303, undefined, { Location: "/guestbook" });
    case "stream": return callback(200, Readable.from(["one ", "two ", "three"]), { "content-type": "text/plain" });
    case "twice": callback(200, "first"); return callback(500, "second");
    case "later": return void setTimeout(() => callback(202, "later"), 30);
    case "throw": throw new Error("thrown before answering");
    case "bad-status": return callback(42, "no such status");
    case "header-injection": return callback(200, "x", { "x-note": "a\\r\\nSet-Cookie: session=evil" });
    default: return callback(404, "unknown kind");
  }
};
`,
};

/** The callback style written as an async function that fails after an await. */
export const ASYNC_CALLBACK_REJECTS: Source = {
  filename: "rejects.js",
  source: `module.exports = async (context, callback) => {
  await new Promise((r) => setTimeout(r, 5));
  throw new Error("rejected before answering");
};
`,
};

/** The return form with markup in a string: answered as text, not HTML. */
export const RETURNS_MARKUP: Source = {
  filename: "markup.js",
  source: `module.exports = async (context) => ({ status: 200, body: "<script>alert(1)</script>" });\n`,
};

/**
 * Reads a form as `?read=` says: `raw` only context.body (the string), never request.body;
 * `parsed` request.body; `caught` request.body inside a try, then again; `forged` rethrows a
 * refusal's look-alike built with the refusal's own class, which must stay the function's error.
 */
export const FORM_READER: Source = {
  filename: "form.js",
  source: `module.exports = async (context) => {
  const read = () => context.request.body;
  switch (context.query.read) {
    case "raw": return { length: context.body.length, tail: context.body.slice(-9) };
    case "parsed": { const body = read(); return { keys: Object.keys(body).length, last: body.k999 }; }
    case "caught": {
      let first;
      try { read(); first = "parsed"; } catch (err) { first = err.message; }
      let again;
      try { again = typeof read(); } catch { again = "refused"; }
      return { first, again };
    }
    case "forged":
      try { read(); } catch (err) { throw new err.constructor(413, "PAYLOAD_TOO_LARGE", "forged"); }
      return "not refused";
    default: return { status: 404, body: "unknown read" };
  }
};
`,
};
