"""The HTTP API against the CLI's code in one process: latency and requests per second.

    .venv/bin/python benchmarks/serve.py [--songs 60] [--work-dir DIR] [--requests 32] [--json out.json]

1. A root (made once in ``--work-dir``, reused): ``--songs`` demo songs of 28-32 s ingested, an
   untrained crnn published (latency does not depend on what the weights learned) and indexed;
   the query is a 30 s 44.1 kHz stereo mp3 of the demo that is not in the catalogue.
2. BASELINE, the CLI's code in one warm process (no start-up, no HTTP): ``PublishedIndex``'s
   ``analyse_source`` + ``classify_reply`` (what ``classify`` does per file) and
   ``similar_to_song`` + ``similar_song_reply``, each ``--requests`` times, one after another.
   Also once each, for scale: the CLI as a user starts it (a new process per answer).
3. ``genre-batch serve --replicas 1`` (a real process, its own Ray, loopback), then for 1, 4 and
   16 concurrent clients (threads with their own httpx connection) ``--requests`` requests per
   client count, of ``POST /api/classify`` (the mp3) and ``GET /api/similar?song=ID&k=10``:
   p50 / p95 latency and requests per second; the ratio to the baseline's p50.
4. The same with ``--replicas 2``: requests per second at 16 clients, and the ratio to 1 replica.

Bounded: a fixed number of requests, loopback only. Figures go into benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CLIENTS = (1, 4, 16)
MARKER = "serve-bench.json"


def build_root(work: Path, songs: int) -> dict[str, Any]:
    """Catalogue, ingest, untrained model, index; reused when the marker matches."""
    marker = work / MARKER
    if marker.exists() and json.loads(marker.read_text()).get("songs") == songs:
        return json.loads(marker.read_text())
    from genre_batch.cli import main
    from genre_batch.commands import write_demo_catalogue
    from genre_batch.synth import plan_catalogue
    from genre_batch.synth.writing import write_song
    from tests.model_helpers import publish_untrained_model

    shutil.rmtree(work, ignore_errors=True)
    catalogue, root = work / "catalogue", str(work / "root")
    write_demo_catalogue(catalogue, n_songs=songs, seed=11, min_duration_s=28.0, max_duration_s=32.0)
    assert main(["ingest", "--catalogue", str(catalogue), "--root", root]) == 0
    publish_untrained_model(root, "untrained")
    assert main(["index", "--root", root]) == 0
    query = work / "query.mp3"
    (plan,) = plan_catalogue(1, seed=99, min_duration_s=30.0, max_duration_s=30.0, source_format=(44100, 2))
    write_song(plan, query)
    info = {"songs": songs, "root": root, "query": str(query)}
    marker.write_text(json.dumps(info))
    return info


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p95_ms": 1000 * ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]}


def in_process(root: str, query: Path, song_id: str, requests: int) -> dict[str, dict[str, float]]:
    from genre_batch.answers import PublishedIndex
    from genre_batch.replies import classify_reply, similar_song_reply

    index = PublishedIndex(root)
    data = query.read_bytes()

    def classify() -> None:
        classify_reply(index, query.name, index.analyse_source(data, query.name))

    def similar() -> None:
        similar_song_reply(index, song_id, index.similar_to_song(song_id, 10))

    out = {}
    for name, call in (("classify", classify), ("similar", similar)):
        call()  # warm-up: the model, the table, the Annoy file
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        out[name] = {**percentiles(times), "rps": requests / sum(times)}
    return out


def cold_cli(root: str, query: Path, song_id: str) -> dict[str, float]:
    out = {}
    for name, argv in (("classify", ["classify", "--root", root, str(query)]),
                       ("similar", ["similar", "--root", root, "--song", song_id])):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "genre_batch.cli", *argv], check=True, capture_output=True, cwd=REPO)
        out[f"{name}_s"] = time.perf_counter() - started
    return out


@contextlib.contextmanager
def server(root: str, replicas: int):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = tempfile.mkdtemp(prefix="gb-bench-home-")
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, "-m", "genre_batch.cli", "serve", "--root", root, "--port", str(port),
                                "--replicas", str(replicas)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "HOME": home})
    import httpx

    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise SystemExit(f"serve exited {process.returncode}: {Path(log.name).read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                break
        if time.monotonic() - started > 300:
            process.kill()
            raise SystemExit("serve did not answer in 300 s")
        time.sleep(0.5)
    try:
        yield url, time.monotonic() - started
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def load(url: str, clients: int, requests: int, make: Callable[[Any], Any]) -> dict[str, float]:
    """``requests`` requests spread over ``clients`` threads; every answer must be 200."""
    import httpx

    times: list[float] = []
    failures: list[str] = []
    share = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]

    def run(count: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            for _ in range(count):
                started = time.perf_counter()
                response = make(client)
                times.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures.append(response.text[:200])

    threads = [threading.Thread(target=run, args=(n,)) for n in share if n]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed: {failures[0]}")
    return {**percentiles(times), "rps": len(times) / wall}


def over_http(url: str, query: Path, song_id: str, requests: int, clients: tuple[int, ...]) -> dict[str, Any]:
    data = query.read_bytes()
    calls = {
        "classify": lambda c: c.post("/api/classify", files={"file": (query.name, data, "audio/mpeg")}),
        "similar": lambda c: c.get("/api/similar", params={"song": song_id, "k": 10}),
    }
    out: dict[str, Any] = {}
    for name, make in calls.items():
        load(url, 1, 2, make)  # warm-up
        out[name] = {n: load(url, n, max(requests, n), make) for n in clients}
    return out


def main() -> None:
    from benchmarks.machine import machine

    parser = argparse.ArgumentParser(prog="benchmarks/serve.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=60, help="songs in the catalogue")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "gb-serve-bench")
    parser.add_argument("--requests", type=int, default=32, help="requests per endpoint and client count")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    print(f"machine: {machine()}", flush=True)
    info = build_root(args.work_dir, args.songs)
    root, query = info["root"], Path(info["query"])
    from genre_batch.answers import PublishedIndex

    song_id = str(PublishedIndex(root).predictions["song_id"].iloc[0])
    results: dict[str, Any] = {"machine": machine(), "songs": args.songs, "requests": args.requests}
    results["in_process"] = in_process(root, query, song_id, args.requests)
    results["cold_cli"] = cold_cli(root, query, song_id)
    with server(root, 1) as (url, start_s):
        results["start_s"] = start_s
        results["replicas_1"] = over_http(url, query, song_id, args.requests, CLIENTS)
    with server(root, 2) as (url, _):
        results["replicas_2"] = over_http(url, query, song_id, args.requests, (16,))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> None:
    base = results["in_process"]
    print(f"\nserve started in {results['start_s']:.1f} s; the CLI as a new process: "
          f"classify {results['cold_cli']['classify_s']:.1f} s, similar --song {results['cold_cli']['similar_s']:.1f} s")
    print(f"{'endpoint':<10} {'where':<22} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7} {'p50 / in-process':>17}")
    for name in ("classify", "similar"):
        print(f"{name:<10} {'in process (CLI code)':<22} {base[name]['p50_ms']:8.1f} {base[name]['p95_ms']:8.1f} "
              f"{base[name]['rps']:7.1f} {1.0:17.2f}")
        for replicas in (1, 2):
            for clients, row in results[f"replicas_{replicas}"][name].items():
                print(f"{'':<10} {f'HTTP, {replicas} repl., {clients} clients':<22} {row['p50_ms']:8.1f} "
                      f"{row['p95_ms']:8.1f} {row['rps']:7.1f} {row['p50_ms'] / base[name]['p50_ms']:17.2f}")
        one, two = results["replicas_1"][name][16]["rps"], results["replicas_2"][name][16]["rps"]
        print(f"{'':<10} 16 clients: 2 replicas / 1 replica = {two / one:.2f}x requests per second")


if __name__ == "__main__":
    main()
