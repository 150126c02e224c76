"""The archive form of POST /v2/specialize (docs/runtime-contract.md): one line of JSON, then a
gzip'd tar to the end of the body. The tar is read as a stream (tarfile ``r|gz``) and extracted
while it comes in; every byte after the line is hashed, so the caller can refuse the whole thing
(and remove what was written) when it does not hash to its digest. Nothing is loaded before that.

Only regular files and directories are written, by this module (never ``tarfile.extractall``).
No symlink is ever created, so every path is resolved through real directories of our own
making: a name without ``..`` that is not absolute cannot leave the target directory. Files are
created exclusively (O_EXCL), so an entry cannot overwrite another.

Imported only for an archive: tarfile and its compression modules stay off the cold-start path.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib

from fizz_invoke import HttpError

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_COPY_CHUNK = 64 * 1024
_MAX_NAME_LENGTH = 4096


class ArchiveUnsafe(Exception):
    """ARCHIVE_UNSAFE: names the entry (when there is one) and the rule it broke."""

    def __init__(self, entry: Optional[str], rule: str) -> None:
        super().__init__(f"archive: {rule}" if entry is None else f"entry {_quote(entry)}: {rule}")


def _quote(name: str) -> str:
    import json  # already loaded by the server

    return json.dumps(name)


class BodyStream:
    """The request body as a file: Content-Length or chunked framing, at most ``limit`` bytes.
    Once ``start_hash()`` is called, every byte read is hashed."""

    def __init__(self, rfile: Any, headers: Dict[str, str], limit: int) -> None:
        self._rfile = rfile
        self._limit = limit
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._left = 0  # in the current chunk, or of the Content-Length
        self._eof = False
        self.total = 0
        self.complete = False
        self._hash: Any = None
        if not self._chunked:
            try:
                self._left = int(headers.get("content-length", "0"))
                if self._left < 0:
                    raise ValueError
            except ValueError:
                raise HttpError(400, "INVALID_BODY", "invalid Content-Length", close=True) from None
            if self._left > limit:
                raise _too_large(limit)
            self._eof = self._left == 0
            self.complete = self._eof

    def start_hash(self) -> None:
        self._hash = hashlib.sha256()

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def _available(self) -> int:
        """Bytes that can be read now without crossing a chunk boundary; 0 at the end."""
        if self._eof:
            return 0
        if self._left == 0 and self._chunked:
            size_field = self._rfile.readline(1026).split(b";", 1)[0].strip()
            try:
                self._left = int(size_field, 16)
            except ValueError:
                raise HttpError(400, "INVALID_BODY", "malformed chunked body", close=True) from None
            if self._left == 0:
                while self._rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: nothing uses them
                self._eof = self.complete = True
        return self._left

    def _took(self, data: bytes, wanted: int) -> bytes:
        if len(data) < wanted and not data.endswith(b"\n"):
            raise HttpError(400, "INVALID_BODY", "request body was cut short", close=True)
        self._left -= len(data)
        self.total += len(data)
        if self.total > self._limit:
            raise _too_large(self._limit)
        if self._left == 0:
            if self._chunked:
                if self._rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise HttpError(400, "INVALID_BODY", "malformed chunked body", close=True)
            else:
                self._eof = self.complete = True
        if self._hash is not None:
            self._hash.update(data)
        return data

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (fewer at a chunk boundary); b"" at the end of the body."""
        available = self._available()
        if available == 0:
            return b""
        wanted = available if size < 0 else min(size, available)
        data = self._rfile.read(wanted)
        if len(data) < wanted:
            raise HttpError(400, "INVALID_BODY", "request body was cut short", close=True)
        return self._took(data, wanted)

    def readline(self, limit: int) -> bytes:
        """The body up to and including its first b"\\n", refused past ``limit`` bytes."""
        parts = []
        size = 0
        while True:
            available = self._available()
            if available == 0:
                message = "body: must be one line of JSON ended by \\n, then the archive"
                raise HttpError(400, "VALIDATION_FAILED", message, close=True)
            wanted = min(available, limit + 1 - size)
            data = self._rfile.readline(wanted)
            if not data:
                raise HttpError(400, "INVALID_BODY", "request body was cut short", close=True)
            parts.append(self._took(data, wanted))
            size += len(data)
            if data.endswith(b"\n"):
                return b"".join(parts)
            if size > limit:
                message = f"body: the JSON line is longer than {limit} bytes"
                raise HttpError(400, "VALIDATION_FAILED", message, close=True)

    def drain(self) -> None:
        while self.read(_COPY_CHUNK):
            pass


