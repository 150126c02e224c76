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
# In a package the module part may name a subdirectory: "lib/app.fn" (or "lib.app.fn").
_PACKAGE_ENTRYPOINT = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_./-]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
# Secret/configmap names and keys become directory and file names: Kubernetes' own character
# sets, which exclude '/', and never "." or "..".
_CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_CONFIG_KEY = re.compile(r"[A-Za-z0-9._-]{1,253}")
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
    """Checks a parsed specialize body of the single-file form; raises ValidationError naming the
    first bad field."""
    spec = _validate_common(body, default_concurrency, _ENTRYPOINT, "'fn' or 'file.fn'")

    filename = body.get("filename")
    if not isinstance(filename, str) or not _FILENAME.fullmatch(filename):
        raise ValidationError("filename", "must be a file name (no directory) ending in .py")

    code = body.get("code")
    if not isinstance(code, str) or not _BASE64.fullmatch(code):
        raise ValidationError("code", "must be the file's content in base64")
    try:
        source = base64.b64decode(code, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("code", "must be the file's content in base64") from None

    digest = body.get("digest")
    if digest is not None and (not isinstance(digest, str) or not _DIGEST.fullmatch(digest)):
        raise ValidationError("digest", "must be sha256:<64 lowercase hex digits>")

    spec.update(filename=filename, code=source, digest=digest)
    return spec


def validate_archive(body: Any, default_concurrency: int) -> Dict[str, Any]:
    """Checks the JSON line of the archive form: no code, a required digest of the archive."""
    what = "'fn' or 'file.fn' (file may name a subdirectory: 'lib/app.fn')"
    spec = _validate_common(body, default_concurrency, _PACKAGE_ENTRYPOINT, what)
    if "code" in body:
        raise ValidationError("code", "not allowed: the code is the archive that follows")
    if "filename" in body:
        raise ValidationError("filename", "not allowed with an archive")
    digest = body.get("digest")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValidationError("digest", "is required: sha256:<64 lowercase hex digits> of the archive")
    entrypoint = spec["entrypoint"]
    if entrypoint and "." in entrypoint:
        module = entrypoint.rsplit(".", 1)[0]
        if any(part in ("", ".", "..") for part in module.split("/")):
            raise ValidationError("entrypoint", "must name a file inside the package")
    spec["digest"] = digest
    return spec


def _validate_common(body: Any, default_concurrency: int, pattern: Any, form: str) -> Dict[str, Any]:
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
    # The namespace names a directory under FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR.
    if not _CONFIG_NAME.fullmatch(fn["namespace"]):
        raise ValidationError("function.namespace", "must be a namespace name")
    if not _is_int(fn.get("revision")) or fn["revision"] < 0:
        raise ValidationError("function.revision", "must be a non-negative integer")

    entrypoint = body.get("entrypoint")
    if entrypoint in (None, ""):
        entrypoint = None
    elif not isinstance(entrypoint, str) or not pattern.fullmatch(entrypoint):
        raise ValidationError("entrypoint", f"must be {form}")

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
        if not _ENV_NAME.fullmatch(key):
            raise ValidationError(f"env.{key}", "is not a valid variable name")
        if not isinstance(value, str):
            raise ValidationError(f"env.{key}", "must be a string")

    return {
        "instance_id": instance_id,
        "function": {"namespace": fn["namespace"], "name": fn["name"], "revision": fn["revision"]},
        "entrypoint": entrypoint,
        "concurrency": concurrency,
        "env": dict(env),
        "secrets": _config_data(body.get("secrets"), "secrets"),
        "configmaps": _config_data(body.get("configmaps"), "configmaps"),
    }


def _config_data(data: Any, field: str) -> Dict[str, Dict[str, bytes]]:
    """``{name: {key: base64}}``. Messages name the field, never a value: these are secrets."""
    out: Dict[str, Dict[str, bytes]] = {}
    if data is None:
        return out
    if not isinstance(data, dict):
        raise ValidationError(field, "must be an object {name: {key: base64}}")
    for name, keys in data.items():
        if not _CONFIG_NAME.fullmatch(name):
            raise ValidationError(f"{field}.{name}", "is not a valid name")
        if not isinstance(keys, dict):
            raise ValidationError(f"{field}.{name}", "must be an object {key: base64}")
        values: Dict[str, bytes] = {}
        for key, value in keys.items():
            if not _CONFIG_KEY.fullmatch(key) or key in (".", ".."):
                message = "is not a valid key (letters, digits, '-', '_', '.')"
                raise ValidationError(f"{field}.{name}.{key}", message)
            if not isinstance(value, str) or not _BASE64.fullmatch(value):
                raise ValidationError(f"{field}.{name}.{key}", "must be base64")
            values[key] = base64.b64decode(value)
        out[name] = values
    return out


def write_config_files(base: str, namespace: str, data: Dict[str, Dict[str, bytes]]) -> None:
    """Secrets and configmaps as files ``<base>/<namespace>/<name>/<key>``, before the code loads.
    Files 0400; directories 0700, not 0500, so that whoever removes the instance's directory
    afterwards (a poolkeeper not running as root) can unlink them. An existing ``base`` (a
    Kubernetes emptyDir) is used as it is. Names and keys were validated: no '/', '.' or '..'."""
    for name, keys in data.items():
        directory = os.path.join(base, namespace, name)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for key, value in keys.items():
            fd = os.open(os.path.join(directory, key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(value)


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
        # What the loader's exec_module does, from the bytes just written rather than reading them
        # back and looking for a __pycache__ the fresh directory cannot have (~0.2 ms).
        exec(compile(code, path, "exec", dont_inherit=True), module.__dict__)
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
    return fn, takes_context(fn, filename, label)


def takes_context(fn: Callable[..., Any], filename: str, label: str) -> bool:
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
    """``<file>:<line>: <Type>: <message>``. ``<file>`` is the user's file where it went wrong,
    relative to ``directory`` (a package's ``lib/db.py``), else ``path``, the file being loaded;
    without the line when it is not in the user's code."""
    where_file = path
    line = None
    prefix = directory.rstrip(os.sep) + os.sep
    if isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename).startswith(prefix):
        where_file = os.path.abspath(exc.filename)
        line = exc.lineno
        message = exc.msg
    else:
        # The innermost frame in the user's code is where it went wrong.
        import traceback  # error path only

        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename.startswith(prefix):
                where_file, line = frame.filename, frame.lineno
        message = str(exc)
    message = (message.splitlines() or [""])[0].replace(prefix, "")
    name = os.path.relpath(where_file, directory)
    where = f"{name}:{line}" if line else name
    return f"{where}: {type(exc).__name__}: {message}" if message else f"{where}: {type(exc).__name__}"
