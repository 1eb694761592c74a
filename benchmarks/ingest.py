"""Ingest throughput, five ways (and their variants), on the same mp3 files in one run.

    .venv/bin/python benchmarks/ingest.py --songs 200 [--catalogue DIR] [--investigate]

1. decode alone (``decode_audio``: soundfile + mono + soxr to 22 050 Hz), one process;
1c. decode + the windowed FFT of every STFT frame and nothing more, one process: (1c)/(1) is the
   ceiling of (2)/(1) for any ingest that makes this log-mel, however fast the rest;
2. our ingest core (``read_and_ingest`` per file + ``write_tile_shard`` per group of
   ``--files-per-task`` files), one process;
3. the hobby way (``librosa.load`` + ``melspectrogram`` + ``power_to_db`` + one matplotlib
   PNG per 256-frame tile), one process;
4. the ingest core over ``multiprocessing.Pool(os.cpu_count())``, one shard per group, forked
   from this warmed-up process (its children start with every module loaded);
4b. the same pool as a plain script runs it: from a new process, whose children load torch etc.
   on their first file; timed from inside that process, as 5b;
5. the real Ray Data job ``pipelines.ingest.run_ingest``, ``ray.init`` timed apart;
5w. the same job again from the same driver: its workers are already started and warm, so
   (5w)/(4) is what Ray Data itself costs against the pool;
5b. the same job again from a new driver process on the same Ray, as the next ``ray job
   submit`` on a running cluster: new workers (a worker belongs to one job), Ray Data's
   detached actors already up; timed from inside that driver, its start-up and connect apart;
5c. the job of 5b with a UDF that does nothing (same records, blocks, settings; no audio):
   Ray Data's per-job cost, from which a ceiling of (5b)/(4b) follows.

For 5 and 5w, Ray's own task events (``ray.timeline``) say where the job's seconds went: when
each worker's first task began, what it took against the median task, busy time, idle gaps.

Each single-process measurement runs once over its whole set, after one warm-up call of
every code path (librosa compiles numba code on first use). Ratios are compared with the
project's targets and printed as PASS/FAIL. ``--investigate`` adds what explains the Ray
number: a files-per-task sweep (Ray and pool), plain Ray tasks over the same groups, and
the cost of a cold worker process (imports + first file, with and without a numba cache).

BLAS/OpenMP threads are limited to ``--threads`` (default 1) before numpy is imported, so
"one process" means one core, and pool workers match Ray workers (Ray sets
OMP_NUM_THREADS to the task's CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/ingest.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--songs", type=int, default=200, help="songs in the catalogue (default: 200)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per song (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="catalogue seed (default: 0)")
    parser.add_argument("--source-format", default="mixed",
                        help="'mixed' (default): the demo's mix of 22.05/44.1 kHz mono/stereo mp3s, as in "
                        "earlier results; or sample rate x channels of every file, e.g. 44100x2 (what "
                        "real catalogues hold)")
    parser.add_argument(
        "--catalogue",
        default=None,
        help="directory for the catalogue, reused when it already holds the same songs/duration/seed "
        "(default: a temporary directory, deleted at the end)",
    )
    parser.add_argument("--work-dir", default=None, help="where outputs go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the outputs (tiles, PNGs) at the end")
    parser.add_argument("--files-per-task", type=int, default=8,
                        help="files per group = per shard, for (2), (4) and (5) (default: 8, as pipelines.ingest)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="pool size for (4) (default: os.cpu_count())")
    parser.add_argument("--hobby-songs", type=int, default=0,
                        help="songs for the hobby way (3); 0 = all (default: 0)")
    parser.add_argument("--hobby-style", choices=("imsave", "figure"), default="imsave",
                        help="imsave: plt.imsave per tile; figure: figure + imshow + savefig per tile "
                        "(default: imsave, the cheaper of the two)")
    parser.add_argument("--other-style-songs", type=int, default=40,
                        help="also time the other hobby style on this many songs (row 3b; 0 = skip; default: 40)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads per process (default: 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the one-process steps (1), (1c), (2), (3), (3b), alternated; the fastest "
                        "round of each counts (default: 1)")
    parser.add_argument("--skip-ray", action="store_true", help="skip (5)")
    parser.add_argument("--investigate", action="store_true",
                        help="after the five steps: files-per-task sweep, plain Ray tasks, cold-worker probe")
    parser.add_argument("--sweep", default="2,4,8,16,25",
                        help="files-per-task values for --investigate (default: 2,4,8,16,25)")
    parser.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    return parser


ARGS = build_parser().parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Before numpy is imported anywhere: one BLAS/OpenMP thread per process unless told otherwise.
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ.setdefault(_name, str(ARGS.threads))
    os.environ.setdefault("MPLBACKEND", "Agg")

import logging  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from genre_batch.catalogue import CatalogueFile, list_catalogue  # noqa: E402
from genre_batch.config import FeatureConfig, SplitConfig  # noqa: E402
from genre_batch.decode import decode_audio  # noqa: E402
from genre_batch.ingest import FileOutcome, read_and_ingest, read_catalogue_file, write_tile_shard  # noqa: E402
from benchmarks.catalogue import prepare_catalogue  # noqa: E402

logger = logging.getLogger("benchmarks.ingest")

FEATURES = FeatureConfig()
SPLITS = SplitConfig()
TARGETS = {
    "core_vs_hobby": 5.0,  # (2)/(3), x-realtime per core
    "core_vs_decode": 0.8,  # (2)/(1), x-realtime per core
    "ray_vs_pool": 0.8,  # (5)/(4), x-realtime on all cores
}


# --------------------------------------------------------------------------------------
# Measuring: wall, CPU, load, peak RSS of the process tree
# --------------------------------------------------------------------------------------


@dataclass
class Measurement:
    step: str
    songs: int
    audio_s: float
    wall_s: float
    cores: int
    cpu_s: float | None = None  # CPU seconds of this process, its reaped children and its live descendants
    peak_rss_mib: float | None = None  # peak sum of RSS over this process and its descendants
    load_before: float | None = None
    load_after: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def songs_per_s(self) -> float:
        return self.songs / self.wall_s

    @property
    def x_realtime(self) -> float:
        return self.audio_s / self.wall_s

    @property
    def x_realtime_per_core(self) -> float:
        return self.x_realtime / self.cores


def _descendants(root_pid: int) -> list[int]:
    """root_pid and every live descendant, from /proc (no psutil in this venv)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may hold spaces, so split after ")".
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    pids, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(parents.get(pid, []))
    return pids


