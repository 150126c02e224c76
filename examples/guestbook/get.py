# GET /guestbook: the guestbook's page, newest entries first, with a form that POSTs to add.py.
# A Fission-style Flask function: `def main()` with no arguments, returning the page as a string
# (Flask answers text/html).
import os

import redis

# As Fission's examples write it. Flask 3 dropped `flask.escape`; Fizz's Python environment puts
# it back (it is markupsafe's), so this line runs on any Flask.
from flask import escape, request

ENTRIES = "guestbook:entries"
SHOWN = 100

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Guestbook</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem;
         color: #222; }
  form { display: flex; gap: .5rem; margin: 1.5rem 0; }
  input { flex: 1; padding: .5rem; font-size: 1rem; }
  button { padding: .5rem 1.2rem; font-size: 1rem; }
  ul { list-style: none; padding: 0; }
  li { padding: .6rem 0; border-bottom: 1px solid #ddd; overflow-wrap: anywhere; }
  .none { color: #777; }
</style>
</head>
<body>
<h1>Guestbook</h1>
<form action="/guestbook" method="post">
  <input type="text" name="text" maxlength="1000" required autofocus
         placeholder="Leave a message" aria-label="Message">
  <button type="submit">Sign</button>
</form>
@ENTRIES@
</body>
</html>
"""

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


def main():
    entries = _redis().lrange(ENTRIES, 0, SHOWN - 1)
    if entries:
        items = "\n".join("  <li>%s</li>" % escape(e) for e in entries)
        listing = "<ul>\n%s\n</ul>" % items
    else:
        listing = '<p class="none">No entries yet. Be the first!</p>'
    return PAGE.replace("@ENTRIES@", listing)
