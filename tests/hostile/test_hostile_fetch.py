"""Hostile inputs for ``workbench fetch``: bad arguments, unsafe or clashing keys, objects that change under a
resumed download, same-size files from an older object version.

Runs against a real local S3 server (moto in server mode on 127.0.0.1), like ``tests/test_fetch.py``. Each test
states the exact outcome: the error line, the skip reason, the bytes on disk, and that nothing was written outside
``<out>/<wallet>/``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Callable

import pytest
from botocore.exceptions import ReadTimeoutError

from workbench.cli import main
from workbench.data.fetch import MANIFEST_NAME, FetchError, S3Settings, fetch_wallet, partial_paths

WALLET = "0xabcd000000000000000000000000000000001234"
PREFIX = f"merged_trades/{WALLET}/"
MIB = 1 << 20
GOOD = b'{"slug": "good", "prices": []}'


def _put_multipart(client: Any, bucket: str, key: str, body: bytes) -> str:
    """Upload ``body`` in 5 MiB parts (the S3 minimum but for the last); return the ``<md5>-<N>`` ETag."""
    up = client.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for n, start in enumerate(range(0, len(body), 5 * MIB), start=1):
        r = client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                               Body=body[start:start + 5 * MIB])
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    etag = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                            MultipartUpload={"Parts": parts})["ETag"].strip('"')
    assert etag.endswith(f"-{len(parts)}")
    return etag


def _version(seed: int, size: int = 5 * MIB + 4096) -> bytes:
    return random.Random(seed).randbytes(size)


def _stray_files(root: Path, wallet_dir: Path) -> list[Path]:
    """Files (and links) under ``root`` that are not inside ``wallet_dir``."""
    return sorted(p for p in root.rglob("*") if (p.is_file() or p.is_symlink())
                  and not p.is_relative_to(wallet_dir))


class _CutBody:
    """A response body whose connection drops after ``limit`` bytes (an interrupted download)."""

    def __init__(self, body: Any, limit: int) -> None:
        self.body, self.limit, self.sent = body, limit, 0

    def read(self, amt: int | None = None) -> bytes:
        if self.sent >= self.limit:
            raise ReadTimeoutError(endpoint_url="http://127.0.0.1/cut")
        data = self.body.read(min(amt or self.limit, self.limit - self.sent))
        self.sent += len(data)
        return data

    def close(self) -> None:
        self.body.close()


class _Client:
    """A real client, with hooks: run ``before_get`` once before the first GetObject, cut bodies short."""

    def __init__(self, inner: Any, before_get: Callable[[], Any] | None = None, cut_after: int | None = None):
        self.inner, self.before_get, self.cut_after = inner, before_get, cut_after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        if self.before_get is not None:
            hook, self.before_get = self.before_get, None
            hook()
        resp = self.inner.get_object(**kwargs)
        if self.cut_after is not None:
            resp["Body"] = _CutBody(resp["Body"], self.cut_after)
        return resp


def _interrupt(settings: S3Settings, client: Any, out: Path, after: int) -> None:
    """A fetch whose connection drops after ``after`` bytes of the first object."""
    with pytest.raises(FetchError, match="partial file kept for resume"):
        fetch_wallet(WALLET, settings, out_dir=out, client=_Client(client, cut_after=after), chunk_size=256 << 10)


# --- 1. the --wallet and --out arguments --------------------------------------------------------------------


@pytest.mark.parametrize("wallet", ["../../escaped", "..", ".", "...", "a/b", "/tmp/abs", "", "x\x00y", "0xab cd"])
def test_unsafe_wallet_is_rejected_before_anything_is_written(s3, tmp_path, wallet):
    settings, client = s3
    client.put_object(Bucket=settings.bucket, Key=f"merged_trades/{wallet}/x.json", Body=GOOD)
    out = tmp_path / "a" / "b" / "out"  # deep enough that '../../escaped' still lands inside tmp_path
    with pytest.raises(FetchError, match=r"^--wallet .* is not a single safe folder name"):
        fetch_wallet(wallet, settings, out_dir=out)
    assert list(tmp_path.rglob("*")) == []  # not even a folder was created


def _no_network(monkeypatch) -> None:
    def refuse(self: S3Settings) -> Any:
        raise AssertionError("fetch opened a connection before checking its arguments")

    monkeypatch.setattr(S3Settings, "client", refuse)


def test_cli_rejects_an_unsafe_wallet_with_one_line_and_exit_2(s3, tmp_path, monkeypatch, capsys):
    settings, _ = s3
    _no_network(monkeypatch)
    out = tmp_path / "a" / "b" / "out"
    code = main(["fetch", "--wallet", "../../escaped", "--out", str(out), "--bucket", settings.bucket,
                 "--endpoint-url", settings.endpoint_url, "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == ("error: --wallet '../../escaped' is not a single safe folder name (1-128 of A-Z a-z "
                            "0-9 '_' '.' '-', not only dots), e.g. a 0x... address\n")
    assert list(tmp_path.rglob("*")) == []


def test_cli_rejects_an_out_that_is_a_file_with_one_line_and_exit_2(s3, tmp_path, monkeypatch, capsys):
    settings, _ = s3
    _no_network(monkeypatch)
    out = tmp_path / "out"
    out.write_text("not a folder")
    code = main(["fetch", "--wallet", WALLET, "--out", str(out), "--bucket", settings.bucket,
                 "--endpoint-url", settings.endpoint_url, "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == f"error: --out {str(out)!r} exists and is not a folder\n"
    assert out.read_text() == "not a folder"


def test_wallet_folder_that_is_a_file_is_a_usage_error(s3, tmp_path):
    settings, client = s3
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}x.json", Body=GOOD)
    (tmp_path / WALLET).write_text("in the way")
    with pytest.raises(FetchError, match=r"^--out .* exists and is not the wallet's folder$"):
        fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (tmp_path / WALLET).read_text() == "in the way"


# --- 2. unsafe and clashing keys are skipped with a reason; the rest is fetched -------------------------------

UNSAFE_KEYS = [
    (".", "'.' or '..' path component in key"),
    ("..", "'.' or '..' path component in key"),
    ("../escaped.json", "'.' or '..' path component in key"),
    ("sub/../../escaped.json", "'.' or '..' path component in key"),
    ("/etc/escaped.json", "absolute path (key part starts with '/')"),
    ("", "folder marker (key ends with '/'), not a file"),
    ("sub/", "folder marker (key ends with '/'), not a file"),
    ("a//b.json", "empty path component ('//') in key"),
    ("..\\..\\escaped.json", "backslash in key (a path separator on Windows)"),
    ("bad\x00.json", "NUL character in key"),
    ("bad\x1b[2J.json", "control character in key"),
    ("bad\t.json", "control character in key"),
    ("bad\x7f.json", "control character in key"),
    (MANIFEST_NAME, "reserved name (fetch's own manifest or partial-download files)"),
    (".zlast.json.part", "reserved name (fetch's own manifest or partial-download files)"),
    ("sub/.x.json.part.meta", "reserved name (fetch's own manifest or partial-download files)"),
    ("l" * 250 + ".json", "path component longer than 244 bytes"),
]


@pytest.mark.parametrize(("rel", "reason"), UNSAFE_KEYS, ids=[repr(r) for r, _ in UNSAFE_KEYS])
def test_unsafe_key_is_skipped_with_its_reason_and_the_rest_is_fetched(s3, tmp_path, rel, reason):
    settings, client = s3
    out = tmp_path / "out"
    client.put_object(Bucket=settings.bucket, Key=PREFIX + rel, Body=b"HOSTILE")
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}zlast.json", Body=GOOD)  # listed after the key
    rep = fetch_wallet(WALLET, settings, out_dir=out)
    assert rep.skipped_keys == [(PREFIX + rel, reason)]
    assert (rep.listed, rep.downloaded, rep.skipped) == (2, 1, 0)
    wallet_dir = out / WALLET
    assert (wallet_dir / "zlast.json").read_bytes() == GOOD
    assert _stray_files(tmp_path, wallet_dir) == []
    assert sorted(p.name for p in wallet_dir.rglob("*")) == [MANIFEST_NAME, "zlast.json"]
    assert f"skipped 1 key(s):\n  skipped {PREFIX + rel!r}: {reason}" in str(rep)


def test_file_key_and_folder_key_with_the_same_name_skip_the_later_one(s3, tmp_path):
    settings, client = s3
    for key, body in {"a": b"file a", "a/b.json": b"file a/b.json", "c.json": GOOD}.items():
        client.put_object(Bucket=settings.bucket, Key=PREFIX + key, Body=body)
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert rep.skipped_keys == [(f"{PREFIX}a/b.json",
                                 "file/folder conflict: needs a folder 'a', which is also a file key")]
    assert (rep.downloaded, rep.skipped) == (2, 0)
    assert (tmp_path / WALLET / "a").read_bytes() == b"file a"
    assert (tmp_path / WALLET / "c.json").read_bytes() == GOOD
    assert _stray_files(tmp_path, tmp_path / WALLET) == []
    # and again: the same answer, nothing downloaded twice
    again = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (again.downloaded, again.skipped, again.skipped_keys) == (0, 2, rep.skipped_keys)


def test_local_folder_in_the_way_of_a_file_key_is_skipped(s3, tmp_path):
    settings, client = s3
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}x.json", Body=GOOD)
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}y.json", Body=GOOD)
    (tmp_path / WALLET / "x.json").mkdir(parents=True)
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert rep.skipped_keys == [(f"{PREFIX}x.json",
                                 "a local folder is in the way: the target is a folder, not a file")]
    assert (tmp_path / WALLET / "x.json").is_dir() and (tmp_path / WALLET / "y.json").read_bytes() == GOOD
    assert _stray_files(tmp_path, tmp_path / WALLET) == []


def test_local_file_in_the_way_of_a_folder_key_is_skipped(s3, tmp_path):
    settings, client = s3
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}sub/x.json", Body=GOOD)
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}y.json", Body=GOOD)
    (tmp_path / WALLET).mkdir()
    (tmp_path / WALLET / "sub").write_bytes(b"a local file")
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert rep.skipped_keys == [(f"{PREFIX}sub/x.json",
                                 "a local file is in the way: 'sub' is a file, not a folder")]
    assert (tmp_path / WALLET / "sub").read_bytes() == b"a local file"
    assert (tmp_path / WALLET / "y.json").read_bytes() == GOOD


def test_symlink_out_of_the_wallet_folder_is_not_followed(s3, tmp_path):
    settings, client = s3
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}sub/x.json", Body=b"HOSTILE")
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}y.json", Body=GOOD)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out" / WALLET).mkdir(parents=True)
    (tmp_path / "out" / WALLET / "sub").symlink_to(outside, target_is_directory=True)
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path / "out")
    assert rep.skipped_keys == [(f"{PREFIX}sub/x.json", "resolves outside the wallet folder (a symlink in the way)")]
    assert list(outside.iterdir()) == []
    assert (tmp_path / "out" / WALLET / "y.json").read_bytes() == GOOD


def test_object_deleted_after_the_listing_is_skipped(s3, tmp_path):
    settings, client = s3
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}gone.json", Body=GOOD)
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}kept.json", Body=GOOD)
    hooked = _Client(client, before_get=lambda: client.delete_object(Bucket=settings.bucket,
                                                                      Key=f"{PREFIX}gone.json"))
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path, client=hooked)
    assert rep.skipped_keys == [(f"{PREFIX}gone.json", "deleted from the bucket after it was listed")]
    assert (rep.listed, rep.downloaded) == (2, 1)
    assert sorted(p.name for p in (tmp_path / WALLET).iterdir()) == [MANIFEST_NAME, "kept.json"]


def test_cli_prints_the_skipped_keys_and_their_reasons(s3, tmp_path, capsys):
    settings, client = s3
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}.", Body=b"HOSTILE")
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}sub/", Body=b"")
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}ok.json", Body=GOOD)
    code = main(["fetch", "--wallet", WALLET, "--out", str(tmp_path), "--bucket", settings.bucket,
                 "--endpoint-url", settings.endpoint_url, "--quiet"])
    assert code == 0
    assert capsys.readouterr().out == (
        "listed 3, downloaded 1 (0 resumed, 30 bytes), already present 0, skipped 2 key(s):\n"
        f"  skipped '{PREFIX}.': '.' or '..' path component in key\n"
        f"  skipped '{PREFIX}sub/': folder marker (key ends with '/'), not a file\n")


# --- 3. a partial download is resumed only from the same object version ---------------------------------------


def test_multipart_object_changed_since_the_interruption_is_downloaded_afresh(s3, tmp_path):
    settings, client = s3
    key, v1, v2 = f"{PREFIX}big.json", _version(1), _version(2)
    _put_multipart(client, settings.bucket, key, v1)
    _interrupt(settings, client, tmp_path, after=len(v1) // 2)
    _put_multipart(client, settings.bucket, key, v2)  # same size, other content, other ETag
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    got = (tmp_path / WALLET / "big.json").read_bytes()
    assert got != v1[:len(v1) // 2] + v2[len(v1) // 2:], "half old + half new version"
    assert got == v2
    assert (rep.downloaded, rep.resumed, rep.restarted, rep.bytes_downloaded) == (1, 0, 1, len(v2))
    assert sorted(p.name for p in (tmp_path / WALLET).iterdir()) == [MANIFEST_NAME, "big.json"]


def test_unchanged_multipart_object_resumes_from_the_partial_file(s3, tmp_path):
    settings, client = s3
    key, v1 = f"{PREFIX}big.json", _version(3)
    _put_multipart(client, settings.bucket, key, v1)
    _interrupt(settings, client, tmp_path, after=3 * MIB)
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (rep.downloaded, rep.resumed, rep.restarted, rep.bytes_downloaded) == (1, 1, 0, len(v1) - 3 * MIB)
    assert (tmp_path / WALLET / "big.json").read_bytes() == v1


def test_object_replaced_between_listing_and_ranged_get_fails_412_and_restarts(s3, tmp_path):
    settings, client = s3
    key, v1, v2 = f"{PREFIX}big.json", _version(4), _version(5)
    _put_multipart(client, settings.bucket, key, v1)
    _interrupt(settings, client, tmp_path, after=2 * MIB)
    # the listing still shows v1 (so the sidecar matches and the fetch resumes) but v2 is what the GET finds
    hooked = _Client(client, before_get=lambda: _put_multipart(client, settings.bucket, key, v2))
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path, client=hooked)
    assert (rep.downloaded, rep.resumed, rep.restarted, rep.bytes_downloaded) == (1, 0, 1, len(v2))
    assert (tmp_path / WALLET / "big.json").read_bytes() == v2
    assert sorted(p.name for p in (tmp_path / WALLET).iterdir()) == [MANIFEST_NAME, "big.json"]
    # the manifest records the version on disk (v2), so the next run finds it present
    again = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (again.downloaded, again.skipped) == (0, 1)


def test_object_replaced_between_listing_and_first_get_is_fetched_in_its_new_version(s3, tmp_path):
    settings, client = s3
    key = f"{PREFIX}x.json"
    client.put_object(Bucket=settings.bucket, Key=key, Body=b"old version")
    hooked = _Client(client, before_get=lambda: client.put_object(Bucket=settings.bucket, Key=key,
                                                                  Body=b"the new version"))
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path, client=hooked)
    assert (rep.downloaded, rep.restarted, rep.skipped_keys) == (1, 1, [])
    assert (tmp_path / WALLET / "x.json").read_bytes() == b"the new version"


@pytest.mark.parametrize("part_name", [".x.json.part", "x.json.part"], ids=["partial", "legacy-partial"])
def test_partial_file_without_sidecar_is_discarded_not_resumed(s3, tmp_path, part_name):
    settings, client = s3
    body = b'{"slug": "x", "prices": [1, 2, 3, 4, 5, 6, 7, 8, 9]}'
    client.put_object(Bucket=settings.bucket, Key=f"{PREFIX}x.json", Body=body)
    (tmp_path / WALLET).mkdir()
    (tmp_path / WALLET / part_name).write_bytes(b"GARBAGE FROM SOMEWHERE")  # no sidecar: origin unknown
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (rep.downloaded, rep.resumed, rep.bytes_downloaded) == (1, 0, len(body))
    assert (tmp_path / WALLET / "x.json").read_bytes() == body
    assert sorted(p.name for p in (tmp_path / WALLET).iterdir()) == [MANIFEST_NAME, "x.json"]


def test_interrupted_download_leaves_only_files_that_ingestion_skips(s3, tmp_path):
    settings, client = s3
    key, v1 = f"{PREFIX}big.json", _version(6)
    etag = _put_multipart(client, settings.bucket, key, v1)
    _interrupt(settings, client, tmp_path, after=MIB)
    part, sidecar = partial_paths(tmp_path / WALLET / "big.json")
    assert sorted(p.name for p in (tmp_path / WALLET).iterdir()) == [part.name, sidecar.name]
    # ingestion skips names starting with '.', and notebook 01 globs '*.json': neither may match
    assert all(p.name.startswith(".") and not p.name.endswith(".json") for p in (tmp_path / WALLET).iterdir())
    assert part.read_bytes() == v1[:MIB]
    assert json.loads(sidecar.read_text()) == {"key": key, "etag": etag, "size": len(v1), "version_id": None}


# --- 4. a same-size local file is present only if it is the current object version ----------------------------


def test_same_size_multipart_file_with_a_changed_remote_etag_is_fetched_again(s3, tmp_path):
    settings, client = s3
    key, v1, v2 = f"{PREFIX}big.json", _version(7), _version(8)
    _put_multipart(client, settings.bucket, key, v1)
    first = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert first.downloaded == 1
    assert fetch_wallet(WALLET, settings, out_dir=tmp_path).skipped == 1  # still idempotent
    _put_multipart(client, settings.bucket, key, v2)
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (rep.downloaded, rep.skipped, rep.bytes_downloaded) == (1, 0, len(v2))
    assert (tmp_path / WALLET / "big.json").read_bytes() == v2
    manifest = json.loads((tmp_path / WALLET / MANIFEST_NAME).read_text())
    assert manifest["objects"]["big.json"]["etag"] == client.head_object(Bucket=settings.bucket,
                                                                         Key=key)["ETag"].strip('"')


def test_same_size_multipart_file_edited_locally_is_fetched_again(s3, tmp_path):
    settings, client = s3
    key, v1 = f"{PREFIX}big.json", _version(9)
    _put_multipart(client, settings.bucket, key, v1)
    fetch_wallet(WALLET, settings, out_dir=tmp_path)
    local = tmp_path / WALLET / "big.json"
    st = local.stat()
    local.write_bytes(b"X" + v1[1:])  # same size, other content
    os.utime(local, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later write (coarse clocks aside)
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (rep.downloaded, rep.skipped) == (1, 0)
    assert local.read_bytes() == v1


def test_multipart_file_without_manifest_entry_is_not_trusted(s3, tmp_path):
    settings, client = s3
    key, v1, v2 = f"{PREFIX}big.json", _version(10), _version(11)
    _put_multipart(client, settings.bucket, key, v2)
    (tmp_path / WALLET).mkdir()
    (tmp_path / WALLET / "big.json").write_bytes(v1)  # same size, put there by someone else
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (rep.downloaded, rep.skipped) == (1, 0)
    assert (tmp_path / WALLET / "big.json").read_bytes() == v2
