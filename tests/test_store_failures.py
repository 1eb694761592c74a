"""A store that fails ends every command in one line naming the URI and the cause, within a
bounded time, exit 1, nothing published: a store that is down from the start, one that dies
mid-ingest (inside Ray tasks), a bucket that does not exist, a ``LATEST`` that points outside.

The store is the real S3 server behind ``tests.servers.FaultyS3Proxy``; this module's Ray
starts with the proxy as its endpoint, so its workers reach the store the way a cluster's do.
"""

from __future__ import annotations

import time

import pytest
import s3fs

from genre_batch.cli import main
from genre_batch.commands import write_demo_catalogue
from tests.conftest import environ_set, local_ray
from tests.servers import SECRET_ACCESS_KEY, FaultyS3Proxy, free_ports

BUCKET = "gb-store-faults"


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def assert_one_line(text: str, *parts: str) -> str:
    lines = error_lines(text)
    assert len(lines) == 1, text
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in text and SECRET_ACCESS_KEY not in text
    return lines[0]


@pytest.fixture(scope="module")
def store(s3_server, tmp_path_factory):
    """The real server with a small catalogue, a proxy in front of it as every client's endpoint
    (two attempts per call, so that a dead store fails in seconds), and a Ray started in that
    environment."""
    direct = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint, skip_instance_cache=True)
    if not direct.exists(BUCKET):
        direct.mkdir(BUCKET)
    local = tmp_path_factory.mktemp("faultcat")
    write_demo_catalogue(local / "music", n_songs=6, seed=2, min_duration_s=8.0, max_duration_s=9.0)
    direct.put(str(local / "music"), f"{BUCKET}/", recursive=True)
    proxy = FaultyS3Proxy(s3_server.endpoint)
    with environ_set({"AWS_ENDPOINT_URL": proxy.endpoint, "AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": "standard"}):
        s3fs.S3FileSystem.clear_instance_cache()
        with local_ray():
            yield proxy, direct
    proxy.stop()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def healthy(store):
    proxy, direct = store
    proxy.down, proxy.down_after = False, None
    s3fs.S3FileSystem.clear_instance_cache()
    yield proxy, direct
    proxy.down, proxy.down_after = False, None


def test_a_store_that_dies_mid_ingest_fails_in_one_line_and_publishes_nothing(healthy, capfd):
    proxy, direct = healthy
    proxy.down_after = ("PUT", "/tiles/")  # the first tile shard lands, then the server is gone
    root = f"s3://{BUCKET}/died"
    code = main(["ingest", "--catalogue", f"s3://{BUCKET}/music", "--root", root, "--files-per-task", "1"])
    captured = capfd.readouterr()
    assert code == 1, captured.err
    assert proxy.down and proxy.dropped > 0
    line = assert_one_line(captured.err, f"s3://{BUCKET}/")
    assert "unreachable" in line or "did not answer" in line, line
    assert not direct.exists(f"{BUCKET}/died/ingest/LATEST")


@pytest.mark.parametrize("command", [["similar", "--song", "x"], ["genres"], ["ingest", "--catalogue", "CAT"]])
def test_a_store_that_is_down_fails_in_one_line_within_the_bound(store, capfd, command):
    (closed,) = free_ports(1)  # nothing listens there
    root = f"s3://{BUCKET}/down"
    argv = [part.replace("CAT", f"s3://{BUCKET}/music") for part in command] + ["--root", root]
    with environ_set({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}"}):
        s3fs.S3FileSystem.clear_instance_cache()
        started = time.perf_counter()
        code = main(argv)
        seconds = time.perf_counter() - started
    s3fs.S3FileSystem.clear_instance_cache()
    captured = capfd.readouterr()
    assert code == 1
    assert_one_line(captured.err, "s3://", "the store is unreachable")
    assert seconds < 60, f"{command[0]} took {seconds:.0f} s to give up"  # two attempts, not 75-90 s


@pytest.mark.parametrize("command", [["similar", "--song", "x"], ["genres"], ["evaluate"]])
def test_a_missing_bucket_is_said_so_not_nothing_published(healthy, capfd, command):
    code = main(command + ["--root", "s3://gb-no-such-bucket/x"])
    captured = capfd.readouterr()
    assert code == 1
    line = assert_one_line(captured.err, "no such bucket", "s3://gb-no-such-bucket")
    assert "published" not in line


@pytest.mark.parametrize("pointer", ["../../../planted", "a/b", "..", "v1\nv2", "/etc"])
def test_a_tampered_latest_is_refused(tmp_path, capfd, pointer):
    planted = tmp_path / "planted"
    planted.mkdir()
    root = tmp_path / "root"
    (root / "index").mkdir(parents=True)
    (root / "index" / "LATEST").write_text(pointer + "\n")
    assert main(["similar", "--root", str(root), "--song", "x"]) == 1
    assert_one_line(capfd.readouterr().err, "LATEST", "not a version or run name")


def test_two_runs_publishing_at_once_cannot_put_back_the_older_version(healthy):
    """Both runs write LATEST on the real store; whichever order they finish in, LATEST ends
    on the version of the run that began later."""
    from concurrent.futures import ThreadPoolExecutor

    from genre_batch.errors import StorageError
    from genre_batch.storage import latest_version, publish

    _, direct = healthy
    area = f"s3://{BUCKET}/concurrent/index"
    older, newer = "20261202T010000Z-aaaaaa", "20261202T010001Z-bbbbbb"
    publish(area, newer)  # the later run finished first

    def attempt(version: str) -> str:
        try:
            publish(area, version)
            return "published"
        except StorageError as exc:
            return str(exc)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(attempt, [older, newer]))
    assert "newer than" in results[0] and results[1] == "published"
    assert latest_version(area, "index") == newer
    assert direct.cat(f"{BUCKET}/concurrent/index/LATEST").decode().strip() == newer
