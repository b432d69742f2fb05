"""The one place for atomic file writes and content hashes (layer 0: standard library + numpy).

Atomic writes
-------------
Every artifact ctsurv writes (prepared patients, trunk and volume caches, fold records, ONNX
exports, run tables) goes through :func:`atomic_write`: the bytes are written to a temporary
file with a *unique* name in the destination folder (``tempfile.mkstemp``, so two processes
writing the same artifact never share a temporary file; its mode is set to what ``open`` would
give, ``0666 & ~umask``), flushed and ``fsync``-ed, then moved
into place with ``os.replace`` (atomic on POSIX and Windows within one file system). A crash
leaves either the old file or the new one, never a torn file; the temporary file is removed on
any error. A full disk (``ENOSPC``, ``EDQUOT``) raises :class:`~ctsurv.exceptions.DiskFullError`
naming the file, so a long command stops with that reason instead of a traceback, and a rerun
reuses what was finished.

Hashes
------
:func:`json_hash` is the content hash of a JSON-able mapping (keys sorted, so dict order never
changes it); :func:`file_sha256` hashes a file in chunks, memoised on (real path, size, mtime).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import errno

import numpy as np

from ctsurv.exceptions import DiskFullError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_save_npy", "atomic_savez", "atomic_to_csv", "json_safe", "json_hash", "file_sha256",
           "bytes_sha256"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a unique temporary file beside ``path``, fsync, then rename.

    Parameters
    ----------
    path : path
        Destination; its folder is created when missing.
    write : callable
        Receives a binary file object opened for writing.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 & ~umask)
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"no space left on the device writing {path} ({exc.strerror}); nothing partial "
                                "was kept under that name: free space (or write elsewhere) and run the command "
                                "again, finished work is reused") from exc
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: read once at import: os.umask can only be read by setting it, which is not thread-safe
_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> Path:
    """Write ``obj`` as strict JSON (``NaN``/``inf`` are refused: other parsers reject them)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` to ``path`` atomically (no pickled objects)."""
    return atomic_write(path, lambda fh: np.save(fh, np.asarray(array), allow_pickle=False))


#: deflate level of :func:`atomic_savez`. A prepared CT (58 float32 slices of 224 x 224 and a
#: mask) is 6.07 MB at level 1 and 5.97 MB at numpy's level 6, written in 0.27 s instead of
#: 0.61 s: the noise of CT slices does not compress, so higher levels buy little.
SAVEZ_LEVEL = 1


def _savez(fh, arrays: dict, level: int | None) -> None:
    # np.savez's layout (one NAME.npy member per array; np.load reads it), with a chosen level;
    # members carry a fixed date, so the same arrays give the same bytes (wherever they were made)
    method = zipfile.ZIP_STORED if level is None else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(fh, "w", method, compresslevel=level, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            # the member's deflate level (a slot named compress_level from Python 3.13, _compresslevel before)
            setattr(info, "compress_level" if "compress_level" in zipfile.ZipInfo.__slots__ else "_compresslevel", level)
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def atomic_savez(path: str | os.PathLike, *, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """``np.savez`` of ``arrays`` to ``path`` atomically, deflated at :data:`SAVEZ_LEVEL` when
    ``compressed`` (no pickled objects)."""
    return atomic_write(path, lambda fh: _savez(fh, arrays, SAVEZ_LEVEL if compressed else None))


def atomic_to_csv(path: str | os.PathLike, frame, **kwargs: Any) -> Path:
    """``DataFrame.to_csv`` to ``path`` atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    buf = io.StringIO()
    frame.to_csv(buf, **kwargs)
    return atomic_write_text(path, buf.getvalue())


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values for strict JSON (``allow_nan=False``): every non-finite
    float (NaN, inf) becomes ``None``, numpy scalars and arrays become Python ones, a DataFrame
    becomes its records and mapping keys become strings. Anything else is refused."""
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # a pandas DataFrame
        return json_safe(obj.to_dict(orient="records"))
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, bool, np.bool_)):
        return bool(obj) if isinstance(obj, np.bool_) else obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if np.isfinite(v) else None
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON: {obj!r}")


def json_hash(obj: Any, *, length: int | None = None) -> str:
    """SHA-256 hex digest of ``obj`` as sorted-key JSON (non-JSON values via ``str``).

    ``length`` truncates the digest (e.g. 16 hex digits for folder-level configuration hashes).
    """
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    return digest if length is None else digest[:length]


def bytes_sha256(data: bytes) -> str:
    """SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def patient_digest(patient_id: str) -> str:
    """The recorded form of a patient identifier (the first 16 hex digits of its SHA-256):
    saved models list their training patients this way, so that a cohort can be checked for
    overlap (transfer learning's leakage guard) without the model file carrying the ids."""
    return hashlib.sha256(str(patient_id).encode()).hexdigest()[:16]


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict) -> Path:
    """Write a safetensors file atomically (a partial file is never seen under ``path``)."""
    from safetensors.torch import save as st_save

    return atomic_write_bytes(path, st_save({k: v.detach().contiguous() for k, v in tensors.items()}))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks, memoised on (real path, size, mtime)."""
    st = os.stat(path)
    memo_key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if memo_key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA_MEMO[memo_key] = h.hexdigest()
    return _SHA_MEMO[memo_key]


#: the distributions whose versions a run records (``metrics.json["software"]``)
SOFTWARE = ("ctsurv", "torch", "numpy", "onnxruntime", "monai", "pydicom", "SimpleITK", "scipy", "pandas")


def software_versions(names=SOFTWARE) -> dict[str, str | None]:
    """Installed versions of ``names`` (None where absent) and of Python: the one place runs and
    reports read them."""
    import platform
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
