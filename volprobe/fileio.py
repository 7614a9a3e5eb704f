"""Files in and out, safely: inputs read whole and checked, outputs written atomically, faults named.

- :func:`read_input_bytes` / :func:`read_text`: a file's content; gzip files (recognised by their magic
  bytes, whatever their name) are decompressed with their CRC and length checked, and text must be UTF-8
  (a byte-order mark is dropped). Damage is a :class:`~volprobe.errors.FormatError` (or the error class the
  caller gives) naming the file, and for text the line and column of the first bad byte.
- :func:`existing_path`: a path that exists, or an error that says why not (missing, broken symlink,
  symlink loop).
- :func:`atomic_output`: write a file through a temporary beside it, fsync'ed and renamed, so a kill or a
  full disk leaves the earlier file whole; a failing write names the file.
- :func:`describe_os_error`: one line for an environment fault (full disk, read-only folder, no permission).
"""

from __future__ import annotations

import errno
import gzip
import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from volprobe.errors import FormatError, VolprobeError

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"


def existing_path(path: str | Path, what: str = "file", error: type[Exception] = VolprobeError) -> Path:
    """``path`` when it exists; else FileNotFoundError (missing, or a symlink to nothing) or ``error`` for a
    symlink loop, each naming the path."""
    p = Path(path)
    try:
        p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise FileNotFoundError(f"{what} not found: {p} is a symlink to {os.readlink(p)}, which does "
                                    "not exist") from None
        raise FileNotFoundError(f"{what} not found: {p} (no such file or folder)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{p}: symlink loop (the link points back to itself through {os.readlink(p)!r}); "
                        f"point it at the real {what}") from None
        raise
    return p


def symlink_loops(folder: str | Path) -> list[str]:
    """Names of the entries of ``folder`` that are symlink loops."""
    loops = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_symlink():
            try:
                os.stat(entry.path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    loops.append(entry.name)
    return loops


def gunzip_checked(data: bytes, path: str | Path, error: type[Exception] = FormatError) -> bytes:
    """Decompress a whole gzip file, checking its CRC and length; damage is ``error`` naming the file."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        text = str(exc)
        if "CRC" in text or "incorrect length" in text:
            why = f"its CRC check failed ({text}): the data are damaged"
        elif isinstance(exc, EOFError) or "ended before" in text:
            why = "it is truncated (the compressed stream ends early)"
        else:
            why = f"it is not a valid gzip stream ({text})"
        raise error(f"{path}: corrupt gzip file: {why}; copy it again from its source") from exc


def read_input_bytes(path: str | Path, error: type[Exception] = FormatError) -> bytes:
    """The bytes of ``path``; gzip content is decompressed and checked (:func:`gunzip_checked`)."""
    data = Path(path).read_bytes()
    if data[:2] == GZIP_MAGIC:
        data = gunzip_checked(data, path, error)
    return data


def decode_text(data: bytes, path: str | Path) -> str:
    """UTF-8 text (a byte-order mark dropped); other bytes are a FormatError naming line and column."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FormatError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); "
                          "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)") from None


def read_text(path: str | Path) -> str:
    """The text of ``path`` (UTF-8, gzip read transparently), errors naming file and line."""
    return decode_text(read_input_bytes(path), path)


@contextmanager
def atomic_output(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file in the same folder; on success it is flushed,
    fsync'ed and renamed over ``path``; on any failure the temporary is removed and ``path`` is untouched.
    An OSError names ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename != str(path):
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc
        raise


#: Hints for environment faults, by errno.
_HINTS = {
    errno.ENOSPC: "the disk is full; free some space and rerun (files written before are intact)",
    errno.EDQUOT: "the disk quota is used up; free some space and rerun (files written before are intact)",
    errno.EROFS: "the file system is read-only; choose another --out",
    errno.EACCES: "no permission (a read-only folder?); choose another --out or change the permissions",
    errno.EPERM: "not permitted; choose another --out or change the permissions",
    errno.ELOOP: "a symlink loop; point the link at the real file",
    errno.EISDIR: "a folder where a file was expected",
    errno.ENOTDIR: "a file where a folder was expected",
    errno.ENAMETOOLONG: "the path is too long",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an environment fault: what failed on which path, and what to do."""
    what = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    hint = _HINTS.get(exc.errno) if exc.errno is not None else None
    return f"{what}{where}" + (f": {hint}" if hint else "")
