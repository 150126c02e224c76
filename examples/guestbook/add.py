# POST /guestbook: adds the form's `text` to the guestbook and sends the browser back to the page.
# A Fission-style Flask function: `def main()` reads Flask's `request`.
import os

import redis
from flask import redirect, request

ENTRIES = "guestbook:entries"
MAX_CHARS = 1000

_db = None


def _redis():
    """The connection, made on first use from the `guestbook` configmap's `redis-url`."""
    global _db
    if _db is None:
        # The gateway names the function's namespace on every call (and drops a client's own
        # X-Fizz-* headers), so the example works in any namespace it is applied to.
        namespace = request.headers.get("X-Fizz-Function-Namespace", "default")
        configs = os.environ.get("FIZZ_CONFIGS_DIR", "/configs")
        with open(os.path.join(configs, namespace, "guestbook", "redis-url")) as f:
            url = f.read().strip()
        _db = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    return _db


def refuse(message):
    page = '<!doctype html><meta charset="utf-8"><title>Guestbook</title>'
    page += '<p>%s <a href="/guestbook">Back to the guestbook</a></p>\n' % message
    return page, 400


def main():
    text = request.form.get("text", "").strip()
    if not text:
        return refuse("An entry needs some text.")
    if len(text) > MAX_CHARS:
        return refuse("An entry is at most %d characters." % MAX_CHARS)
    # LPUSH is atomic, so entries added at the same moment are all kept (newest first).
    _redis().lpush(ENTRIES, text)
    # 303: the browser follows with a GET, so reloading the page does not post the entry again.
    return redirect("/guestbook", code=303)
