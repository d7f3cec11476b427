"""Download a wallet's market files from an S3-compatible bucket (the original data lived in Cloudflare R2).

``python -m workbench fetch --wallet 0xADDRESS`` copies ``s3://<bucket>/<prefix><wallet>/*`` to
``data/raw/merged_trades/<wallet>/``.

* **Idempotent**: a local file whose size matches the object's and, for single-part uploads, whose MD5
  matches the ETag, is skipped. Running twice downloads nothing the second time.
* **Resumable**: each object downloads to ``<name>.part`` and is renamed only when complete and
  verified; an interrupted run leaves the ``.part`` file, and the next run asks only for the missing
  bytes (an HTTP ``Range`` request). Nothing half-written ever carries the final name.

Settings come from the environment or a ``.env`` file at the project root (never committed):
``WORKBENCH_S3_ENDPOINT_URL`` (or ``S3_ENDPOINT_URL`` / ``R2_ENDPOINT_URL``), ``WORKBENCH_S3_BUCKET``
(or ``S3_BUCKET`` / ``R2_BUCKET``), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or
``R2_ACCESS_KEY_ID`` / ``R2_SECRET_ACCESS_KEY``) and optionally ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import config


class FetchError(RuntimeError):
    """Missing settings, an unreachable bucket, or a download that fails verification."""


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
    """What a fetch did. ``listed == downloaded + skipped`` on success."""

    listed: int = 0
    downloaded: int = 0
    resumed: int = 0
    skipped: int = 0
    bytes_downloaded: int = 0
    files: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"listed {self.listed}, downloaded {self.downloaded} ({self.resumed} resumed, "
                f"{self.bytes_downloaded:,} bytes), already present {self.skipped}")


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - ETag comparison, not security
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches(path: Path, size: int, etag: str) -> bool:
    """Local file equals the object: same size and, for single-part ETags (plain MD5), same MD5."""
    if not path.exists() or path.stat().st_size != size:
        return False
    return "-" in etag or _md5(path) == etag


def fetch_wallet(wallet: str, settings: S3Settings, *, prefix: str = "merged_trades/", out_dir: Path | None = None,
                 client: Any = None, chunk_size: int = 1 << 20, progress: bool = False) -> FetchReport:
    """Download every object under ``<prefix><wallet>/`` to ``out_dir/<wallet>/``.

    Parameters
    ----------
    wallet
        Wallet address (the folder name in the bucket).
    settings
        Bucket and credentials (see :meth:`S3Settings.from_env`).
    prefix
        Key prefix in front of the wallet folder.
    out_dir
        Local ``merged_trades`` folder; default ``config.paths().merged_trades``.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from tqdm.auto import tqdm

    client = client or settings.client()
    dest = Path(out_dir or config.paths().merged_trades) / wallet
    dest.mkdir(parents=True, exist_ok=True)
    key_prefix = f"{prefix}{wallet}/"
    report = FetchReport()
    try:
        objects = [o for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket,
                                                                                   Prefix=key_prefix)
                   for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except (BotoCoreError, ClientError) as exc:
        raise FetchError(f"cannot list s3://{settings.bucket}/{key_prefix}: {exc}") from exc
    report.listed = len(objects)
    for obj in tqdm(objects, desc="fetch", disable=not progress):
        rel = obj["Key"][len(key_prefix):]
        if not rel or rel.startswith("/") or ".." in Path(rel).parts:
            raise FetchError(f"refusing unsafe key {obj['Key']!r}")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        size, etag = int(obj["Size"]), obj["ETag"].strip('"')
        if _matches(target, size, etag):
            report.skipped += 1
            report.files.append(target)
            continue
        part = target.with_name(target.name + ".part")
        have = part.stat().st_size if part.exists() else 0
        if have > size:  # stale partial from a different object version
            part.unlink()
            have = 0
        try:
            if have < size:
                kwargs: dict[str, Any] = {"Bucket": settings.bucket, "Key": obj["Key"], "IfMatch": obj["ETag"]}
                if have:
                    kwargs["Range"] = f"bytes={have}-"
                    report.resumed += 1
                body = client.get_object(**kwargs)["Body"]
                with part.open("ab") as f:
                    for chunk in iter(lambda: body.read(chunk_size), b""):
                        f.write(chunk)
                        report.bytes_downloaded += len(chunk)
        except (BotoCoreError, ClientError) as exc:
            raise FetchError(f"download of s3://{settings.bucket}/{obj['Key']} failed "
                             f"(partial file kept for resume: {part}): {exc}") from exc
        if not _matches(part, size, etag):
            part.unlink(missing_ok=True)
            raise FetchError(f"s3://{settings.bucket}/{obj['Key']}: downloaded file fails size/MD5 check; "
                             "the partial file was removed, run fetch again")
        os.replace(part, target)
        report.downloaded += 1
        report.files.append(target)
    return report
