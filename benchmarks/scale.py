"""Scale, measured (issue #15 item 6): N short files through ingest -> train (1 epoch) -> index
on this machine, against the same run at N/10 files, in one process with one local Ray.

    .venv/bin/python benchmarks/scale.py [--songs 10000] [--small 1000] [--duration 10]
        [--work-dir DIR] [--s3] [--skip-train-index] [--seed 0] [--json out.json]

1. Catalogue (written once, reused from ``--work-dir`` when its marker matches): ``--songs``
   demo songs of about ``--duration`` seconds (0.9-1.1x) written with
   ``genre_batch.commands.write_demo_catalogue`` (mp3, 22.05/44.1 kHz, mono/stereo, labels.csv
   with its curated artist split). Mixed formats: in labels.csv order (genres dealt round-robin),
   every 4th file is re-encoded to FLAC and every 4th+1 to Ogg Vorbis (soundfile), the rest
   stay mp3; 2 % are broken (every 50th, from the 26th): overwritten in turn with junk bytes
   that hold no frame sync, cut to their first 2 KiB, or emptied. labels.csv names the new
   paths and keeps the broken files (they are labelled songs that cannot be read). The small
   catalogue is the first ``--small`` rows of the large one (hard links, its own labels.csv):
   the same genres, formats and share of broken files.
2. ``pipelines._ray.ensure_ray()`` (timed apart), an untimed warm-up ingest of 16 files (so that
   neither size pays the first job's worker start-up), then per size, small first:
   ``run_ingest(catalogue, root, labels=labels.csv)``, ``run_train(root, TrainConfig(epochs=1))``,
   ``run_index(root)`` into a fresh root. Per stage: wall seconds; files/s (ingest) or tiles/s
   (train: Ray Train's own figure for the epoch, and the whole call; index: every tile); the
   driver's peak RSS (``VmHWM``, reset before each stage through ``/proc/self/clear_refs``;
   ``ru_maxrss``, which cannot be reset, is kept in the JSON); and the Ray worker processes'
   RSS, sampled every 0.5 s with psutil: the largest single worker and the largest sum. A
   worker's RSS counts the pages of the shared object store it touched.
3. Accounting: the published songs and errors tables (pandas) hold every written file exactly
   once (songs + errors == files written), and every broken file is an error row.
4. Printed: a table per size, and the ratios large / small: peak RSS (target: flat, i.e. well
   under the 10x of the file count; PASS at <= 2) and seconds per file / tile (1.0 = linear).

``--s3`` then runs the ingest of the large catalogue against an S3-compatible server: moto's
standalone server started as ``tests.servers.start_s3_server`` does (its endpoint and test
credentials in the environment before Ray starts, so the workers inherit them), the catalogue
uploaded with s3fs (timed apart), ``run_ingest`` with ``s3://`` catalogue, labels and root;
seconds, files/s, the ratio to the local ingest, and the same accounting.
``--skip-train-index`` runs the ingest only. Figures go into benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("benchmarks.scale")

TARGET_RSS_RATIO = 2.0
MARKER = "scale-catalogue.json"
MARKER_VERSION = 1
BROKEN_EVERY, BROKEN_FROM = 50, 25  # 2 %
BROKEN_KINDS = ("junk", "truncated", "empty")
WARMUP_FILES = 16
SAMPLE_S = 0.5
BUCKET = "scale-bench"
# Processes titled ray::... that are the node's agents, not workers.
RAY_AGENTS = frozenset({"ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::dashboard", "ray::log_monitor"})


# ---------------------------------------------------------------- catalogue
def target_format(index: int) -> str:
    return {0: "flac", 1: "ogg"}.get(index % 4, "mp3")


def broken_kind(index: int) -> str | None:
    if index % BROKEN_EVERY != BROKEN_FROM:
        return None
    return BROKEN_KINDS[(index // BROKEN_EVERY) % len(BROKEN_KINDS)]


def convert(job: tuple[str, str, str]) -> str:
    """Re-encode one mp3 to FLAC or Ogg Vorbis beside it and remove the mp3; returns the new path."""
    import soundfile

    source, target, fmt = job
    audio, rate = soundfile.read(source, dtype="float32", always_2d=True)
    partial = Path(target).with_name(f".{Path(target).name}.partial")
    if fmt == "flac":
        soundfile.write(partial, audio, rate, format="FLAC", subtype="PCM_16")
    else:
        soundfile.write(partial, audio, rate, format="OGG", subtype="VORBIS")
    os.replace(partial, target)
    os.unlink(source)
    return target


def break_file(path: Path, kind: str, seed: int) -> None:
    import numpy as np

    if kind == "junk":
        # As genre_batch.synth's broken file: no 0xFF, so no decoder finds a frame sync in it.
        rng = np.random.default_rng([seed, len(path.name)])
        path.write_bytes(rng.integers(0, 0xFF, 16_384, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:2048])
    else:
        path.write_bytes(b"")


def read_labels(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write_labels(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def audio_files(directory: Path) -> list[str]:
    from genre_batch.decode import is_audio_path

    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and not p.name.startswith(".") and is_audio_path(p.name))


def subset(large: Path, out: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    """``rows`` of the large catalogue as hard links under ``out``, with their labels.csv."""
    for row in rows:
        target = out / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(large / row["path"], target)
        except OSError:
            shutil.copy2(large / row["path"], target)
    write_labels(out / "labels.csv", fields, rows)


def prepare(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write (or reuse) the large, small and warm-up catalogues; returns the marker's content."""
    import multiprocessing

    from genre_batch.commands import write_demo_catalogue

    wanted = {"version": MARKER_VERSION, "songs": args.songs, "small": args.small, "duration_s": args.duration,
              "seed": args.seed}
    marker = work / MARKER
    dirs = {"large": work / "catalogue-large", "small": work / "catalogue-small", "warmup": work / "catalogue-warmup"}
    if marker.exists():
        known = json.loads(marker.read_text())
        if known["wanted"] == wanted and all(len(audio_files(dirs[size])) == known["files"][size] for size in dirs):
            logger.info("reusing the catalogues in %s", work)
            return known
    marker.unlink(missing_ok=True)
    for directory in dirs.values():
        shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    summary = write_demo_catalogue(dirs["large"], args.songs, args.seed, min_duration_s=0.9 * args.duration,
                                   max_duration_s=1.1 * args.duration, with_broken_file=False)
    written_s = time.perf_counter() - started
    fields, rows = read_labels(Path(summary.labels_csv))
    jobs = []
    for index, row in enumerate(rows):
        fmt = target_format(index)
        if fmt != "mp3":
            new = row["path"][: -len(".mp3")] + f".{fmt}"
            jobs.append((str(dirs["large"] / row["path"]), str(dirs["large"] / new), fmt))
            row["path"] = new
    started = time.perf_counter()
    # Before Ray starts: nothing holds threads, fork is safe.
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        for _ in pool.imap_unordered(convert, jobs, chunksize=16):
            pass
    converted_s = time.perf_counter() - started
    broken: dict[str, str] = {}
    for index, row in enumerate(rows):
        if kind := broken_kind(index):
            break_file(dirs["large"] / row["path"], kind, args.seed)
            broken[row["path"]] = kind
    write_labels(Path(summary.labels_csv), fields, rows)
    subset(dirs["large"], dirs["small"], fields, rows[: args.small])
    warmup = [row for row in rows[args.small:] if row["path"] not in broken][:WARMUP_FILES]
    subset(dirs["large"], dirs["warmup"], fields, warmup)
    small_paths = {row["path"] for row in rows[: args.small]}
    known = {
        "wanted": wanted,
        "files": {size: len(audio_files(directory)) for size, directory in dirs.items()},
        "broken": {"large": broken, "small": {p: k for p, k in broken.items() if p in small_paths}},
        "formats": {size: _format_counts(audio_files(dirs[size])) for size in ("large", "small")},
        "write_s": written_s,
        "convert_s": converted_s,
    }
    for size, n in (("large", args.songs), ("small", args.small)):
        if known["files"][size] != n:
            raise SystemExit(f"{dirs[size]} holds {known['files'][size]} audio files, expected {n}")
    marker.write_text(json.dumps(known, indent=1))
    logger.info("catalogues written: %.0f s writing, %.0f s converting", written_s, converted_s)
    return known


