// The guestbook in Node, two entry points of one package: `guestbook.get` renders the page
// (GET /guestbook-node) and `guestbook.add` adds the form's `text` (POST /guestbook-node).
// Redis through the npm `redis` client; its address is the `guestbook` configmap's `redis-url`.
const fs = require("node:fs");
const path = require("node:path");
const { createClient } = require("redis");

const ROUTE = "/guestbook-node";
const ENTRIES = "guestbook-node:entries";
const SHOWN = 100;
const MAX_CHARS = 1000;

let connecting; // Promise of a connected client, shared by concurrent calls.

function redis(context) {
  if (!connecting) {
    const namespace =
      (context.function && context.function.namespace) ||
      process.env.FIZZ_FUNCTION_NAMESPACE ||
      "default";
    const configs = process.env.FIZZ_CONFIGS_DIR || "/configs";
    const url = fs.readFileSync(path.join(configs, namespace, "guestbook", "redis-url"), "utf8");
    const client = createClient({
      url: url.trim(),
      // Give up after a few seconds rather than hold requests forever; the next call reconnects.
      socket: {
        connectTimeout: 5000,
        reconnectStrategy: (retries) => (retries >= 10 ? new Error("Redis unreachable") : 300),
      },
    });
    // Without a listener an "error" event would crash the instance.
    client.on("error", (err) => console.error(`guestbook: redis: ${err.message}`));
    client.on("end", () => {
      if (connecting === pending) connecting = undefined;
    });
    const pending = client.connect().then(
      () => client,
      (err) => {
        if (connecting === pending) connecting = undefined;
        throw err;
      },
    );
    connecting = pending;
  }
  return connecting;
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function html(status, body) {
  return { status, headers: { "content-type": "text/html; charset=utf-8" }, body };
}

function page(entries) {
  const listing = entries.length
    ? `<ul>\n${entries.map((e) => `  <li>${escapeHtml(e)}</li>`).join("\n")}\n</ul>`
    : '<p class="none">No entries yet. Be the first!</p>';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Guestbook (Node)</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem;
         color: #222; }
  form { display: flex; gap: .5rem; margin: 1.5rem 0; }
  input { flex: 1; padding: .5rem; font-size: 1rem; }
  button { padding: .5rem 1.2rem; font-size: 1rem; }
  ul { list-style: none; padding: 0; }
  li { padding: .6rem 0; border-bottom: 1px solid #ddd; overflow-wrap: anywhere; }
  h1 small { color: #777; font-weight: normal; }
  .none { color: #777; }
</style>
</head>
<body>
<h1>Guestbook <small>(Node)</small></h1>
<form action="${ROUTE}" method="post">
  <input type="text" name="text" maxlength="${MAX_CHARS}" required autofocus
         placeholder="Leave a message" aria-label="Message">
  <button type="submit">Sign</button>
</form>
${listing}
</body>
</html>
`;
}

function refuse(message) {
  return html(
    400,
    `<!doctype html><meta charset="utf-8"><title>Guestbook</title>` +
      `<p>${message} <a href="${ROUTE}">Back to the guestbook</a></p>\n`,
  );
}

/** The form's `text`: Express-style parsed body when the runtime gives one, else the raw form. */
function formText(context) {
  const parsed = context.request && context.request.body;
  if (parsed && typeof parsed === "object" && !Buffer.isBuffer(parsed)) {
    return typeof parsed.text === "string" ? parsed.text : "";
  }
  const raw = Buffer.isBuffer(context.body) ? context.body.toString("utf8") : context.body;
  return typeof raw === "string" ? (new URLSearchParams(raw).get("text") ?? "") : "";
}

exports.get = async (context) => {
  const entries = await (await redis(context)).lRange(ENTRIES, 0, SHOWN - 1);
  return html(200, page(entries));
};

exports.add = async (context) => {
  const text = formText(context).trim();
  if (!text) return refuse("An entry needs some text.");
  // Characters, not UTF-16 units, as the Python variant counts them.
  if ([...text].length > MAX_CHARS) return refuse(`An entry is at most ${MAX_CHARS} characters.`);
  // LPUSH is atomic, so entries added at the same moment are all kept (newest first).
  await (await redis(context)).lPush(ENTRIES, text);
  // 303: the browser follows with a GET, so reloading the page does not post the entry again.
  return { status: 303, headers: { location: ROUTE }, body: "" };
};
