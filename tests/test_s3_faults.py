"""Storage in trouble: transient S3 errors are retried, permanent ones fail in one line.

A proxy in front of the real S3 server (``tests.servers.FaultyS3Proxy``) throttles, drops and
denies requests the way a loaded or locked-down store does; boto, s3fs and pyarrow are not
patched. The jobs below fail before they start Ray, so this module needs no Ray.
"""

from __future__ import annotations

import pandas as pd
import pytest
import s3fs

from genre_batch import schemas
from genre_batch.cli import main
from genre_batch.storage import (
    check_writable,
    download_file,
    join,
    latest_version,
    list_prefix,
    publish,
    read_json,
    upload_file,
    walk_files,
    write_json,
)
from genre_batch.tables import read_frame, write_rows
from tests.servers import ACCESS_KEY_ID, SECRET_ACCESS_KEY, FaultyS3Proxy

BUCKET, DENIED = "gb-faults", "gb-denied"


@pytest.fixture
def proxy(s3_server, monkeypatch):
    """Clients go through the proxy (AWS_ENDPOINT_URL, the standard way); the test itself
    checks the real server directly."""
    direct = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint, skip_instance_cache=True)
    for bucket in (BUCKET, DENIED):
        if not direct.exists(bucket):
            direct.mkdir(bucket)
    faulty = FaultyS3Proxy(s3_server.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.endpoint)
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches clients; theirs know the old endpoint
    yield faulty, direct
    faulty.stop()
    s3fs.S3FileSystem.clear_instance_cache()


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_transient_errors_are_retried(proxy, tmp_path):
    faulty, direct = proxy
    faulty.slow_down_every, faulty.drop_every = 4, 9
    root = f"s3://{BUCKET}/retried"

    check_writable(root)
    write_json(join(root, "a/manifest.json"), {"songs": 3})
    assert read_json(join(root, "a/manifest.json")) == {"songs": 3}
    row = {"path": "s3://x/a.mp3", "relative_path": "a.mp3", "size_bytes": 1, "mtime": "t", "etag": None,
           "content_hash": None, "stage": "decode", "error_type": "AudioDecodeError", "message": "bad"}
    write_rows([row] * 50, schemas.ERRORS, join(root, "t/errors.parquet"), {"version": "v1"})
    assert len(read_frame(join(root, "t/errors.parquet"))) == 50
    blob = bytes(range(256)) * 4096  # 1 MiB
    (tmp_path / "blob").write_bytes(blob)
    upload_file(str(tmp_path / "blob"), join(root, "f/blob.bin"))
    download_file(join(root, "f/blob.bin"), str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == blob
    publish(join(root, "area"), "v1")
    assert latest_version(join(root, "area"), "test") == "v1"
    assert set(list_prefix(root)) == {"a", "t", "f", "area"}
    assert len(list(walk_files(root))) == 4

    assert faulty.slowed > 0 and faulty.dropped > 0, "the proxy must really have misbehaved"
    assert direct.cat(f"{BUCKET}/retried/area/LATEST") == b"v1\n"


def test_retries_exhausted_fail_in_one_line_and_publish_nothing(proxy, capsys, monkeypatch):
    faulty, direct = proxy
    faulty.slow_down_every = 1  # the store throttles everything, for longer than we retry
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")  # no adaptive rate limiting: fail in seconds
    root = f"s3://{BUCKET}/throttled"
    assert main(["ingest", "--catalogue", f"s3://{BUCKET}/music", "--root", root]) == 1
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and root in lines[0] and "reduce your request rate" in lines[0], err
    assert "Traceback" not in err
    assert not direct.exists(f"{BUCKET}/throttled")


@pytest.mark.parametrize("denied", ["root", "catalogue"])
def test_access_denied_fails_in_one_line_and_publishes_nothing(proxy, capsys, denied):
    faulty, direct = proxy
    faulty.denied_buckets = {DENIED}
    catalogue = f"s3://{DENIED}/music" if denied == "catalogue" else f"s3://{BUCKET}/music"
    root = f"s3://{DENIED}/out" if denied == "root" else f"s3://{BUCKET}/denied-catalogue"
    assert main(["ingest", "--catalogue", catalogue, "--root", root]) == 1
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1, captured.err
    # The store's own words: "Access Denied" (a body) or "Forbidden" (a HEAD answer has none).
    assert (root if denied == "root" else catalogue) in lines[0]
    assert "Access Denied" in lines[0] or "Forbidden" in lines[0], lines[0]
    assert "Traceback" not in captured.err
    for secret in (SECRET_ACCESS_KEY, ACCESS_KEY_ID):
        assert secret not in captured.err + captured.out
    assert faulty.denied > 0
    assert not direct.exists(f"{root.removeprefix('s3://')}/ingest/LATEST")


def test_reads_after_recovery_see_the_real_objects(proxy):
    """The proxy forwards faithfully: what is written through it is what the server holds."""
    faulty, direct = proxy
    write_json(f"s3://{BUCKET}/faithful/x.json", {"a": [1, 2]})
    assert pd.read_json(direct.open(f"{BUCKET}/faithful/x.json")).to_dict("list") == {"a": [1, 2]}
    assert faulty.requests > 0


def test_credentials_from_a_profile(s3_server, monkeypatch, tmp_path):
    """The standard AWS chain, not only environment keys: a named profile in a credentials file."""
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[genre-batch]\naws_access_key_id = {ACCESS_KEY_ID}\n"
                           f"aws_secret_access_key = {SECRET_ACCESS_KEY}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "genre-batch")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        direct = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint, skip_instance_cache=True)
        if not direct.exists(BUCKET):
            direct.mkdir(BUCKET)
        write_json(f"s3://{BUCKET}/profile/x.json", {"from": "profile"})
        assert read_json(f"s3://{BUCKET}/profile/x.json") == {"from": "profile"}
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