def _tree_rss_bytes(root_pid: int) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in _descendants(root_pid):
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * page
        except OSError:
            continue
    return total


def _tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) of the live descendants of root_pid, root excluded (os.times has it)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _descendants(root_pid)[1:]:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


class RssSampler:
    """Peak summed RSS of this process tree, sampled every ``interval`` s in a thread.

    Shared pages (Ray's /dev/shm object store, forked pool workers) count once per process
    that maps them, so the figure is an upper bound.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        if sys.platform == "linux":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))


def measure(step: str, songs: int, audio_s: float, cores: int, body: Callable[[], dict[str, Any] | None],
            sample_rss: bool = True) -> Measurement:
    """Run ``body`` once, timing wall (perf_counter) and CPU (os.times: self + reaped children;
    /proc: live descendants such as Ray's raylet and workers, whose CPU a step may add to)."""
    load_before = os.getloadavg()[0]
    tree_before = _tree_cpu_s(os.getpid()) if sys.platform == "linux" else 0.0
    cpu_before = os.times()
    with RssSampler() if sample_rss else _no_sampler() as sampler:
        started = time.perf_counter()
        notes = body() or {}
        wall = time.perf_counter() - started
    cpu_after = os.times()
    tree_after = _tree_cpu_s(os.getpid()) if sys.platform == "linux" else 0.0
    cpu = tree_after - tree_before + sum(getattr(cpu_after, k) - getattr(cpu_before, k)
                                         for k in ("user", "system", "children_user", "children_system"))
    result = Measurement(
        step=step, songs=songs, audio_s=audio_s, wall_s=wall, cores=cores, cpu_s=cpu,
        peak_rss_mib=(sampler.peak / 2**20) if sampler is not None and sampler.peak else None,
        load_before=load_before, load_after=os.getloadavg()[0], notes=notes,
    )
    if audio_s:
        logger.info("%s: %.2f s wall, %.0fx realtime (%.0fx per core)", step, wall, result.x_realtime,
                    result.x_realtime_per_core)
    else:  # (1) and (2) learn the audio seconds from (1) after their rounds
        logger.info("%s: %.2f s wall", step, wall)
    return result


def fastest(measurements: list[Measurement]) -> Measurement:
    """The quickest of repeated runs of one step (as ``timeit`` reports): on a shared machine
    other load only ever adds time. Every round's wall time stays in the notes."""
    best = min(measurements, key=lambda m: m.wall_s)
    best.notes["rounds_wall_s"] = [round(m.wall_s, 2) for m in measurements]
    return best


class _no_sampler:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --------------------------------------------------------------------------------------
# The catalogue: generated once, reused when --catalogue holds the same one
# --------------------------------------------------------------------------------------


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def groups_of(files: Sequence[CatalogueFile], size: int) -> list[list[CatalogueFile]]:
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


# --------------------------------------------------------------------------------------
# The five ways
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedFile:
    duration_s: float  # decoded audio, seconds
    decode_s: float  # wall seconds of read + decode_audio
    source_format: str  # "44100 Hz stereo", ...


def decode_all(files: Sequence[CatalogueFile]) -> dict[str, DecodedFile]:
    """(1) read + decode_audio, per file."""
    decoded = {}
    for file in files:
        started = time.perf_counter()
        audio = decode_audio(read_bytes(file.uri), name=file.relative_path,
                             target_sample_rate=FEATURES.sample_rate)
        seconds = time.perf_counter() - started
        channels = {1: "mono", 2: "stereo"}.get(audio.source_channels, f"{audio.source_channels} ch")
        decoded[file.uri] = DecodedFile(audio.duration_s, seconds, f"{audio.source_sample_rate} Hz {channels}")
    return decoded


def windowed_fft(samples: Any) -> None:
    """The one part of featurising that no log-mel of this geometry can skip: the windowed FFT of
    every frame, done as ``features.mel_power`` does it (torch, 128 frames a call), without the
    squares, the mel product, dB, tiles, hash, tags or the shard write."""
    import torch

    from genre_batch.features import _FRAMES_PER_CHUNK, _window, stft_frames

    frames = stft_frames(samples, FEATURES)
    window = _window(FEATURES.n_fft)
    for start in range(0, len(frames), _FRAMES_PER_CHUNK):
        torch.fft.rfft(torch.from_numpy(frames[start : start + _FRAMES_PER_CHUNK] * window), dim=1)


def decode_fft_all(files: Sequence[CatalogueFile]) -> dict[str, float]:
    """(1c) read + decode_audio + ``windowed_fft``, per file: (1c)/(1) is the ceiling of (2)/(1)
    for any ingest that makes this STFT, however fast everything after the FFT is."""
    seconds = {}
    for file in files:
        started = time.perf_counter()
        audio = decode_audio(read_bytes(file.uri), name=file.relative_path,
                             target_sample_rate=FEATURES.sample_rate)
        windowed_fft(audio.samples)
        seconds[file.uri] = time.perf_counter() - started
    return seconds


def ingest_group(job: tuple[list[CatalogueFile], str]) -> dict[str, float]:
    """(2)/(4) what a Ray task of ``pipelines.ingest`` does (``genre_batch.ingest.ingest_group``),
    minus Arrow/JSON, timed per file: one shard per group."""
    files, tiles_dir = job
    per_file_s: dict[str, float] = {}  # read + ingest_file, per file
    read_s = 0.0

    def timed_read(file: CatalogueFile) -> bytes:
        nonlocal read_s
        started = time.perf_counter()
        try:
            return read_catalogue_file(file)
        finally:
            read_s += time.perf_counter() - started

    outcomes: list[FileOutcome] = []
    for file in files:
        started = time.perf_counter()
        outcomes.append(read_and_ingest(file, FEATURES, SPLITS, read=timed_read))
        per_file_s[file.uri] = time.perf_counter() - started
    started = time.perf_counter()
    write_tile_shard(outcomes, tiles_dir, FEATURES)
    write_s = time.perf_counter() - started
    return {
        "songs": sum(1 for o in outcomes if o.song is not None),
        "errors": sum(1 for o in outcomes if o.error is not None),
        "tiles": sum(len(o.tiles) for o in outcomes if o.tiles is not None),
        "read_s": read_s,
        "ingest_file_s": sum(per_file_s.values()) - read_s,
        "write_shard_s": write_s,
        "done_at": time.time(),
        "per_file_s": per_file_s,  # type: ignore[dict-item]
    }


def _sum_group_results(results: Sequence[dict[str, float]], started_at: float) -> dict[str, Any]:
    totals = {k: sum(r[k] for r in results) for k in ("songs", "errors", "tiles", "read_s", "ingest_file_s",
                                                     "write_shard_s")}
    totals["first_shard_after_s"] = min(r["done_at"] for r in results) - started_at
    totals["shards"] = len(results)
    totals["per_file_s"] = {uri: s for r in results for uri, s in r["per_file_s"].items()}  # type: ignore[attr-defined]
    return totals


def ingest_core_serial(files: Sequence[CatalogueFile], tiles_dir: str, files_per_task: int) -> dict[str, Any]:
    started_at = time.time()
    results = [ingest_group((group, tiles_dir)) for group in groups_of(files, files_per_task)]
    return _sum_group_results(results, started_at)


def ingest_core_pool(files: Sequence[CatalogueFile], tiles_dir: str, files_per_task: int,
                     processes: int) -> dict[str, Any]:
    """(4) forked workers inherit the warmed-up modules (call it before ray.init or after ray.shutdown:
    the only other thread then is the RSS sampler, which holds no lock a child could need)."""
    started_at = time.time()
    jobs = [(group, tiles_dir) for group in groups_of(files, files_per_task)]
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Pool(processes) as pool:
        results = list(pool.imap_unordered(ingest_group, jobs, chunksize=1))
    return _sum_group_results(results, started_at)


def hobby_way(files: Sequence[CatalogueFile], png_dir: Path, style: str) -> dict[str, Any]:
    """(3) librosa.load + melspectrogram + power_to_db + one matplotlib PNG per 256-frame tile."""
    import librosa
    import matplotlib.pyplot as plt
    import numpy as np

    pngs = 0
    per_file_s: dict[str, float] = {}
    for index, file in enumerate(files):
        started = time.perf_counter()
        samples, sr = librosa.load(file.uri, sr=FEATURES.sample_rate)
        mel = librosa.feature.melspectrogram(y=samples, sr=sr, n_fft=FEATURES.n_fft,
                                             hop_length=FEATURES.hop_length, n_mels=FEATURES.n_mels)
        db = librosa.power_to_db(mel, ref=np.max)
        width = FEATURES.tile_frames
        for tile_index in range(max(1, db.shape[1] // width)):
            tile = db[:, tile_index * width : (tile_index + 1) * width]
            path = png_dir / f"{index:05d}_{tile_index:03d}.png"
            if style == "imsave":
                plt.imsave(path, tile, cmap="magma", origin="lower")
            else:
                figure = plt.figure(figsize=(width / 100, FEATURES.n_mels / 100), dpi=100)
                axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
                axes.axis("off")
                axes.imshow(tile, cmap="magma", origin="lower", aspect="auto")
                figure.savefig(path)
                plt.close(figure)
            pngs += 1
        per_file_s[file.uri] = time.perf_counter() - started
    return {"pngs": pngs, "style": style, "per_file_s": per_file_s}


def warm_up(file: CatalogueFile, scratch: Path) -> dict[str, float]:
    """Run every timed code path once, untimed (numba compiles, lazy imports, lru caches)."""
    seconds: dict[str, float] = {}
    for name, body in (
        ("decode", lambda: decode_all([file])),
        ("decode_fft", lambda: decode_fft_all([file])),
        ("ingest_core", lambda: ingest_group(([file], str(scratch / "tiles")))),
        ("hobby_imsave", lambda: hobby_way([file], scratch, "imsave")),
        ("hobby_figure", lambda: hobby_way([file], scratch, "figure")),
    ):
        started = time.perf_counter()
        body()
        seconds[name] = time.perf_counter() - started
    return seconds


def ray_init() -> dict[str, Any]:
    from pipelines._ray import ensure_ray
    import ray

    if os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists():
        logger.warning("RAY_ADDRESS or /tmp/ray/ray_current_cluster is set: ensure_ray may join a shared cluster")
    ensure_ray()
    return {"cluster_cpus": int(ray.cluster_resources().get("CPU", 0))}


def ray_ingest(catalogue: str, root: str, files_per_task: int) -> dict[str, Any]:
    """(5) the real job, on an already initialised Ray."""
    from genre_batch.config import IngestConfig
    from pipelines.ingest import run_ingest

    started_at = time.time()
    report = run_ingest(catalogue, root, labels="folder", config=IngestConfig(files_per_task=files_per_task))
    shards = sorted(Path(root, "ingest", report.version, "tiles").glob("*.parquet"), key=lambda p: p.stat().st_mtime)
    return {
        "songs": report.songs, "errors": report.errors, "tiles": report.tiles, "shards": len(shards),
        "first_shard_after_s": (shards[0].stat().st_mtime - started_at) if shards else None,
        "last_shard_after_s": (shards[-1].stat().st_mtime - started_at) if shards else None,
        "run_ingest_report_s": report.seconds, "started_at": started_at, "ended_at": time.time(),
    }


# The ingest's map tasks in Ray's task events: "task::<operators>" names the task's operators.
_INGEST_OPERATOR = "MapBatches(ingest_batch)"


def task_timeline(since: float, until: float) -> dict[str, Any]:
    """Where a Ray Data ingest job's seconds went, from Ray's own task events (``ray.timeline``),
    seconds from ``since``: per worker that ran the job's map tasks, when its first task began,
    what that first task took against the median one (the worker's imports and first calls),
    its busy time and the idle gaps between its tasks; and when Ray Data's own actors started."""
    import statistics

    import ray

    spans: dict[str, list[tuple[float, float]]] = {}
    actors: dict[str, dict[str, float]] = {}
    for event in ray.timeline():
        begin = event.get("ts", 0) / 1e6 - since
        if event.get("ph") != "X" or not 0 <= begin <= until - since:
            continue
        category = str(event.get("cat", ""))
        if category.startswith("task::") and _INGEST_OPERATOR in category:
            spans.setdefault(str(event["tid"]), []).append((begin, event["dur"] / 1e6))
        elif category.startswith("task::") and event.get("name") == "__init__":
            actors[category.rsplit(":", 1)[-1].split(".")[0]] = {"start_s": begin, "init_s": event["dur"] / 1e6}
    workers = []
    for tasks in spans.values():
        tasks.sort()
        gaps = [later[0] - (earlier[0] + earlier[1]) for earlier, later in zip(tasks, tasks[1:])]
        workers.append({
            "tasks": len(tasks), "first_start_s": tasks[0][0], "first_task_s": tasks[0][1],
            "median_task_s": statistics.median(d for _, d in tasks), "busy_s": sum(d for _, d in tasks),
            "gaps_s": sum(gaps), "last_end_s": max(b + d for b, d in tasks),
        })
    return {"job_s": until - since, "workers": sorted(workers, key=lambda w: w["first_start_s"]), "actors": actors}


def timeline_lines(step: str, timeline: dict[str, Any]) -> list[str]:
    lines = [f"{step}: the job's {timeline['job_s']:.2f} s, by Ray's task events (per worker):"]
    for worker in timeline["workers"]:
        lines.append(
            f"    {worker['tasks']} tasks; first began at +{worker['first_start_s']:.2f} s and took "
            f"{worker['first_task_s']:.2f} s (median task {worker['median_task_s']:.2f} s); busy "
            f"{worker['busy_s']:.2f} s, idle between tasks {worker['gaps_s']:.2f} s, last ended at "
            f"+{worker['last_end_s']:.2f} s")
    for name, actor in timeline["actors"].items():
        lines.append(f"    Ray Data's {name} started at +{actor['start_s']:.2f} s ({actor['init_s']:.2f} s in __init__)")
    if not timeline["workers"]:
        lines.append("    (no task events: Ray's task events are off or were dropped)")
    return lines


def run_script(what: str, script: str, *argv: str) -> dict[str, Any]:
    """Run one of the scripts below in a new Python process; returns the JSON of its last line."""
    done = subprocess.run([sys.executable, "-c", script.format(repo=str(REPO)), *argv],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


_NEXT_JOB = """
import json, sys, time
sys.path.insert(0, {repo!r})
from pipelines._ray import ensure_ray
from genre_batch.config import IngestConfig
from pipelines.ingest import run_ingest
ensure_ray(sys.argv[1])
started = time.perf_counter()
report = run_ingest(sys.argv[2], sys.argv[3], labels="folder", config=IngestConfig(files_per_task=int(sys.argv[4])))
print(json.dumps({{"job_s": time.perf_counter() - started, "songs": report.songs, "tiles": report.tiles}}))
"""


def ray_next_job(catalogue: str, root: str, files_per_task: int) -> dict[str, Any]:
    """(5b) run_ingest from a new driver process joined to this process's Ray."""
    import ray

    address = ray.get_runtime_context().gcs_address
    return run_script("the next-job driver", _NEXT_JOB, address, catalogue, root, str(files_per_task))


_EMPTY_JOB = """
import json, math, sys, time
sys.path.insert(0, {repo!r})
from pipelines._ray import ensure_ray, one_stage_execution
from genre_batch.catalogue import list_catalogue
from genre_batch.ingest import catalogue_record
ensure_ray(sys.argv[1])
import ray
started = time.perf_counter()
records = [catalogue_record(f) for f in list_catalogue(sys.argv[2], "folder")]
def unchanged(batch):
    return batch
with one_stage_execution():
    rows = ray.data.from_items(records, override_num_blocks=math.ceil(len(records) / int(sys.argv[3]))).map_batches(
        unchanged, batch_size=None, batch_format="pyarrow").take_all()
print(json.dumps({{"job_s": time.perf_counter() - started, "rows": len(rows)}}))
"""


def ray_empty_job(catalogue: str, files_per_task: int) -> dict[str, Any]:
    """(5c) run_ingest's Ray Data job with a UDF that does nothing, from a new driver on this
    process's Ray: the same records, blocks and execution settings, no audio. What any Ray Data
    job of this shape pays per job before its first file (new workers, the streaming executor)."""
    import ray

    address = ray.get_runtime_context().gcs_address
    return run_script("the empty-job driver", _EMPTY_JOB, address, catalogue, str(files_per_task))


_POOL_SCRIPT = """
import json, multiprocessing, sys, time
sys.path.insert(0, {repo!r})
from benchmarks.ingest import _sum_group_results, groups_of, ingest_group
from genre_batch.catalogue import list_catalogue
catalogue, tiles_dir, files_per_task, processes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
started_at, started = time.time(), time.perf_counter()
jobs = [(group, tiles_dir) for group in groups_of(list_catalogue(catalogue, "folder"), files_per_task)]
with multiprocessing.get_context("fork").Pool(processes) as pool:
    results = list(pool.imap_unordered(ingest_group, jobs, chunksize=1))
totals = _sum_group_results(results, started_at)
print(json.dumps({{"job_s": time.perf_counter() - started, "songs": totals["songs"], "tiles": totals["tiles"],
                  "first_shard_after_s": totals["first_shard_after_s"]}}))
"""


def pool_fresh_script(catalogue: str, tiles_dir: str, files_per_task: int, processes: int) -> dict[str, Any]:
    """(4b) the pool as a plain script runs it: a new process lists the catalogue and forks a pool
    whose children import what the first file needs (torch, on first use) themselves; timed from
    inside that process after its imports, as (5b) is."""
    return run_script("the pool script", _POOL_SCRIPT, catalogue, tiles_dir, str(files_per_task), str(processes))


# --------------------------------------------------------------------------------------
# Investigation: why Ray is where it is
# --------------------------------------------------------------------------------------


def ray_init_plain() -> dict[str, Any]:
    """ensure_ray's ray.init minus the job-level runtime_env (which stops Ray from using the
    workers it prestarts at init: they are dropped and new ones start when tasks arrive)."""
    import ray
    from pipelines._ray import quiet_ray_data

    os.environ.setdefault("NUMBA_CACHE_DIR", "/tmp/genre-batch-numba-cache")
    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    quiet_ray_data()
    return {"cluster_cpus": int(ray.cluster_resources().get("CPU", 0))}


def ray_plain_tasks(files: Sequence[CatalogueFile], tiles_dir: str, files_per_task: int) -> dict[str, Any]:
    """The same groups as plain ``ray.remote`` tasks: Ray core without Ray Data."""
    import ray

    remote = ray.remote(num_cpus=1)(ingest_group)
    started_at = time.time()
    results = ray.get([remote.remote((group, tiles_dir)) for group in groups_of(files, files_per_task)])
    return _sum_group_results(results, started_at)


COLD_PROBE = r"""
import json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {repo!r})
import pipelines.ingest
from genre_batch.catalogue import list_catalogue
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.ingest import ingest_file
t1 = time.perf_counter()
files = list_catalogue({catalogue!r}, "folder")[:2]
data = [open(f.uri, "rb").read() for f in files]
t2 = time.perf_counter()
ingest_file(files[0], data[0], FeatureConfig(), SplitConfig())
t3 = time.perf_counter()
ingest_file(files[1], data[1], FeatureConfig(), SplitConfig())
t4 = time.perf_counter()
print(json.dumps({{"imports_s": t1 - t0, "first_file_s": t3 - t2, "second_file_s": t4 - t3}}))
"""


def cold_worker_probe(catalogue: str, scratch: Path) -> dict[str, dict[str, float]]:
    """A fresh Python (like a fresh Ray worker): imports + first file, per numba cache setting."""
    script = COLD_PROBE.format(repo=str(REPO), catalogue=catalogue)
    cases = {
        "NUMBA_CACHE_DIR unset": None,
        "NUMBA_CACHE_DIR empty dir": str(scratch / "numba-empty"),
        "NUMBA_CACHE_DIR warm (2nd use)": str(scratch / "numba-empty"),
        "NUMBA_CACHE_DIR=/tmp/genre-batch-numba-cache": "/tmp/genre-batch-numba-cache",
    }
    out = {}
    for label, cache in cases.items():
        env = dict(os.environ)
        env.pop("NUMBA_CACHE_DIR", None)
        if cache is not None:
            env["NUMBA_CACHE_DIR"] = cache
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_s"] = time.perf_counter() - started
        out[label] = result
    return out


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def table(rows: Sequence[Measurement]) -> str:
    header = ("step", "songs", "audio s", "wall s", "songs/s", "x RT", "cores", "x RT/core", "CPU s",
              "x RT/CPU-s", "peak RSS MiB", "load 1m before/after")
    lines = [header]
    for m in rows:
        lines.append((
            m.step, str(m.songs), f"{m.audio_s:.0f}", f"{m.wall_s:.2f}", f"{m.songs_per_s:.2f}",
            f"{m.x_realtime:.0f}", str(m.cores), f"{m.x_realtime_per_core:.0f}",
            "-" if m.cpu_s is None else f"{m.cpu_s:.1f}",
            "-" if not m.cpu_s or not m.audio_s else f"{m.audio_s / m.cpu_s:.0f}",
            "-" if m.peak_rss_mib is None else f"{m.peak_rss_mib:.0f}",
            "-" if m.load_before is None else f"{m.load_before:.1f} / {m.load_after:.1f}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in lines]
    rendered.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(rendered)


def format_table(decoded: dict[str, DecodedFile], fft_s: dict[str, float], core_s: dict[str, float],
                 hobby_s: dict[str, float]) -> str:
    """x realtime per source format of (1), (1c), of (2)'s per-file part (read + ingest_file, no
    shard write) and of (3) (files of its set only), one process each."""
    formats = sorted({d.source_format for d in decoded.values()})
    lines = ["| source format | files | (1) decode x RT | (1c) decode+FFT x RT | (2) read+ingest_file x RT "
             "| (3) hobby x RT (files) | (2)/(1) | ceiling (1c)/(1) | (2)/(3) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in formats + ["all"]:
        uris = [u for u, d in decoded.items() if name in ("all", d.source_format) and u in core_s]
        audio = sum(decoded[u].duration_s for u in uris)
        decode_x = audio / sum(decoded[u].decode_s for u in uris)
        fft_x = audio / sum(fft_s[u] for u in uris)
        core_x = audio / sum(core_s[u] for u in uris)
        hobby = [u for u in uris if u in hobby_s]
        hobby_x = sum(decoded[u].duration_s for u in hobby) / sum(hobby_s[u] for u in hobby) if hobby else None
        lines.append(f"| {name} | {len(uris)} | {decode_x:.0f} | {fft_x:.0f} | {core_x:.0f} | "
                     + (f"{hobby_x:.0f} ({len(hobby)}) | " if hobby_x else "- | ")
                     + f"{core_x / decode_x:.2f} | {fft_x / decode_x:.2f} | "
                     + (f"{core_x / hobby_x:.2f} |" if hobby_x else "- |"))
    return "\n".join(lines)


def verdict(name: str, value: float | None, target: float) -> str:
    if value is None:
        return f"{name}: not measured (target >= {target:.1f}x)"
    return f"{name}: {value:.2f}x (target >= {target:.1f}x) {'PASS' if value >= target else 'FAIL'}"


def machine_line() -> str:
    from benchmarks.machine import machine

    info = machine()
    return (f"{info['date']}, {info['nproc']} cores ({info['cpu']}), commit {info['commit']}, "
            f"Python {info['python']}, threads per process {os.environ.get('OMP_NUM_THREADS')}")


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("ray", "genre_batch", "pipelines", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    print(machine_line())
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="genre-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    catalogue_dir = Path(args.catalogue).resolve() if args.catalogue else work / "catalogue"
    catalogue_dir.mkdir(parents=True, exist_ok=True)
    synth_s = prepare_catalogue(catalogue_dir, args.songs, args.duration, args.seed, args.source_format)
    files = list_catalogue(str(catalogue_dir), "folder")
    if synth_s:
        print(f"catalogue written in {synth_s:.1f} s: {catalogue_dir}")

    scratch = work / "warmup"
    scratch.mkdir(exist_ok=True)
    warm = warm_up(files[0], scratch)
    print("warm-up (untimed, first call of each path): " + ", ".join(f"{k} {v:.2f} s" for k, v in warm.items()))

    rows: list[Measurement] = []
    decoded: dict[str, DecodedFile] = {}

    def decode_step() -> dict[str, Any]:
        this_round = decode_all(files)
        decoded.update(this_round)
        return {"per_file_decode": this_round}

    # (1), (1c) and (2) alternate round by round, so that a busy minute hits them alike.
    fpt = args.files_per_task
    rounds1, rounds1c, rounds2 = [], [], []
    for _ in range(max(1, args.repeat)):
        # (1) measures the durations, so its audio seconds are filled in after it ran.
        rounds1.append(measure("1 decode (soundfile+mono+soxr)", len(files), 0.0, 1, decode_step))
        rounds1c.append(measure("1c decode + windowed FFT only (a ceiling)", len(files), 0.0, 1,
                                lambda: {"per_file_s": decode_fft_all(files)}))
        rounds2.append(measure(f"2 ingest core, 1 process ({fpt} files/shard)", len(files), 0.0, 1,
                               lambda: ingest_core_serial(files, str(work / "serial" / "tiles"), fpt)))
    durations = {uri: d.duration_s for uri, d in decoded.items()}
    total_audio = sum(durations.values())
    m1, m1c, m2 = fastest(rounds1), fastest(rounds1c), fastest(rounds2)
    m1.audio_s = m1c.audio_s = m2.audio_s = total_audio
    rows += [m1, m1c, m2]

    hobby_files = files[: args.hobby_songs] if args.hobby_songs else files
    png_dir = work / "hobby"
    png_dir.mkdir(exist_ok=True)
    m3 = fastest([measure(f"3 hobby way ({args.hobby_style} PNG), 1 process", len(hobby_files),
                          sum(durations[f.uri] for f in hobby_files), 1,
                          lambda: hobby_way(hobby_files, png_dir, args.hobby_style))
                  for _ in range(max(1, args.repeat))])
    rows.append(m3)
    m3b = None
    if args.other_style_songs:
        other_style = "figure" if args.hobby_style == "imsave" else "imsave"
        other_files = files[: args.other_style_songs]
        m3b = fastest([measure(f"3b hobby way ({other_style} PNG), 1 process", len(other_files),
                               sum(durations[f.uri] for f in other_files), 1,
                               lambda: hobby_way(other_files, png_dir, other_style))
                       for _ in range(max(1, args.repeat))])
        rows.append(m3b)

    m4 = measure(f"4 ingest core, Pool({args.processes})", len(files), total_audio, args.processes,
                 lambda: ingest_core_pool(files, str(work / "pool" / "tiles"), fpt, args.processes))
    rows.append(m4)
    script = measure(f"4b pool script process ({args.processes} children)", len(files), total_audio, args.processes,
                     lambda: pool_fresh_script(str(catalogue_dir), str(work / "pool-script" / "tiles"), fpt,
                                               args.processes))
    m4b = Measurement(step=f"4b Pool({args.processes}) from a new process", songs=len(files), audio_s=total_audio,
                      wall_s=float(script.notes["job_s"]), cores=args.processes,
                      peak_rss_mib=script.peak_rss_mib, load_before=script.load_before,
                      load_after=script.load_after, notes=script.notes)
    rows.append(m4b)
    print(f"4b pool script process: {script.wall_s:.2f} s wall, of which the pool job {m4b.wall_s:.2f} s")

    m5 = m5_init = m5w = m5b = m5c = None
    investigation: dict[str, Any] = {}
    if not args.skip_ray:
        init = measure("5a ray.init (ensure_ray)", 0, 0.0, 1, ray_init, sample_rss=False)
        cpus = int(init.notes["cluster_cpus"])
        m5 = measure(f"5 Ray Data run_ingest ({fpt} files/task)", len(files), total_audio, cpus,
                     lambda: ray_ingest(str(catalogue_dir), str(work / "ray-root"), fpt))
        rows.append(m5)
        m5_init = Measurement(step="5 incl. ray.init", songs=len(files), audio_s=total_audio,
                              wall_s=m5.wall_s + init.wall_s, cores=cpus, peak_rss_mib=m5.peak_rss_mib,
                              load_before=init.load_before, load_after=m5.load_after)
        rows.append(m5_init)
        print(f"ray.init: {init.wall_s:.2f} s ({cpus} CPUs)")
        m5w = measure("5w the same job again, this driver (warm workers)", len(files), total_audio, cpus,
                      lambda: ray_ingest(str(catalogue_dir), str(work / "ray-root-warm"), fpt))
        rows.append(m5w)
        for m in (m5, m5w):  # read after both jobs, outside their timings
            m.notes["timeline"] = task_timeline(m.notes.pop("started_at"), m.notes.pop("ended_at"))
        driver = measure("5b driver process (start, imports, connect, job)", len(files), total_audio, cpus,
                         lambda: ray_next_job(str(catalogue_dir), str(work / "ray-root-next"), fpt))
        m5b = Measurement(step="5b Ray Data run_ingest, next job", songs=len(files), audio_s=total_audio,
                          wall_s=float(driver.notes["job_s"]), cores=cpus, peak_rss_mib=driver.peak_rss_mib,
                          load_before=driver.load_before, load_after=driver.load_after, notes=driver.notes)
        rows.append(m5b)
        # No CPU figure for 5b: step 5's idle workers exit during it, and their CPU leaves the sampled tree.
        print(f"5b driver process: {driver.wall_s:.2f} s wall, of which the job {m5b.wall_s:.2f} s")
        empty = ray_empty_job(str(catalogue_dir), fpt)
        m5c = Measurement(step="5c the same Ray Data job, empty UDF, next job", songs=len(files), audio_s=total_audio,
                          wall_s=float(empty["job_s"]), cores=cpus, notes=empty)
        rows.append(m5c)
        if args.investigate:
            investigation = investigate(args, files, catalogue_dir, work, total_audio, cpus)

    print()
    print(table(rows))
    print()
    for m in (m2, m3, m3b, m4, m4b, m5, m5b):
        if m is not None:
            print(f"{m.step}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in m.notes.items() if k not in ("per_file_s", "timeline")))
    for m in (m5, m5w):
        if m is not None:
            print("\n".join(timeline_lines(m.step, m.notes["timeline"])))
    print()
    print("per source format, one process each (per-file sums, shard writes excluded):")
    print(format_table(m1.notes.pop("per_file_decode"), m1c.notes.pop("per_file_s"), m2.notes["per_file_s"],
                       m3.notes["per_file_s"]))
    ratios: dict[str, float | None] = {
        "core_vs_hobby": m2.x_realtime_per_core / m3.x_realtime_per_core,
        "core_vs_decode": m2.x_realtime_per_core / m1.x_realtime_per_core,
        "ceiling_core_vs_decode": m1c.x_realtime_per_core / m1.x_realtime_per_core,
        "ray_vs_pool": (m5.x_realtime / m4.x_realtime) if m5 else None,
        "ray_incl_init_vs_pool": (m5_init.x_realtime / m4.x_realtime) if m5_init else None,
        "ray_warm_workers_vs_pool": (m5w.x_realtime / m4.x_realtime) if m5w else None,
        "ray_next_job_vs_pool": (m5b.x_realtime / m4.x_realtime) if m5b else None,
        "ray_next_job_vs_pool_script": (m5b.x_realtime / m4b.x_realtime) if m5b else None,
        # Ray doing the pool's work as fast as the pool, plus only its empty job's cost.
        "ceiling_ray_vs_pool_script": (m4b.wall_s / (m4b.wall_s + m5c.wall_s)) if m5c else None,
    }
    if m3b is not None:
        ratios["core_vs_hobby_other_style"] = m2.x_realtime_per_core / m3b.x_realtime_per_core
    print()
    print(verdict(f"(2)/(3) ingest core vs hobby way ({args.hobby_style}), per core", ratios["core_vs_hobby"],
                  TARGETS["core_vs_hobby"]))
    if m3b is not None:
        print(verdict(f"(2)/(3b) ingest core vs hobby way ({m3b.notes['style']}, {m3b.songs} songs), per core",
                      ratios["core_vs_hobby_other_style"], TARGETS["core_vs_hobby"]))
    print(verdict("(2)/(1) ingest core vs decode alone, per core", ratios["core_vs_decode"], TARGETS["core_vs_decode"]))
    print(f"    ceiling (1c)/(1): {ratios['ceiling_core_vs_decode']:.2f}x, decode + the windowed FFT alone: what (2)/(1)"
          " would be if the mel product, dB, tiles, hash, tags and Parquet cost nothing")
    print(verdict("(5)/(4) Ray Data vs Pool, all cores, without ray.init", ratios["ray_vs_pool"], TARGETS["ray_vs_pool"]))
    print(verdict("(5)/(4) Ray Data vs Pool, all cores, with ray.init", ratios["ray_incl_init_vs_pool"],
                  TARGETS["ray_vs_pool"]))
    print(verdict("(5b)/(4) Ray Data vs Pool, all cores, the next job on the running Ray", ratios["ray_next_job_vs_pool"],
                  TARGETS["ray_vs_pool"]))
    print(verdict("(5b)/(4b) Ray Data next job vs a pool script, each from a new process (its start-up paid by each)",
                  ratios["ray_next_job_vs_pool_script"], TARGETS["ray_vs_pool"]))
    if m5w is not None:
        print(f"    (5w)/(4): {ratios['ray_warm_workers_vs_pool']:.2f}x, Ray Data's second job in one driver (its "
              "workers already started and warm) vs the forked pool: what Ray Data itself costs; (5) - (5w) = "
              f"{m5.wall_s - m5w.wall_s:.2f} s is what starting the job's worker processes costs")
    if m5c is not None:
        # 0.8 needs the empty job's cost to be at most a quarter of the pool's time.
        songs_needed = 4 * m5c.wall_s * m4b.songs_per_s
        print(f"    ceiling (4b)/((4b)+(5c)): {ratios['ceiling_ray_vs_pool_script']:.2f}x, if Ray did the work as fast as "
              f"the pool and added only its empty job ({m5c.wall_s:.2f} s); 0.8x would need >= {songs_needed:.0f} songs "
              f"at the pool's {m4b.songs_per_s:.1f} songs/s, and Ray's own steady state to match the pool's")
    print("\nthe same ratios on CPU time (x RT per CPU-second of the process tree): less sensitive to other load,")
    print("but blind to idle waits and to parallelism, so the verdicts above stay on wall time:")
    for name, (a, b) in {"(2)/(3)": (m2, m3), "(2)/(3b)": (m2, m3b), "(2)/(1)": (m2, m1), "(5)/(4)": (m5, m4)}.items():
        if a is not None and b is not None and a.cpu_s and b.cpu_s:
            print(f"  {name}: {(a.audio_s / a.cpu_s) / (b.audio_s / b.cpu_s):.2f}x")
    loads = [x for m in rows for x in (m.load_before, m.load_after) if x is not None]
    cores = os.cpu_count() or 1
    if loads and max(loads) > cores:
        print(f"\nWARNING: the 1-minute load reached {max(loads):.1f} on {cores} cores during the run: other processes "
              "shared the CPUs, wall-clock figures are inflated and their ratios unreliable. Rerun when quiet.")
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\nru_maxrss: self {self_rss:.0f} MiB, largest reaped child {children_rss:.0f} MiB "
          "(peak RSS column: summed over the live process tree, sampled every 0.2 s)")
    print(f"the one-process steps ran {max(1, args.repeat)} round(s) each, the fastest counts; the pool and "
          "Ray steps ran once (Ray's cold start is part of what it costs); warm-up calls were untimed")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine_line(), "args": vars(args), "warm_up_s": warm,
            "rows": [dict(asdict(m), songs_per_s=m.songs_per_s, x_realtime=m.x_realtime,
                          x_realtime_per_core=m.x_realtime_per_core) for m in rows],
            "ratios": ratios, "targets": TARGETS, "investigation": investigation,
        }, indent=2, default=str))
    if not args.skip_ray:
        import ray

        ray.shutdown()
    if not args.keep:
        shutil.rmtree(work / "serial", ignore_errors=True)
        for name in ("pool", "pool-script", "hobby", "ray-root", "ray-root-warm", "ray-root-next", "warmup", "sweep"):
            shutil.rmtree(work / name, ignore_errors=True)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)  # holds the catalogue unless --catalogue said elsewhere
    return 0


def investigate(args: argparse.Namespace, files: Sequence[CatalogueFile], catalogue_dir: Path, work: Path,
                total_audio: float, cpus: int) -> dict[str, Any]:
    """Sweep files per task for Ray Data, plain Ray tasks and the pool; probe cold workers."""
    sweep_dir = work / "sweep"
    values = [int(v) for v in args.sweep.split(",") if v.strip()]
    rows: list[Measurement] = []
    for value in values:
        rows.append(measure(f"Ray Data run_ingest, {value} files/task (warm workers)", len(files), total_audio, cpus,
                            lambda: ray_ingest(str(catalogue_dir), str(sweep_dir / f"ray-{value}"), value)))
        rows.append(measure(f"plain Ray tasks, {value} files/task", len(files), total_audio, cpus,
                            lambda: ray_plain_tasks(files, str(sweep_dir / f"tasks-{value}"), value)))
    import ray

    # Cold runs again, each in a fresh Ray session: once as the project starts Ray, once without
    # the job-level runtime_env (NUMBA_CACHE_DIR then reaches workers through the inherited
    # environment, which ensure_ray has already set), to see what the runtime_env costs.
    for label, init in (("ensure_ray() again", ray_init), ("ray.init without runtime_env", ray_init_plain)):
        ray.shutdown()
        init_m = measure(f"fresh session: {label}", 0, 0.0, cpus, init, sample_rss=False)
        run_m = measure(f"  cold Ray Data run_ingest after {label}, {args.files_per_task} files/task", len(files),
                        total_audio, cpus,
                        lambda: ray_ingest(str(catalogue_dir), str(sweep_dir / f"cold-{len(rows)}"),
                                           args.files_per_task))
        run_m.notes["ray_init_s"] = init_m.wall_s
        rows.append(run_m)
    ray.shutdown()  # the pool forks: no Ray threads in this process while it does
    for value in values:
        rows.append(measure(f"Pool({args.processes}), {value} files/task", len(files), total_audio, args.processes,
                            lambda: ingest_core_pool(files, str(sweep_dir / f"pool-{value}"), value,
                                                     args.processes)))
    print("\ninvestigation (each once, after the main run):")
    print(table(rows))
    for m in rows:
        if "first_shard_after_s" in m.notes:
            extra = f", after ray.init of {m.notes['ray_init_s']:.2f} s" if "ray_init_s" in m.notes else ""
            print(f"  {m.step}: first shard after {m.notes['first_shard_after_s']:.2f} s, "
                  f"{m.notes.get('shards')} shards{extra}")
    probe = cold_worker_probe(str(catalogue_dir), work / "sweep")
    print("\ncold worker (fresh python: import pipelines.ingest + genre_batch, then 2 files):")
    for label, result in probe.items():
        print(f"  {label}: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.items()))
    return {"rows": [asdict(m) for m in rows], "cold_worker": probe}


if __name__ == "__main__":
    assert ARGS is not None
    raise SystemExit(main(ARGS))
