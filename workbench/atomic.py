"""Atomic writes: a reader sees the old file (or folder) or the new one, never a half-written one.

Every artefact of the chain (tables, manifests, checkpoints, model folders) is written through these helpers, so
a crash or a killed notebook never leaves a truncated file that a later notebook would read. Written by hand
because the standard library has the primitive (:func:`os.replace`, atomic on POSIX and Windows within a file
system) but not the pattern around it.
"""

from __future__ import annotations

import json
import os
import shutil
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
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: PathLike, text: str) -> Path:
    """``text`` (UTF-8) to ``path``, atomically."""
    return write_file(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: PathLike, obj: Any) -> Path:
    """``obj`` as indented JSON (``default=str`` for dates, paths...), atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str))


def write_parquet(path: PathLike, df: pd.DataFrame, index: bool = True) -> Path:
    """``df`` as Parquet, atomically."""
    return write_file(path, lambda p: df.to_parquet(p, index=index))


def replace_folder(folder: PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on an empty temporary folder beside ``folder``, then swap it into place.

    The old folder is renamed aside first and removed only after the new one is in place, so ``folder`` is
    complete (old or new) at every moment except between two renames.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder
