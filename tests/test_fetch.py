"""`workbench fetch` against a real local S3 server (moto in server mode on 127.0.0.1), not a mock."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main
from workbench.data.fetch import FetchError, S3Settings, fetch_wallet, partial_paths

WALLET = "0x1234000000000000000000000000000000005678"


@pytest.fixture()
def bucket(s3):
    settings, client = s3
    name = settings.bucket
    files = {f"btc-updown-15m-{1767600000 + 900 * i}_prices.json": (b'{"slug": "x", "prices": []}' * (i + 1) * 5000)
             for i in range(4)}
    for key, body in files.items():
        client.put_object(Bucket=name, Key=f"merged_trades/{WALLET}/{key}", Body=body)
    client.put_object(Bucket=name, Key="merged_trades/0xother/ignored.json", Body=b"{}")
    return settings, client, files


def test_fetch_downloads_then_is_idempotent(bucket, tmp_path):
    settings, _, files = bucket
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (rep.listed, rep.downloaded, rep.skipped) == (4, 4, 0)
    for name, body in files.items():
        assert (tmp_path / WALLET / name).read_bytes() == body
    assert not list((tmp_path / WALLET).glob("*.part"))
    again = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert (again.downloaded, again.skipped, again.bytes_downloaded) == (0, 4, 0)


def test_fetch_resumes_a_partial_download(bucket, tmp_path):
    settings, client, files = bucket
    name, body = sorted(files.items())[-1]
    dest = tmp_path / WALLET
    dest.mkdir(parents=True)
    half = len(body) // 2
    # an interrupted earlier run: the partial file and its sidecar naming the object version it came from
    key = f"merged_trades/{WALLET}/{name}"
    part, sidecar = partial_paths(dest / name)
    part.write_bytes(body[:half])
    sidecar.write_text(json.dumps({"key": key, "etag": client.head_object(Bucket=settings.bucket, Key=key)["ETag"]
                                   .strip('"'), "size": len(body), "version_id": None}))
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert rep.resumed == 1 and rep.downloaded == 4
    assert (dest / name).read_bytes() == body
    assert not part.exists() and not sidecar.exists()
    # only the missing half of the partial file was transferred
    others = sum(len(b) for n, b in files.items() if n != name)
    assert rep.bytes_downloaded == others + len(body) - half


def test_fetch_replaces_a_changed_or_corrupt_file(bucket, tmp_path):
    settings, client, files = bucket
    fetch_wallet(WALLET, settings, out_dir=tmp_path)
    name = sorted(files)[0]
    (tmp_path / WALLET / name).write_bytes(b"corrupted" + files[name][9:])  # same size, other content
    rep = fetch_wallet(WALLET, settings, out_dir=tmp_path)
    assert rep.downloaded == 1 and (tmp_path / WALLET / name).read_bytes() == files[name]


def test_fetch_cli_reads_settings_from_env_file(bucket, tmp_path, monkeypatch, capsys):
    settings, _, _ = bucket
    for k in ("WORKBENCH_S3_BUCKET", "S3_BUCKET", "R2_BUCKET", "WORKBENCH_S3_ENDPOINT_URL", "S3_ENDPOINT_URL",
              "R2_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    env = tmp_path / ".env"
    env.write_text(f"WORKBENCH_S3_BUCKET={settings.bucket}\nWORKBENCH_S3_ENDPOINT_URL={settings.endpoint_url}\n")
    code = main(["fetch", "--wallet", WALLET, "--out", str(tmp_path / "mt"), "--env-file", str(env), "--quiet"])
    assert code == 0 and "downloaded 4" in capsys.readouterr().out
    assert len(list((tmp_path / "mt" / WALLET).glob("*.json"))) == 4


def test_fetch_errors_are_clear(bucket, tmp_path, monkeypatch):
    settings, _, _ = bucket
    for k in ("WORKBENCH_S3_BUCKET", "S3_BUCKET", "R2_BUCKET"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(FetchError, match="no bucket"):
        S3Settings.from_env(tmp_path / "missing.env")
    wrong = S3Settings(bucket="does-not-exist", endpoint_url=settings.endpoint_url, access_key="testing",
                       secret_key="testing", region="us-east-1")
    with pytest.raises(FetchError, match="cannot list"):
        fetch_wallet(WALLET, wrong, out_dir=tmp_path)
