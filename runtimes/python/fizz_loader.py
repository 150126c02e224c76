"""Specialize support: validate the request, write the pushed code, load it, find the entrypoint.

Load failures become one line naming the user's file and line, e.g.
``hello.py:2: SyntaxError: Missing parentheses in call to 'print'. Did you mean print(...)?``,
because that line is what the developer sees as the function's load error.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import os
import re
import sys
import types

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

# A bare file name: no directory part and no leading dot, so writing it can never leave the workdir.
_FILENAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\.py$")
# Strict, padded base64 without line breaks (what the registry sends).
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
# "fn" or "file.fn"; the function part must be an identifier.
_ENTRYPOINT = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_CONCURRENCY = 10000
# The user's module is registered under a private name: registering it as e.g. "csv" would shadow
# the standard module for the function's own imports.
MODULE_NAME = "fizz_function"
DEFAULT_ENTRYPOINT = "main"


class ValidationError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class LoadError(Exception):
    """The user's code did not load; the message is meant for the user."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(body: Any, default_concurrency: int) -> Dict[str, Any]:
    """Checks a parsed specialize body; raises ValidationError naming the first bad field."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")

    instance_id = body.get("instanceId")
    if instance_id is not None and (not isinstance(instance_id, str) or not instance_id):
        raise ValidationError("instanceId", "must be a non-empty string")

    fn = body.get("function")
    if not isinstance(fn, dict):
        raise ValidationError("function", "must be an object {namespace, name, revision}")
    for key in ("namespace", "name"):
        if not isinstance(fn.get(key), str) or not fn[key]:
            raise ValidationError(f"function.{key}", "must be a non-empty string")
    if not _is_int(fn.get("revision")) or fn["revision"] < 0:
        raise ValidationError("function.revision", "must be a non-negative integer")

    filename = body.get("filename")
    if not isinstance(filename, str) or not _FILENAME.match(filename):
        raise ValidationError("filename", "must be a file name (no directory) ending in .py")

    code = body.get("code")
    if not isinstance(code, str) or not _BASE64.match(code):
        raise ValidationError("code", "must be the file's content in base64")
    try:
        source = base64.b64decode(code, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("code", "must be the file's content in base64") from None

    entrypoint = body.get("entrypoint")
    if entrypoint in (None, ""):
        entrypoint = None
    elif not isinstance(entrypoint, str) or not _ENTRYPOINT.match(entrypoint):
        raise ValidationError("entrypoint", "must be 'fn' or 'file.fn'")

    concurrency = body.get("concurrency")
    if concurrency is None:
        concurrency = default_concurrency
    elif not _is_int(concurrency) or not 1 <= concurrency <= _MAX_CONCURRENCY:
        raise ValidationError("concurrency", f"must be an integer between 1 and {_MAX_CONCURRENCY}")

    env = body.get("env")
    if env is None:
        env = {}
    elif not isinstance(env, dict):
        raise ValidationError("env", "must be an object of strings")
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            raise ValidationError(f"env.{key}", "is not a valid variable name")
        if not isinstance(value, str):
            raise ValidationError(f"env.{key}", "must be a string")

    digest = body.get("digest")
    if digest is not None and (not isinstance(digest, str) or not _DIGEST.match(digest)):
        raise ValidationError("digest", "must be sha256:<64 lowercase hex digits>")

    return {
        "instance_id": instance_id,
        "digest": digest,
        "function": {"namespace": fn["namespace"], "name": fn["name"], "revision": fn["revision"]},
        "filename": filename,
        "code": source,
        "entrypoint": entrypoint,
        "concurrency": concurrency,
        "env": dict(env),
    }


def load_function(
    directory: str, filename: str, code: bytes, entrypoint: Optional[str]
) -> Tuple[Callable[..., Any], bool]:
    """Writes and imports the code. Returns the entrypoint and whether it takes the context."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, filename)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(code)

    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # SystemExit: a top-level sys.exit() is a load failure too
        del sys.modules[MODULE_NAME]
        raise LoadError(describe_load_error(exc, path, directory)) from None

    label = entrypoint or DEFAULT_ENTRYPOINT
    name = label
    if "." in label:
        file_part, name = label.rsplit(".", 1)
        if file_part not in (filename, filename[:-3]):
            message = f'entrypoint "{label}" names "{file_part}", but the code is {filename}'
            raise LoadError(f"{filename}: {message}")
    fn = getattr(module, name, None)
    if not callable(fn):
        raise LoadError(f'{filename}: entrypoint "{label}" is not a function defined by the module')
    return fn, _takes_context(fn, filename, label)


def _takes_context(fn: Callable[..., Any], filename: str, label: str) -> bool:
    """``def main(context)`` or ``def main()``. Plain functions are read from their code object;
    ``inspect`` (slow to import) is only needed for other callables."""
    bad = LoadError(f'{filename}: entrypoint "{label}" must take one argument (context) or none')
    if isinstance(fn, types.FunctionType):
        code = fn.__code__
        required = code.co_argcount - len(fn.__defaults__ or ())
        kw_required = code.co_kwonlyargcount - len(fn.__kwdefaults__ or {})
        if required > 1 or kw_required > 0:
            raise bad
        return code.co_argcount >= 1 or bool(code.co_flags & 0x04)  # 0x04: CO_VARARGS

    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True  # a builtin without a signature: assume the contract's main(context)
    for args in ((None,), ()):
        try:
            signature.bind(*args)
            return bool(args)
        except TypeError:
            pass
    raise bad


def describe_load_error(exc: BaseException, path: str, directory: str) -> str:
    """``<file>:<line>: <Type>: <message>``, without the line when it is not in the user's file."""
    name = os.path.basename(path)
    line = None
    if isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == path:
        line = exc.lineno
        message = exc.msg
    else:
        # The innermost frame in the user's file is where their code went wrong.
        import traceback  # error path only

        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == path:
                line = frame.lineno
        message = str(exc)
    message = (message.splitlines() or [""])[0].replace(directory + os.sep, "")
    where = f"{name}:{line}" if line else name
    return f"{where}: {type(exc).__name__}: {message}" if message else f"{where}: {type(exc).__name__}"
