"""Joining a Ray cluster at an address where nothing listens: one line, in seconds, not minutes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genre_batch.errors import GenreBatchError
from pipelines._ray import check_reachable

REPO = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe goes


@pytest.mark.parametrize("form", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}", "http://127.0.0.1:{port}"])
def test_an_address_nobody_answers_is_one_error_within_seconds(form):
    address = form.format(port=closed_port())
    started = time.monotonic()
    with pytest.raises(GenreBatchError, match=r"nothing answers on 127\.0\.0\.1:\d+ .*ray start --head"):
        check_reachable(address)
    assert time.monotonic() - started < 20


def test_a_listening_address_and_the_names_ray_resolves_pass():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")
    for name in ("auto", "local"):
        check_reachable(name)


def test_the_cli_says_it_in_one_line(tmp_path):
    (tmp_path / "catalogue").mkdir()
    (tmp_path / "catalogue" / "song.mp3").write_bytes(b"\xff\xfb" + b"\0" * 1000)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "genre_batch.cli", "ingest", "--catalogue", str(tmp_path / "catalogue"),
         "--root", str(tmp_path / "root"), "--address", f"127.0.0.1:{closed_port()}"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: could not join the Ray cluster at 127.0.0.1:")
    assert time.monotonic() - started < 60
