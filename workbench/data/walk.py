"""Which files a source holds: a walk in name order with a stated link policy, every path not read reported.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from workbench.data.schema import DOC_SUFFIXES, IngestError, _qrow


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as valid UTF-8 text: bytes of a file name that are not UTF-8 are shown as ``\\xNN`` escapes (a
    name with such bytes cannot be stored in a Parquet string column as it is)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class SourceFile:
    """A file to read: the path as walked, its wallet hint (the folder's name) and its display name."""

    path: Path
    wallet: str
    name: str


def walk_sources(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[SourceFile], list[dict[str, Any]]]:
    """Every regular file under ``paths`` once, and every path that is not read with the reason.

    Link policy: a symbolic link (to a file or a folder) is followed when its target lies inside the source
    folder it was found in, and refused otherwise (a wallet folder cannot pull in files from elsewhere); a link
    loop, a dangling link, a FIFO/socket/device, a folder that cannot be listed and a file reached a second time
    (a hard or symbolic link, or the same path given twice) are not read. Documentation and hidden files
    (``README.md``, ``SOURCE.txt``, ``.fetch-manifest.json``...) are not data. Folders are walked in name order,
    so the result does not depend on the file system's listing order.

    Returns
    -------
    files : list of SourceFile
    not_read : list of quarantine rows (``level == "path"``), one per path not read.
    """
    files: list[SourceFile] = []
    not_read: list[dict[str, Any]] = []
    seen_files: dict[tuple[int, int], str] = {}
    seen_dirs: dict[tuple[int, int], str] = {}

    def skip(path: Path, reason: str) -> None:
        not_read.append(_qrow(display_path(path), "path", reason))

    def add_file(path: Path, st: os.stat_result, name: str | None = None, folder: str | None = None) -> None:
        # name and folder: the entry's path as text and its folder's name, when the walk has them already
        # (turning a Path back into text costs ~5 us per call, and each file needed it three times)
        text = os.fspath(path) if name is None else name
        base = os.path.basename(text)
        if os.path.splitext(base)[1].lower() in DOC_SUFFIXES or base.startswith("."):
            return skip(path, "documentation or hidden file, not data")
        key = (st.st_dev, st.st_ino)
        shown = display_path(text)
        if key in seen_files:
            return skip(path, f"same file as {seen_files[key]} (a link, or a path given twice): read once")
        seen_files[key] = shown
        files.append(SourceFile(path, path.parent.name if folder is None else folder, shown))

    def walk(top: Path, root: Path) -> None:
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                st = folder.stat()
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                skip(folder, f"cannot list the folder: {exc.strerror or exc}")
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                skip(folder, f"same folder as {seen_dirs[key]} (a link, or a path given twice): read once")
                continue
            seen_dirs[key] = display_path(folder)
            subdirs = []
            for e in entries:
                path = Path(e.path)
                try:
                    if e.is_symlink():
                        target = Path(os.path.realpath(path))
                        try:
                            tst = path.stat()
                        except OSError as exc:
                            reason = ("symbolic link loop" if exc.errno == errno.ELOOP else
                                      f"dangling symbolic link to {display_path(os.readlink(path))}"
                                      if exc.errno == errno.ENOENT else f"cannot follow the link: {exc.strerror}")
                            skip(path, reason)
                            continue
                        if not target.is_relative_to(root):
                            skip(path, f"symbolic link to {display_path(target)}, outside the source folder "
                                       f"{display_path(root)}: not followed")
                        elif stat.S_ISDIR(tst.st_mode):
                            if (tst.st_dev, tst.st_ino) in seen_dirs:
                                skip(path, f"symbolic link loop: points back to {seen_dirs[(tst.st_dev, tst.st_ino)]}")
                            else:
                                subdirs.append(path)
                        elif stat.S_ISREG(tst.st_mode):
                            add_file(path, tst)
                        else:
                            skip(path, "symbolic link to something that is not a regular file")
                    elif e.is_dir(follow_symlinks=False):
                        subdirs.append(path)
                    elif e.is_file(follow_symlinks=False):
                        add_file(path, e.stat(follow_symlinks=False), e.path, folder.name)
                    else:
                        skip(path, "not a regular file (FIFO, socket or device)")
                except OSError as exc:
                    skip(path, f"cannot inspect the path: {exc.strerror or exc}")
            stack.extend(reversed(subdirs))

    for p in paths:
        p = Path(p)
        if not os.path.lexists(p):
            raise IngestError(f"no such file or folder: {display_path(p)}")
        try:
            st = p.stat()  # a link given by name is the user's choice: followed
        except OSError as exc:
            skip(p, f"cannot follow the path: {exc.strerror or exc}")
            continue
        if stat.S_ISDIR(st.st_mode):
            walk(p, p.resolve())
        elif stat.S_ISREG(st.st_mode):
            add_file(p, st)
        else:
            skip(p, "not a regular file (FIFO, socket or device)")
    return files, not_read
