"""Atomic writes: a reader sees the old file (or folder) or the new one, never a half-written one.

Every artefact of the chain (tables, manifests, checkpoints, model folders) is written through these helpers, so
a crash or a killed notebook never leaves a truncated file that a later notebook would read. Written by hand
because the standard library has the primitive (:func:`os.replace`, atomic on POSIX and Windows within a file
system) but not the pattern around it.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd

PathLike = str | os.PathLike[str]


def write_file(path: PathLike, write: Callable[[Path], Any], fsync: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    Parameters
    ----------
    path : destination; its folder is created.
    write : writes the whole content to the path it is given (e.g. ``lambda p: df.to_parquet(p)``).
    fsync : flush the file to disk before the rename (checkpoints that must survive a power loss).

    The temporary file is removed when ``write`` raises; ``path`` is then left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode open() would have given it
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_text(path: PathLike, text: str) -> Path:
    """``text`` (UTF-8) to ``path``, atomically."""
    return write_file(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: PathLike, obj: Any) -> Path:
    """``obj`` as indented JSON (``default=str`` for dates, paths...), atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str))


def write_parquet(path: PathLike, df: pd.DataFrame, index: bool = True) -> Path:
    """``df`` as Parquet, atomically."""
    return write_file(path, lambda p: df.to_parquet(p, index=index))


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: PathLike, b: PathLike) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``, through ctypes since
    the standard library does not expose it). Returns False where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, musl)
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a))


def aside_names(folder: PathLike) -> tuple[Path, Path]:
    """The hidden sibling folders :func:`replace_folder` writes into (``.name.tmp``) and moves an old copy to
    (``.name.old``, only where an atomic exchange is not available)."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")


def replace_folder(folder: PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on an empty temporary folder beside ``folder``, then swap it into place.

    On Linux the new folder and the old one are exchanged in one atomic rename (:func:`exchange`): at every
    moment ``folder`` is the complete old folder or the complete new one, whenever the process is killed.
    Elsewhere the old folder is renamed aside first and the new one renamed in; a run killed between the two
    renames leaves ``.name.old``, which the next call restores before it starts. A failed ``write`` leaves
    ``folder`` as it was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = aside_names(folder)
    if not os.path.lexists(folder) and old.is_dir():  # an interrupted two-rename swap: the old copy is current
        os.replace(old, folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.is_dir() and exchange(tmp, folder):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
        return folder
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder
