// Functions in the style of Fission's Flask-based Python environment (def main(), Flask's request
// and return values), written for these tests; and the interpreters they run on.
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Source } from "../../contract/runtime-contract.js";
import type { Files } from "../../contract/archive.js";

/** Debian's interpreter, where the set-up installs python3-flask (scripts/lib/prereqs.mjs);
 * FIZZ_TEST_FLASK_PYTHON runs these tests on another one (e.g. with Flask 3). */
export const FLASK_PYTHON = process.env.FIZZ_TEST_FLASK_PYTHON ?? "/usr/bin/python3";
export const SERVER_SCRIPT = fileURLToPath(new URL("../server.py", import.meta.url));

/** Fails the suite, naming the fix, when the interpreter has no Flask (a check, not a skip). */
export function requireFlask(): void {
  const r = spawnSync(FLASK_PYTHON, ["-c", "import flask"], { encoding: "utf8" });
  if (r.status !== 0)
    throw new Error(
      `${FLASK_PYTHON} cannot import flask (${r.stderr.trim()}): install python3-flask (npm test does it as root on Debian)`,
    );
}

/** The same interpreter started with -S: no site-packages, so no Flask, as on a bare install. */
export function withoutFlask(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "fizz-no-flask-"));
  const wrapper = path.join(dir, "python3-no-site");
  writeFileSync(wrapper, `#!/bin/sh\nexec ${FLASK_PYTHON} -S "$@"\n`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}

/** Fission's shortest Python function. */
export const FLASK_HELLO: Source = {
  filename: "hello.py",
  source: `from flask import request\n\ndef main():\n    return "Hello, world!"\n`,
};

/** A zero-argument main that never imports Flask: Flask mode is opt-in by import. */
export const PLAIN_MAIN: Source = {
  filename: "plain.py",
  source: `def main():\n    return "<b>plain</b>"\n`,
};

/** One Flask-style function per route (request.path); see the test for what each must answer. */
export const FLASK_KINDS: Source = {
  filename: "kinds.py",
  source: `import threading

from flask import (Response, abort, after_this_request, current_app, escape, g, jsonify,
                   make_response, redirect, request)

released = threading.Event()
together = threading.Barrier(2, timeout=30)
calls = 0


def main():
    global calls
    calls += 1
    route = request.path
    if route == "/args":
        return jsonify(name=request.args.get("name"), tags=request.args.getlist("tag"))
    if route == "/form":
        return "text=" + request.form["text"]
    if route == "/form-size":
        return "params=%d" % len(request.form)
    if route == "/raw-size":
        return "bytes=%d" % len(request.get_data())
    if route == "/bad-header":
        return "x", 200, {"X-Evil\\n": "v"}
    if route == "/json":
        return {"got": request.get_json()}
    if route == "/header":
        return request.headers.get("X-Custom", "absent")
    if route == "/params":
        return {"header": request.headers.get("X-Fizz-Params-Id"),
                "environ": request.environ.get("HTTP_X_FIZZ_PARAMS_ID")}
    if route == "/request":
        return {"method": request.method, "path": request.path, "url": request.url,
                "scheme": request.scheme, "remote": request.remote_addr,
                "cookie": request.cookies.get("flavour"), "data": request.get_data(as_text=True)}
    if route == "/redirect":
        return redirect("/guestbook", code=303)
    if route == "/abort":
        abort(400)
    if route == "/bytes":
        return bytes([0, 1, 2, 255])
    if route == "/dict":
        return {"b": [1, "two"], "a": None}
    if route == "/status":
        return "created", 201
    if route == "/status-headers":
        return "made", 202, {"X-Made": "yes"}
    if route == "/headers-only":
        return "ok", {"X-Only": "yes"}
    if route == "/response":
        return Response("plain words", status=203, mimetype="text/plain")
    if route == "/cookie":
        response = make_response("with a cookie")
        response.set_cookie("flavour", "mint")
        return response
    if route == "/after":
        @after_this_request
        def stamp(response):
            response.headers["X-After"] = "ran"
            return response
        return "after"
    if route == "/escape":
        return str(escape("<script>alert(1)</script>"))
    if route == "/app":
        return f"{current_app.name} {current_app.config['MAX_CONTENT_LENGTH']}"
    if route == "/stream":
        def chunks():
            yield "first;"
            released.wait(30)
            yield "second;" + request.args.get("tail", "")
        return chunks()
    if route == "/release":
        released.set()
        return "released"
    if route == "/printed":
        print("printed, returned None")
        return None
    if route == "/throw":
        raise ValueError("boom from a flask function")
    if route == "/unanswerable":
        return 42
    if route == "/g-set":
        g.secret = request.args["secret"]
        then = request.args.get("then")
        if then == "raise":
            raise RuntimeError("after setting g")
        if then == "abort":
            abort(409)
        return "set"
    if route == "/g-get":
        return repr(g.get("secret"))
    if route == "/together":
        together.wait()
        return request.args["id"]
    if route == "/calls":
        return str(calls)
    return "unknown route " + route
`,
};

/** A function that never touches Flask, on an interpreter that has it. */
export const CONTEXT_HELLO: Source = {
  filename: "ctx.py",
  source: `def main(context):\n    return "context " + context.query.get("who", "nobody")\n`,
};

/** A package shipping its own copy of Flask, marked, and with escape and Markup taken out (as
 * Flask 3 did): the package's copy must be the one imported, and escape still there. */
export function packageWithOwnFlask(): Files {
  const installed = path.dirname(
    spawnSync(FLASK_PYTHON, ["-c", "import flask; print(flask.__file__)"], {
      encoding: "utf8",
    }).stdout.trim(),
  );
  const files: Files = {};
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir)) {
      if (name === "__pycache__") continue;
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full, `${rel}/${name}`);
      else files[`${rel}/${name}`] = readFileSync(full);
    }
  };
  walk(installed, "flask");
  const init = readFileSync(path.join(installed, "__init__.py"), "utf8");
  files["flask/__init__.py"] =
    init.replace(/^from markupsafe import (escape|Markup)\n/gm, "") + "\nPACKAGED = True\n";
  files["main.py"] = [
    "import flask",
    "from flask import escape, request",
    "",
    "def main():",
    "    return f\"packaged={getattr(flask, 'PACKAGED', False)} {escape(request.args['q'])}\"",
    "",
  ].join("\n");
  return files;
}