def _too_large(limit: int) -> HttpError:
    return HttpError(413, "PAYLOAD_TOO_LARGE", f"archive exceeds {limit} bytes", close=True)


def receive(
    body: BodyStream, directory: str, max_bytes: int, max_entries: int
) -> Tuple[Optional[Exception], int]:
    """Extracts the rest of the body into ``directory`` (created here, 0700; FileExistsError when
    it exists), then reads the body to its end. Returns the refusal, if the archive broke a rule
    (an ArchiveUnsafe, or an OSError when writing failed otherwise), and the number of files.
    HttpError when the body itself is too large or cut short. The caller checks the digest, and
    removes ``directory`` unless it loads it."""
    os.mkdir(directory, 0o700)
    refusal: Optional[Exception] = None
    files = 0
    try:
        files = _extract(body, directory, max_bytes, max_entries)
    except ArchiveUnsafe as exc:
        refusal = exc
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        refusal = ArchiveUnsafe(None, f"malformed: {exc}")
    except HttpError:
        raise
    except OSError as exc:
        refusal = exc
    body.drain()
    return refusal, files


def _extract(body: BodyStream, root: str, max_bytes: int, max_entries: int) -> int:
    entries = files = total = 0
    # Stream mode: one pass, no seeking; tarfile itself refuses what is not gzip.
    with tarfile.open(fileobj=body, mode="r|gz") as archive:  # type: ignore[call-overload]
        for member in archive:
            name = member.name
            entries += 1
            if entries > max_entries:
                raise ArchiveUnsafe(name, f"more than {max_entries} entries")
            segments = _segments(name)
            if member.isdir():
                if segments:
                    _mkdir(root, segments, name)
                continue
            if member.issym() or member.islnk():
                raise ArchiveUnsafe(name, "links are not allowed")
            if member.ischr() or member.isblk() or member.isfifo():
                raise ArchiveUnsafe(name, "device file or FIFO")
            if member.type not in _FILE_TYPES or member.issparse():
                raise ArchiveUnsafe(name, f"unsupported entry type {member.type!r}")
            if not segments:
                raise ArchiveUnsafe(name, "a file without a name")
            total += member.size
            if total > max_bytes:
                raise ArchiveUnsafe(name, f"files total more than {max_bytes} bytes")
            if len(segments) > 1:
                _mkdir(root, segments[:-1], name)
            # Owner only: the instance's own uid is the only reader. Executables stay executable.
            mode = 0o700 if member.mode & 0o100 else 0o600
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            try:
                fd = os.open(os.path.join(root, *segments), flags, mode)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise ArchiveUnsafe(name, "duplicate entry") from None
            files += 1
            source = archive.extractfile(member)
            with os.fdopen(fd, "wb") as out:
                while source is not None:
                    chunk = source.read(_COPY_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
    return files


def _segments(name: str) -> list:
    """The entry's name as path segments under the root ([] for the root itself), or refused.
    Any ".." segment is refused, even one that would stay inside: no real archive needs it."""
    if not name or "\0" in name:
        raise ArchiveUnsafe(name, "invalid name")
    if len(name) > _MAX_NAME_LENGTH:
        raise ArchiveUnsafe(name, "name too long")
    if "\\" in name:
        raise ArchiveUnsafe(name, "backslash in path")
    if name.startswith("/"):
        raise ArchiveUnsafe(name, "absolute path")
    segments = [s for s in name.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise ArchiveUnsafe(name, "path escapes the archive root")
    return segments


def _mkdir(root: str, segments: list, name: str) -> None:
    try:
        os.makedirs(os.path.join(root, *segments), mode=0o700, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ArchiveUnsafe(name, "path passes through a file") from None