def _format_counts(paths: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in paths:
        ext = path.rsplit(".", 1)[-1]
        counts[ext] = counts.get(ext, 0) + 1
    return counts


# ---------------------------------------------------------------- memory
def vm_hwm_mb() -> float:
    """This process's peak RSS since the last reset (``VmHWM``), MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where it cannot be."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class WorkerSampler:
    """A thread that samples, every ``SAMPLE_S``, the RSS of the Ray worker processes under this
    driver (a process titled ``ray::...`` or python running ``default_worker.py``: tasks, idle
    workers, Ray Data and Ray Train actors; not the raylet, GCS or the dashboard and runtime-env
    agents) and of the driver itself; the maxima are kept per stage, with the titles of the
    workers at the largest sum."""

    def __init__(self) -> None:
        import psutil  # Ray's own copy (ray/thirdparty_files), on the path once ray is imported

        self.psutil = psutil
        self.me = psutil.Process()
        self.known: dict[int, tuple[Any, bool]] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.stage: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self.begin()
        self.thread.start()

    def begin(self) -> None:
        with self.lock:
            self.stage = {"worker_max_mb": 0.0, "workers_sum_mb": 0.0, "workers_at_sum": 0, "workers_at_sum_titles": {},
                          "driver_sampled_mb": 0.0,
                          "samples": 0}
        self._sample()

    def end(self) -> dict[str, Any]:
        self._sample()
        with self.lock:
            return dict(self.stage)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)

    def _is_worker(self, process: Any) -> bool:
        try:
            cmdline = process.cmdline()
        except (self.psutil.Error, OSError):
            return False
        if not cmdline:
            return False
        first = cmdline[0]
        if first.startswith("ray::"):
            return first.split(" ")[0] not in RAY_AGENTS
        # A worker still starting (before it sets its title) is python running default_worker.py;
        # the raylet's own command line names default_worker.py too, as an argument.
        return "python" in os.path.basename(first) and any(c.endswith("default_worker.py") for c in cmdline[1:3])

    def _sample(self) -> None:
        psutil = self.psutil
        try:
            children = self.me.children(recursive=True)
        except psutil.Error:
            return
        sizes, titles = [], []
        for child in children:
            entry = self.known.get(child.pid)
            if entry is None or entry[0].create_time() != child.create_time():
                entry = (child, False)
            # A worker's title changes from its command line to ray::... once it starts: ask again
            # until it is one.
            if not entry[1]:
                entry = (entry[0], self._is_worker(entry[0]))
            self.known[child.pid] = entry
            if entry[1]:
                try:
                    sizes.append(entry[0].memory_info().rss / 2**20)
                    titles.append(_title(entry[0]))
                except (psutil.Error, OSError):
                    pass
        try:
            driver = self.me.memory_info().rss / 2**20
        except psutil.Error:
            driver = 0.0
        with self.lock:
            stage = self.stage
            stage["samples"] += 1
            stage["driver_sampled_mb"] = max(stage["driver_sampled_mb"], driver)
            if sizes:
                stage["worker_max_mb"] = max(stage["worker_max_mb"], max(sizes))
                if sum(sizes) > stage["workers_sum_mb"]:
                    stage["workers_sum_mb"], stage["workers_at_sum"] = sum(sizes), len(sizes)
                    counts: dict[str, int] = {}
                    for title in titles:
                        counts[title] = counts.get(title, 0) + 1
                    stage["workers_at_sum_titles"] = counts

    def _run(self) -> None:
        while not self.stop_event.wait(SAMPLE_S):
            try:
                self._sample()
            except Exception:  # a process that vanished mid-read; the next sample goes on
                logger.debug("sample failed", exc_info=True)


def _title(process: Any) -> str:
    """A worker's process title (``ray::IDLE``, ``ray::MapWorker(...)``, ``ray::RayTrainWorker``...)."""
    try:
        cmdline = process.cmdline()
    except Exception:
        return "?"
    return (cmdline[0] if cmdline else "?").split(" ")[0][:60]


def measured(sampler: WorkerSampler, name: str, fn: Any) -> tuple[Any, dict[str, Any]]:
    """Run ``fn()`` as one stage: wall seconds, load before/after, driver and worker peaks."""
    resettable = reset_peak()
    load_before = os.getloadavg()[0]
    sampler.begin()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    figures = sampler.end()
    figures.update({
        "stage": name, "seconds": seconds, "driver_peak_mb": vm_hwm_mb() if resettable else ru_maxrss_mb(),
        "driver_peak_reset": resettable, "driver_ru_maxrss_mb": ru_maxrss_mb(),
        "load_before": load_before, "load_after": os.getloadavg()[0],
    })
    logger.info("%s: %.1f s, driver peak %.0f MB, worker peak %.0f MB, workers sum %.0f MB", name, seconds,
                figures["driver_peak_mb"], figures["worker_max_mb"], figures["workers_sum_mb"])
    return result, figures


# ---------------------------------------------------------------- checks
def account(ingest_root: str, written: int, broken: dict[str, str]) -> dict[str, Any]:
    """Every written file exactly once in songs + errors; every broken file an error row."""
    from genre_batch.artifacts import published_ingest
    from genre_batch.tables import read_frame

    ingest = published_ingest(ingest_root)
    songs = read_frame(ingest.songs_uri)
    errors = read_frame(ingest.errors_uri)
    song_paths, error_paths = set(songs["relative_path"]), set(errors["relative_path"])
    broken_missing = sorted(set(broken) - error_paths)
    by_stage = errors.groupby(["stage", "error_type"]).size().to_dict() if len(errors) else {}
    result = {
        "written": written, "songs": len(songs), "errors": len(errors), "tiles": int(songs["n_tiles"].sum()),
        "distinct": len(song_paths | error_paths), "both": len(song_paths & error_paths),
        "broken": len(broken), "broken_in_errors": len(broken) - len(broken_missing),
        "broken_missing": broken_missing[:10],
        "unexpected_errors": sorted(error_paths - set(broken))[:10],
        "errors_by_stage": {f"{stage}/{kind}": int(n) for (stage, kind), n in by_stage.items()},
        "decoders": {str(k): int(v) for k, v in songs["decoder"].value_counts().items()},
    }
    result["pass"] = (len(songs) + len(errors) == written and result["distinct"] == written and not result["both"]
                      and not broken_missing)
    return result


def accounting_line(label: str, acc: dict[str, Any]) -> str:
    verdict = "PASS" if acc["pass"] else "FAIL"
    line = (f"accounting {label}: {acc['songs']} songs + {acc['errors']} errors = {acc['songs'] + acc['errors']} "
            f"of {acc['written']} files written ({acc['distinct']} distinct, {acc['both']} in both); broken files "
            f"in errors: {acc['broken_in_errors']} of {acc['broken']}; errors by stage: {acc['errors_by_stage']} "
            f"-- {verdict}")
    if acc["unexpected_errors"]:
        line += f"\n  errors that were not broken on purpose (first 10): {acc['unexpected_errors']}"
    if acc["broken_missing"]:
        line += f"\n  broken files not in errors (first 10): {acc['broken_missing']}"
    return line


# ---------------------------------------------------------------- runs
def run_size(size: str, catalogue: Path, root: Path, sampler: WorkerSampler, known: dict[str, Any],
             skip_train_index: bool) -> dict[str, Any]:
    from genre_batch.config import TrainConfig
    from pipelines.index import run_index
    from pipelines.ingest import run_ingest
    from pipelines.train import run_train

    shutil.rmtree(root, ignore_errors=True)
    out: dict[str, Any] = {"files": known["files"][size]}
    report, out["ingest"] = measured(sampler, f"{size} ingest", lambda: run_ingest(
        str(catalogue), str(root), labels=str(catalogue / "labels.csv")))
    out["ingest"].update(units=report.files, unit="files", rate=report.files / out["ingest"]["seconds"],
                         songs=report.songs, tiles=report.tiles, errors=report.errors)
    out["accounting"] = account(str(root), known["files"][size], known["broken"][size])
    print(accounting_line(size, out["accounting"]), flush=True)
    if skip_train_index:
        return out
    train, out["train"] = measured(sampler, f"{size} train", lambda: run_train(str(root), TrainConfig(epochs=1)))
    epoch = train.metrics.history[-1]
    out["train"].update(units=report.tiles, unit="tiles", rate=report.tiles / out["train"]["seconds"],
                        epoch_seconds=epoch.get("epoch_seconds"), epoch_tiles_per_s=epoch.get("tiles_per_s"),
                        valid_song_accuracy=train.metrics.valid.song_accuracy,
                        test_song_accuracy=train.metrics.test.song_accuracy)
    index, out["index"] = measured(sampler, f"{size} index", lambda: run_index(str(root)))
    out["index"].update(units=report.tiles, unit="tiles", rate=report.tiles / out["index"]["seconds"],
                        songs=index.songs, unknown=index.unknown)
    return out


def run_s3(work: Path, catalogue: Path, sampler: WorkerSampler, known: dict[str, Any], server: Any) -> dict[str, Any]:
    import s3fs

    from pipelines.ingest import run_ingest

    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    started = time.perf_counter()
    fs.put(str(catalogue) + "/", f"{BUCKET}/catalogue/", recursive=True)
    upload_s = time.perf_counter() - started
    logger.info("uploaded %s to s3://%s/catalogue in %.0f s", catalogue, BUCKET, upload_s)
    base = f"s3://{BUCKET}"
    report, figures = measured(sampler, "large ingest, s3", lambda: run_ingest(
        f"{base}/catalogue", f"{base}/root", labels=f"{base}/catalogue/labels.csv"))
    figures.update(units=report.files, unit="files", rate=report.files / figures["seconds"], songs=report.songs,
                   tiles=report.tiles, errors=report.errors, upload_s=upload_s, endpoint=server.endpoint)
    out = {"ingest": figures, "accounting": account(f"{base}/root", known["files"]["large"], known["broken"]["large"])}
    print(accounting_line("large, s3", out["accounting"]), flush=True)
    return out


# ---------------------------------------------------------------- report
STAGES = ("ingest", "train", "index")


def size_table(label: str, run: dict[str, Any]) -> list[str]:
    lines = [f"{label}: {run['files']} files",
             "| stage | units | s | units/s | driver peak RSS MB | worker peak RSS MB | workers sum MB (n) | load 1m before/after |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for stage in STAGES:
        if stage not in run:
            continue
        f = run[stage]
        extra = f"; epoch {f['epoch_tiles_per_s']:.0f} tiles/s" if f.get("epoch_tiles_per_s") else ""
        lines.append(f"| {stage} | {f['units']} {f['unit']} | {f['seconds']:.1f} | {f['rate']:.1f}{extra} | "
                     f"{f['driver_peak_mb']:.0f} | {f['worker_max_mb']:.0f} | {f['workers_sum_mb']:.0f} "
                     f"({f['workers_at_sum']}) | {f['load_before']:.2f} / {f['load_after']:.2f} |")
    for stage in STAGES:
        if stage in run:
            lines.append(f"  {stage}: worker processes at the largest sum, by title: {run[stage]['workers_at_sum_titles']}")
    return lines


def ratio_table(small: dict[str, Any], large: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines = ["ratios large / small (peak RSS: target flat, PASS at <= 2; s per unit: 1.0 = linear)",
             "| stage | units | s per unit | driver peak RSS | worker peak RSS | workers sum RSS |",
             "|---|---:|---:|---:|---:|---:|"]
    ratios: dict[str, Any] = {}
    for stage in STAGES:
        if stage not in small or stage not in large:
            continue
        s, b = small[stage], large[stage]
        r = {"units": b["units"] / s["units"],
             "seconds_per_unit": (b["seconds"] / b["units"]) / (s["seconds"] / s["units"]),
             "driver_peak": b["driver_peak_mb"] / s["driver_peak_mb"],
             "worker_peak": b["worker_max_mb"] / s["worker_max_mb"] if s["worker_max_mb"] else float("nan"),
             "workers_sum": b["workers_sum_mb"] / s["workers_sum_mb"] if s["workers_sum_mb"] else float("nan")}
        ratios[stage] = r

        def judged(value: float) -> str:
            return f"{value:.2f}x {'PASS' if value <= TARGET_RSS_RATIO else 'FAIL'}"

        lines.append(f"| {stage} | {r['units']:.1f}x | {r['seconds_per_unit']:.2f}x | {judged(r['driver_peak'])} | "
                     f"{judged(r['worker_peak'])} | {judged(r['workers_sum'])} |")
    return lines, ratios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=10_000, help="files in the large catalogue")
    parser.add_argument("--small", type=int, default=None, help="files in the small one (default: songs / 10)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per song (each 0.9-1.1x of it)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the catalogue")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="catalogues and roots; a catalogue already written there is reused (default: a temporary dir)")
    parser.add_argument("--s3", action="store_true", help="also ingest the large catalogue from and into a local "
                        "S3-compatible server (moto)")
    parser.add_argument("--skip-train-index", action="store_true", help="ingest only")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    args.small = args.small or max(1, args.songs // 10)
    if not 0 < args.small < args.songs:
        parser.error("need 0 < --small < --songs")
    if args.small <= WARMUP_FILES + BROKEN_EVERY:
        parser.error(f"--small must be over {WARMUP_FILES + BROKEN_EVERY}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks.machine import machine
    from genre_batch.entry import configure_logging

    configure_logging()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gb-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"machine: {machine()}; load 1m {os.getloadavg()[0]:.2f}", flush=True)
    known = prepare(work, args)
    print(f"catalogues in {work}: large {known['files']['large']} files {known['formats']['large']}, "
          f"{len(known['broken']['large'])} broken; small {known['files']['small']} files {known['formats']['small']}, "
          f"{len(known['broken']['small'])} broken (written in {known['write_s']:.0f} s, converted in "
          f"{known['convert_s']:.0f} s, when first made)", flush=True)
    server = None
    if args.s3:
        # Before Ray starts: its workers inherit the endpoint and credentials from this environment.
        from tests.servers import start_s3_server

        server = start_s3_server(str(work / "moto.log"))
        os.environ.update(server.env)
    result: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                              "catalogue": known}
    try:
        import ray  # noqa: F401  (puts Ray's psutil on the path)

        from pipelines._ray import ensure_ray
        from pipelines.ingest import run_ingest

        t = time.perf_counter()
        ensure_ray()
        result["ray_init_s"] = time.perf_counter() - t
        sampler = WorkerSampler()
        sampler.start()
        t = time.perf_counter()
        shutil.rmtree(work / "root-warmup", ignore_errors=True)
        run_ingest(str(work / "catalogue-warmup"), str(work / "root-warmup"), labels=str(work / "catalogue-warmup" / "labels.csv"))
        result["warmup_s"] = time.perf_counter() - t
        print(f"ray.init {result['ray_init_s']:.1f} s; warm-up ingest of {WARMUP_FILES} files {result['warmup_s']:.1f} s",
              flush=True)
        for size in ("small", "large"):
            result[size] = run_size(size, work / f"catalogue-{size}", work / f"root-{size}", sampler, known,
                                    args.skip_train_index)
        if server is not None:
            result["s3"] = run_s3(work, work / "catalogue-large", sampler, known, server)
        sampler.close()
    finally:
        if server is not None:
            server.stop()
    lines = ["", f"machine: {result['machine']}", f"total {time.perf_counter() - started:.0f} s; "
             f"load 1m now {os.getloadavg()[0]:.2f}", ""]
    lines += size_table("small (N/10)", result["small"]) + [""] + size_table("large (N)", result["large"]) + [""]
    ratio_lines, result["ratios"] = ratio_table(result["small"], result["large"])
    lines += ratio_lines + [""]
    for size in ("small", "large"):
        lines.append(accounting_line(size, result[size]["accounting"]))
    if "s3" in result:
        f = result["s3"]["ingest"]
        local = result["large"]["ingest"]
        lines += ["", f"s3 (moto at {f['endpoint']}): upload {f['upload_s']:.0f} s; ingest {f['units']} files "
                  f"{f['seconds']:.1f} s, {f['rate']:.1f} files/s ({f['seconds'] / local['seconds']:.2f}x the local "
                  f"ingest's time); driver peak {f['driver_peak_mb']:.0f} MB, worker peak {f['worker_max_mb']:.0f} MB, "
                  f"workers sum {f['workers_sum_mb']:.0f} MB",
                  accounting_line("large, s3", result["s3"]["accounting"])]
    print("\n".join(lines), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    passed = all(result[size]["accounting"]["pass"] for size in ("small", "large"))
    return 0 if passed and ("s3" not in result or result["s3"]["accounting"]["pass"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
