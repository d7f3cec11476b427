"""Download a wallet's market files from an S3-compatible bucket (the original data lived in Cloudflare R2).

``python -m workbench fetch --wallet 0xADDRESS`` copies ``s3://<bucket>/<prefix><wallet>/*`` to
``data/raw/merged_trades/<wallet>/``.

* **Idempotent**: a local file counts as already present when its size matches the object's and either its MD5
  equals a single-part (plain MD5) ETag, or the wallet folder's manifest (``.fetch-manifest``) records that
  this very file (same size and modification time) was downloaded from an object with the current ETag. The
  manifest is what makes multipart objects (ETag ``<md5>-<N>``, not an MD5 of the content) safe: a remote
  object that was replaced by another one of the same size is fetched again. Running twice downloads nothing
  the second time.
* **Resumable**: each object downloads to ``.<name>.part`` beside a sidecar ``.<name>.part.meta`` holding the
  object's key, size, ETag (and VersionId when the server sends one); it is renamed to ``<name>`` only when
  complete and verified. The next run resumes a partial file with a ``Range`` request only when the sidecar
  still matches the listed object, and sends ``If-Match: <etag>`` so that an object replaced between the listing
  and the download answers 412 instead of mixing bytes of two versions; the partial file is then discarded and
  the object downloaded again from the start (once). A partial file without a sidecar is discarded. Nothing
  half-written ever carries the final name, and the bookkeeping files all start with ``.``, which ingestion skips.
* **Contained**: ``--wallet`` must be a single safe folder name, and every key is checked before anything is
  written: keys with ``.``/``..``/empty components, absolute parts, backslashes, NUL or control characters,
  folder markers (``.../``), names that fetch uses for its own files, keys that clash with another listed key
  (``a`` and ``a/b.json``) or with a local file or folder, and keys whose resolved path leaves the wallet
  folder (through a symlink) are skipped with a reason (:attr:`FetchReport.skipped_keys`) and the fetch goes on.
  Nothing is written outside ``<out>/<wallet>/``.

Settings come from the environment or a ``.env`` file at the project root (never committed):
``WORKBENCH_S3_ENDPOINT_URL`` (or ``S3_ENDPOINT_URL`` / ``R2_ENDPOINT_URL``), ``WORKBENCH_S3_BUCKET``
(or ``S3_BUCKET`` / ``R2_BUCKET``), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or
``R2_ACCESS_KEY_ID`` / ``R2_SECRET_ACCESS_KEY``) and optionally ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import atomic, config


class FetchError(RuntimeError):
    """Missing settings, an unreachable bucket, or a download that fails verification."""


class FetchUsageError(FetchError):
    """A bad ``--wallet`` or ``--out`` argument (the CLI exits with status 2, as for other usage errors)."""


#: Manifest of completed downloads (JSON), in the wallet folder. A dotfile, so that ingestion skips it, and not
#: ``*.json``, so that ``wallet_dir.glob("*.json")`` (notebook 01) does not count it as a market file.
MANIFEST_NAME = ".fetch-manifest"
_WALLET_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_MD5_ETAG_RE = re.compile(r"[0-9a-f]{32}")
#: Longest file name most file systems accept, in bytes; the sidecar name adds 11 to a key's last component.
_MAX_NAME_BYTES = 255
_SIDECAR_EXTRA = len(".") + len(".part.meta")
#: The manifest is rewritten at most this often (plus once at the end): rewriting it after every file would
#: cost O(files^2) bytes for a large wallet, and a lost entry only means one re-download.
_MANIFEST_FLUSH_S = 5.0
_MAX_REPORTED = 20


def _first_env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


@dataclass(frozen=True)
class S3Settings:
    """Where and how to connect. ``endpoint_url`` None means AWS S3 itself."""

    bucket: str
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls, env_file: Path | None = None, **overrides: Any) -> "S3Settings":
        """Read settings from the environment, after loading ``env_file`` (default ``<project>/.env``)
        without overriding variables that are already set."""
        from dotenv import load_dotenv

        load_dotenv(env_file or config.PROJ_ROOT / ".env", override=False)
        endpoint = overrides.get("endpoint_url") or _first_env("WORKBENCH_S3_ENDPOINT_URL", "S3_ENDPOINT_URL",
                                                               "R2_ENDPOINT_URL")
        bucket = overrides.get("bucket") or _first_env("WORKBENCH_S3_BUCKET", "S3_BUCKET", "R2_BUCKET")
        if not bucket:
            raise FetchError("no bucket: pass --bucket or set WORKBENCH_S3_BUCKET (or S3_BUCKET / R2_BUCKET) "
                             "in the environment or in .env")
        region = overrides.get("region") or _first_env("AWS_DEFAULT_REGION", "AWS_REGION") or (
            "auto" if endpoint and "r2.cloudflarestorage.com" in endpoint else "us-east-1")
        return cls(bucket=bucket, endpoint_url=endpoint,
                   access_key=_first_env("AWS_ACCESS_KEY_ID", "R2_ACCESS_KEY_ID"),
                   secret_key=_first_env("AWS_SECRET_ACCESS_KEY", "R2_SECRET_ACCESS_KEY"), region=region)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region,
                            config=Config(retries={"max_attempts": 5, "mode": "standard"}))


@dataclass
class FetchReport:
    """What a fetch did. ``listed == downloaded + skipped + len(skipped_keys)`` on success.

    Attributes
    ----------
    listed
        Keys listed under ``<prefix><wallet>/`` (folder markers included).
    downloaded, resumed, restarted
        Objects downloaded; of those, how many continued an earlier partial file, and how many partial files
        were thrown away because the remote object had changed (sidecar mismatch, HTTP 412, other VersionId).
    skipped
        Objects already present locally (nothing transferred).
    skipped_keys
        ``(key, reason)`` for every key that was not downloaded because it is unsafe, conflicts with another
        key or a local path, or disappeared from the bucket after the listing.
    """

    listed: int = 0
    downloaded: int = 0
    resumed: int = 0
    restarted: int = 0
    skipped: int = 0
    bytes_downloaded: int = 0
    files: list[Path] = field(default_factory=list)
    skipped_keys: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        restarted = f", {self.restarted} restarted" if self.restarted else ""
        line = (f"listed {self.listed}, downloaded {self.downloaded} ({self.resumed} resumed{restarted}, "
                f"{self.bytes_downloaded:,} bytes), already present {self.skipped}")
        if not self.skipped_keys:
            return line
        lines = [f"{line}, skipped {len(self.skipped_keys)} key(s):"]
        lines += [f"  skipped {key!r}: {reason}" for key, reason in self.skipped_keys[:_MAX_REPORTED]]
        if len(self.skipped_keys) > _MAX_REPORTED:
            lines.append(f"  ... and {len(self.skipped_keys) - _MAX_REPORTED} more")
        return "\n".join(lines)


def validate_wallet(wallet: str) -> str:
    """Return ``wallet`` if it is a single safe folder name, else raise :class:`FetchUsageError`.

    The wallet becomes a local folder name, so ``../x``, ``a/b`` or an absolute path would write elsewhere.
    """
    # only dots: '.' and '..' are this folder and its parent, and Windows strips trailing dots ('...' -> '.')
    if not isinstance(wallet, str) or not _WALLET_RE.fullmatch(wallet) or set(wallet) == {"."}:
        raise FetchUsageError(f"--wallet {wallet!r} is not a single safe folder name (1-128 of A-Z a-z 0-9 "
                              "'_' '.' '-', not only dots), e.g. a 0x... address")
    return wallet


def validate_out_dir(out_dir: Path, wallet: str | None = None) -> None:
    """Raise :class:`FetchUsageError` if ``out_dir`` (or ``out_dir/wallet``) exists and is not a folder.

    ``lexists``: a dangling symlink is in the way too (``mkdir`` would fail on it).
    """
    out_dir = Path(out_dir)
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise FetchUsageError(f"--out {str(out_dir)!r} exists and is not a folder")
    if wallet is not None and os.path.lexists(out_dir / wallet) and not (out_dir / wallet).is_dir():
        raise FetchUsageError(f"--out {str(out_dir)!r}: {str(out_dir / wallet)!r} exists and is not the "
                              "wallet's folder")


def partial_paths(target: Path) -> tuple[Path, Path]:
    """The partial file and its sidecar (JSON) for ``target``: ``.<name>.part`` and ``.<name>.part.meta``.

    Both start with ``.`` so that ingestion skips them instead of quarantining them as unknown file types, and
    neither ends in ``.json``, so that a ``glob("*.json")`` over the wallet folder finds market files only.
    """
    return target.with_name(f".{target.name}.part"), target.with_name(f".{target.name}.part.meta")


def _is_reserved(component: str) -> bool:
    """Names fetch itself writes; a key with such a name would overwrite (or be overwritten by) them.

    The manifest, partial files and sidecars (:func:`partial_paths`), and the ``.<name>.<random>.tmp`` files of
    :mod:`workbench.atomic`.
    """
    return component == MANIFEST_NAME or (component.startswith(".")
                                          and component.endswith((".part", ".part.meta", ".tmp")))


def unsafe_key_reason(rel: str) -> str | None:
    """Why the key part ``rel`` (the key without ``<prefix><wallet>/``) cannot become a local path, or None.

    Checked on the string, before any path is built: :class:`~pathlib.Path` would silently drop ``.`` and
    empty components and let an absolute part replace the folder.
    """
    if rel == "" or rel.endswith("/"):
        return "folder marker (key ends with '/'), not a file"
    if "\x00" in rel:
        return "NUL character in key"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in rel):
        return "control character in key"
    if "\\" in rel:
        return "backslash in key (a path separator on Windows)"
    if rel.startswith("/"):
        return "absolute path (key part starts with '/')"
    parts = rel.split("/")
    if "" in parts:
        return "empty path component ('//') in key"
    if any(p in (".", "..") for p in parts):
        return "'.' or '..' path component in key"
    if any(len(p.encode("utf-8")) + _SIDECAR_EXTRA > _MAX_NAME_BYTES for p in parts):
        return f"path component longer than {_MAX_NAME_BYTES - _SIDECAR_EXTRA} bytes"
    if any(_is_reserved(p) for p in parts):
        return "reserved name (fetch's own manifest or partial-download files)"
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - ETag comparison, not security
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path, size: int, etag: str) -> bool:
    """Size matches and, when the ETag is a plain MD5 (single-part upload), the MD5 matches too."""
    if not path.is_file() or path.stat().st_size != size:
        return False
    return not _MD5_ETAG_RE.fullmatch(etag) or _md5(path) == etag


def _present(target: Path, rel: str, size: int, etag: str, manifest: "_Manifest") -> bool:
    """The local file already holds the listed object.

    Same size, and: for a plain-MD5 ETag (single-part upload) the same MD5; for any other ETag (multipart
    ``<md5>-<N>``, which is not a hash of the content) the manifest entry of this file, unchanged since its
    download, carries this ETag. A same-size file from an older version of the object is thus fetched again.
    """
    if not target.is_file() or target.stat().st_size != size:
        return False
    if _MD5_ETAG_RE.fullmatch(etag):
        return _md5(target) == etag
    return manifest.matches(rel, target, size, etag)


class _Manifest:
    """ETag, size and mtime of each completed download, keyed by the key part below the wallet folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._flushed = time.monotonic()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("objects"), dict):
                self.entries = {k: v for k, v in data["objects"].items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass  # missing or unreadable: start empty (worst case: multipart files are fetched once more)

    def matches(self, rel: str, path: Path, size: int, etag: str) -> bool:
        """``path`` is the unchanged file downloaded from an object with this ETag and size."""
        e = self.entries.get(rel)
        if not e or e.get("etag") != etag or e.get("size") != size:
            return False
        st = path.stat()
        # mtime: a file edited (or replaced) locally since the download is not trusted any more
        return st.st_size == size and e.get("mtime_ns") == st.st_mtime_ns

    def record(self, rel: str, path: Path, etag: str, version_id: str | None) -> None:
        """Note that ``path`` (just renamed into place) holds the object ``rel`` with this ETag."""
        st = path.stat()
        self.entries[rel] = {"etag": etag, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                             "version_id": version_id}
        self._dirty = True
        if time.monotonic() - self._flushed > _MANIFEST_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the manifest (atomically) if it changed since the last write."""
        if not self._dirty:
            return
        try:
            atomic.write_json(self.path, {"version": 1, "objects": self.entries})
        except OSError as exc:
            raise FetchError(f"cannot write the fetch manifest {self.path}: {exc}") from exc
        self._dirty = False
        self._flushed = time.monotonic()


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's fields, or None when it is missing or unreadable (the partial file is then discarded)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _discard(*paths: Path) -> None:
    """Remove partial files and sidecars that may or may not exist."""
    for p in paths:
        p.unlink(missing_ok=True)


def _inside(path: Path, root: Path) -> bool:
    """``path``, with every symlink resolved, lies strictly inside ``root`` (already resolved)."""
    resolved = path.resolve()
    return resolved != root and resolved.is_relative_to(root)


def _local_conflict(root: Path, target: Path, part: Path, sidecar: Path) -> str | None:
    """Why ``target`` (or its partial files) cannot be written inside ``root``, or None."""
    if not all(_inside(p, root) for p in (target, part, sidecar)):
        return "resolves outside the wallet folder (a symlink in the way)"
    for anc in reversed(target.relative_to(root).parents[:-1]):  # ancestors below root, top first
        if (root / anc).exists() and not (root / anc).is_dir():
            return f"a local file is in the way: {anc.as_posix()!r} is a file, not a folder"
    if target.is_dir():
        return "a local folder is in the way: the target is a folder, not a file"
    return None


class _Changed(Exception):
    """The remote object is not the one the partial file was started from."""


def _error_code(exc: Any) -> tuple[str, int]:
    """``(error code, HTTP status)`` of a botocore ClientError; ``("", 0)`` for anything else."""
    resp = getattr(exc, "response", None) or {}
    return (str(resp.get("Error", {}).get("Code", "")),
            int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0))


def _download(client: Any, bucket: str, key: str, part: Path, sidecar: Path, size: int, etag: str,
              chunk_size: int, report: FetchReport) -> tuple[int, str, str | None] | None:
    """Bring ``part`` to the complete object; return ``(size, etag, version_id)`` of what it holds.

    Returns None when the object was deleted after the listing. The size and ETag returned are the listed
    ones, except after a restart (the object changed): the fresh download is then checked against what the
    server sent with it.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    state = _read_sidecar(sidecar)
    have = part.stat().st_size if part.is_file() else 0
    if have and not (state and state.get("key") == key and state.get("etag") == etag
                     and state.get("size") == size and have <= size):
        # no sidecar, or the partial file belongs to another version of the object: never mix bytes
        if state:
            report.restarted += 1
        _discard(part, sidecar)
        have, state = 0, None
    if_match: str | None = etag
    for attempt in range(2):
        try:
            if have >= size:  # complete partial file from a run interrupted just before the rename
                return size, etag, (state or {}).get("version_id")
            kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if if_match:
                kwargs["IfMatch"] = f'"{if_match}"'
            if have:
                kwargs["Range"] = f"bytes={have}-"
            resp = client.get_object(**kwargs)
            body = resp["Body"]
            try:
                version_id = resp.get("VersionId")
                if have:
                    if state and state.get("version_id") and version_id and version_id != state["version_id"]:
                        raise _Changed  # same ETag, other version: restart rather than trust it
                    if resp.get("ResponseMetadata", {}).get("HTTPStatusCode") != 206:
                        have = 0  # the server ignored Range and sent the whole object: start over
                if attempt:  # restarted without If-Match: check against what this response is
                    etag = str(resp.get("ETag", "")).strip('"')
                    size = int(resp.get("ContentLength", 0))
                if not have or (version_id and not (state or {}).get("version_id")):
                    # the sidecar is on disk before the first byte of the partial file
                    state = {"key": key, "etag": etag, "size": size, "version_id": version_id}
                    atomic.write_json(sidecar, state)
                with part.open("ab" if have else "wb") as f:
                    for chunk in iter(lambda: body.read(chunk_size), b""):
                        f.write(chunk)
                        report.bytes_downloaded += len(chunk)
            finally:
                body.close()
            if have:
                report.resumed += 1
            return size, etag, version_id
        except (_Changed, ClientError) as exc:
            code, status = _error_code(exc)
            if isinstance(exc, ClientError) and (code in ("NoSuchKey", "NotFound") or status == 404):
                _discard(part, sidecar)
                return None
            changed = isinstance(exc, _Changed) or code == "PreconditionFailed" or status == 412
            if not changed or attempt:
                raise FetchError(f"download of s3://{bucket}/{key} failed (partial file kept for resume: "
                                 f"{part}): {exc}") from exc
            # changed since the listing (412) or since the partial file was started: restart from zero once
            report.restarted += 1
            _discard(part, sidecar)
            have, state, if_match = 0, None, None
        except BotoCoreError as exc:
            raise FetchError(f"download of s3://{bucket}/{key} failed (partial file kept for resume: "
                             f"{part}): {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def fetch_wallet(wallet: str, settings: S3Settings, *, prefix: str = "merged_trades/", out_dir: Path | None = None,
                 client: Any = None, chunk_size: int = 1 << 20, progress: bool = False) -> FetchReport:
    """Download every object under ``<prefix><wallet>/`` to ``out_dir/<wallet>/``.

    Parameters
    ----------
    wallet
        Wallet address (the folder name in the bucket); a single safe folder name (:func:`validate_wallet`).
    settings
        Bucket and credentials (see :meth:`S3Settings.from_env`).
    prefix
        Key prefix in front of the wallet folder.
    out_dir
        Local ``merged_trades`` folder; default ``config.paths().merged_trades``. Must not be a file.
    client
        A boto3 S3 client (default: ``settings.client()``).

    Returns
    -------
    FetchReport
        Counts, the local files, and the keys skipped with their reasons.

    Raises
    ------
    FetchUsageError
        Bad ``wallet`` or ``out_dir`` (checked before any network call).
    FetchError
        The bucket cannot be listed, or a download fails or does not verify.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from tqdm.auto import tqdm

    validate_wallet(wallet)
    out = Path(out_dir or config.paths().merged_trades)
    validate_out_dir(out, wallet)
    client = client or settings.client()
    dest = out / wallet
    key_prefix = f"{prefix}{wallet}/"
    report = FetchReport()
    try:
        objects = [o for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket,
                                                                                   Prefix=key_prefix)
                   for o in page.get("Contents", [])]
    except (BotoCoreError, ClientError) as exc:
        raise FetchError(f"cannot list s3://{settings.bucket}/{key_prefix}: {exc}") from exc
    report.listed = len(objects)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    manifest = _Manifest(root / MANIFEST_NAME)
    listed_rels = {o["Key"][len(key_prefix):] for o in objects}
    file_keys: set[str] = set()  # key parts accepted so far, and the folders they need
    folder_keys: set[str] = set()
    try:
        for obj in tqdm(objects, desc="fetch", disable=not progress):
            key = obj["Key"]
            rel = key[len(key_prefix):]
            reason = unsafe_key_reason(rel)
            if reason is None:
                parts = rel.split("/")
                folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
                clash = next((f for f in folders if f in file_keys), None)
                if clash is not None:
                    reason = f"file/folder conflict: needs a folder {clash!r}, which is also a file key"
                elif rel in folder_keys:
                    reason = f"file/folder conflict: {rel!r} is also a folder of other keys"
            if reason is None:
                target = root.joinpath(*rel.split("/"))
                part, sidecar = partial_paths(target)
                reason = _local_conflict(root, target, part, sidecar)
            if reason is not None:
                report.skipped_keys.append((key, reason))
                continue
            file_keys.add(rel)
            folder_keys.update(folders)
            # a partial file of older versions of fetch (visible name, no sidecar): unverifiable, and
            # ingestion would quarantine it as an unknown file type
            legacy = target.with_name(target.name + ".part")
            legacy_rel = rel + ".part"
            if legacy_rel not in listed_rels and legacy.is_file() and not legacy.is_symlink():
                legacy.unlink()
            size, etag = int(obj["Size"]), obj["ETag"].strip('"')
            if _present(target, rel, size, etag, manifest):
                report.skipped += 1
                report.files.append(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            got = _download(client, settings.bucket, key, part, sidecar, size, etag, chunk_size, report)
            if got is None:
                report.skipped_keys.append((key, "deleted from the bucket after it was listed"))
                continue
            size, etag, version_id = got
            if not _verified(part, size, etag):
                _discard(part, sidecar)
                raise FetchError(f"s3://{settings.bucket}/{key}: downloaded file fails size/MD5 check; "
                                 "the partial file was removed, run fetch again")
            os.replace(part, target)
            manifest.record(rel, target, etag, version_id)
            sidecar.unlink(missing_ok=True)
            report.downloaded += 1
            report.files.append(target)
    finally:
        manifest.flush()  # also after a failure, so that completed multipart files are not fetched again
    return report
