"""Nightly re-indexing vs a full rebuild, on the same grown catalogue, in one run.

    .venv/bin/python benchmarks/nightly.py --songs 300 [--catalogue DIR] [--json out.json]

1. A catalogue of ``--songs`` songs of ``--duration`` s (``genre_batch.synth.write_catalogue``,
   reused from ``--catalogue`` when it holds the same songs; benchmarks/ingest.py writes the
   same marker, so a catalogue made by either serves both).
2. ``ray.init`` (``pipelines._ray.ensure_ray``), timed apart: neither side below pays it.
3. Set-up, untimed for the comparison: ``run_ingest`` + ``run_train`` (1 epoch, small batch:
   only a published model is needed, not a good one) + ``run_index`` into a root A.
4. ``--add-percent`` new songs (default 1 %: 3 of 300) are written into the catalogue.
5. (b) NIGHTLY: ``run_nightly`` on root A, per stage; then (b2) a second ``run_nightly`` with no
   change, which must decode and publish nothing.
6. (a) FULL: what a non-incremental system pays each night: a fresh ``run_ingest`` and
   ``run_index`` into an empty root B over the same grown catalogue (the published model is
   copied into B beforehand, untimed).
7. Probe (``--no-probe`` skips it): the new songs decoded + tiled and embedded in this process,
   without Ray, to show what the nightly's ingest and embed stages pay in fixed costs.
   ``--investigate`` also splits ``embed_songs`` on the new songs into the read + actor-pool
   map (each batch reduced to per-song sums) and the merge of the sums in the driver.

The target: (b) without the index rebuild <= 5 % of (a) without the index rebuild, where

* index rebuild = ``publish_index``: threshold, predictions.parquet, Annoy build + save +
  upload, the embedding-map plot, manifest, LATEST (the nightly's ``index`` stage);
* (b) without it = ``run_nightly`` total - its ``index`` stage
  = list_and_compare + ingest + publish_ingest + embed + retention;
* (a) without it = ``run_ingest`` + ``run_index`` - ``publish_index``
  = ingest + embed (+ run_index's reads of the manifest, songs table and model).

The index rebuild is reported separately for both sides (Annoy cannot add items, so both
rebuild it from every song's embedding). Load (``os.getloadavg``) is printed before and after
each step: on a shared machine a load above the core count inflates every wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("benchmarks.nightly")

ADDED_TAG = "nightly-bench"  # in the names of the songs this benchmark adds (removed at start and end)
TARGET_RATIO = 0.05
NIGHTLY_STAGES = ("list_and_compare", "ingest", "publish_ingest", "embed", "index", "retention")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/nightly.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=300, help="songs in the catalogue (default: 300)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per song (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="catalogue seed (default: 0)")
    parser.add_argument("--source-format", default="mixed",
                        help="'mixed' (default): the demo's mix of 22.05/44.1 kHz mono/stereo mp3s, as in "
                        "earlier results; or sample rate x channels of every file, e.g. 44100x2 (what "
                        "real catalogues hold)")
    parser.add_argument("--catalogue", default=None,
                        help="directory for the catalogue, reused when it holds the same songs/duration/seed "
                        "(default: a temporary directory, deleted at the end)")
    parser.add_argument("--work-dir", default=None, help="where the two roots go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the roots and the added songs at the end")
    parser.add_argument("--add-percent", type=float, default=1.0,
                        help="new songs before the nightly run, in %% of --songs, rounded up (default: 1)")
    parser.add_argument("--files-per-task", type=int, default=8, help="files per Ray task, both sides (default: 8)")
    parser.add_argument("--n-trees", type=int, default=None, help="Annoy trees, both sides (default: IndexConfig's)")
    parser.add_argument("--train-batch-size", type=int, default=16, help="tiles per step of the set-up training")
    parser.add_argument("--no-probe", action="store_true", help="skip the in-process probe of the new songs")
    parser.add_argument("--investigate", action="store_true",
                        help="also split embed_songs on the new songs into actor-pool map and merge of the sums")
    parser.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    return parser


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def load1() -> float:
    return os.getloadavg()[0]


@dataclass
class Step:
    """One timed step: wall seconds, the 1-minute load around it, and what it reported."""

    name: str
    wall_s: float
    load_before: float
    load_after: float
    calls: dict[str, float] = field(default_factory=dict)  # seconds inside instrumented calls
    notes: dict[str, Any] = field(default_factory=dict)


class CallTimer:
    """Wall seconds spent inside the index stages of both jobs (summed per label).

    ``run_index`` and ``run_nightly`` look ``embed_songs`` up in pipelines.index and
    ``publish_index_version`` up in their own modules when they run, and
    ``publish_index_version`` looks up ``write_rows``, ``upload_file``, ``save_plots`` and
    ``SongIndex`` in genre_batch.indexing, so wrapping those attributes splits both jobs into
    the same parts without touching library code.
    """

    # (module, attribute, label)
    WRAPPED = (
        ("pipelines.index", "embed_songs", "embed_songs"),
        ("pipelines.index", "publish_index_version", "publish_index"),
        ("pipelines.nightly", "publish_index_version", "publish_index"),
        ("genre_batch.indexing", "write_rows", "write_rows"),
        ("genre_batch.indexing", "upload_file", "upload_file"),
        ("genre_batch.indexing", "save_plots", "save_plots"),
    )

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    @contextlib.contextmanager
    def active(self) -> Iterator["CallTimer"]:
        import importlib

        from genre_batch.index import SongIndex

        modules = {name: importlib.import_module(name) for name, _, _ in self.WRAPPED}
        originals = [(modules[module], attribute, label, getattr(modules[module], attribute))
                     for module, attribute, label in self.WRAPPED]
        build = SongIndex.__dict__["build"]  # the classmethod object itself
        try:
            for module, attribute, label, function in originals:
                setattr(module, attribute, self._timed(label, function))
            SongIndex.build = classmethod(self._timed("annoy_build", build.__func__))
            yield self
        finally:
            for module, attribute, _, function in originals:
                setattr(module, attribute, function)
            SongIndex.build = build


def timed(name: str, body: Callable[[], dict[str, Any] | None]) -> Step:
    timer = CallTimer()
    before = load1()
    with timer.active():
        started = time.perf_counter()
        notes = body() or {}
        wall = time.perf_counter() - started
    step = Step(name, wall, before, load1(), dict(timer.seconds), notes)
    logger.info("%s: %.1f s (load %.1f -> %.1f)", name, wall, step.load_before, step.load_after)
    return step


# --------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------


def remove_added_songs(catalogue: Path) -> int:
    removed = 0
    for path in catalogue.rglob(f"*({ADDED_TAG} *).mp3"):
        path.unlink()
        removed += 1
    return removed


def prepare_catalogue(directory: Path, songs: int, duration_s: float, seed: int, source_format: str) -> float:
    """Write (or reuse) the catalogue, without songs an earlier run added; returns the seconds spent writing it."""
    from benchmarks.catalogue import prepare_catalogue as prepare

    directory.mkdir(parents=True, exist_ok=True)
    if removed := remove_added_songs(directory):
        logger.info("removed %d songs added by an earlier run", removed)
    return prepare(directory, songs, duration_s, seed, source_format)


def add_songs(catalogue: Path, count: int, duration_s: float, seed: int, source_format: str) -> list[str]:
    """Write ``count`` new songs (the nightly's 'new files'); returns their relative paths."""
    from benchmarks.catalogue import parse_source_format
    from genre_batch.synth import plan_catalogue, write_song

    added = []
    for song in plan_catalogue(count, seed=seed, min_duration_s=duration_s, max_duration_s=duration_s,
                               source_format=parse_source_format(source_format)):
        song = dataclasses.replace(song, relative_path=song.relative_path.replace(".mp3", f" ({ADDED_TAG} s{seed}).mp3"))
        path = catalogue / song.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        write_song(song, path)
        added.append(song.relative_path)
    return added


# --------------------------------------------------------------------------------------
# The jobs
# --------------------------------------------------------------------------------------


def ray_init() -> dict[str, Any]:
    import ray

    from pipelines._ray import ensure_ray

    if os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists():
        logger.warning("RAY_ADDRESS or /tmp/ray/ray_current_cluster is set: ensure_ray may join a shared cluster")
    ensure_ray()
    return {"cluster_cpus": int(ray.cluster_resources().get("CPU", 0))}


def setup_chain(catalogue: str, root: str, args: argparse.Namespace, index_config: Any) -> dict[str, Any]:
    from genre_batch.config import IngestConfig, TrainConfig
    from pipelines.index import run_index
    from pipelines.ingest import run_ingest
    from pipelines.train import run_train

    ingest = run_ingest(catalogue, root, config=IngestConfig(files_per_task=args.files_per_task))
    train = run_train(root, TrainConfig(epochs=1, batch_size=args.train_batch_size))
    index = run_index(root, index_config)
    return {"songs": ingest.songs, "tiles": ingest.tiles, "ingest_s": ingest.seconds,
            "train_s": train.seconds, "index_s": index.seconds, "model_run": train.run}


def copy_published_model(source_root: str, target_root: str) -> str:
    """models/LATEST and the model file with its metrics (not the Ray Train checkpoints)."""
    run = (Path(source_root) / "models" / "LATEST").read_text().strip()
    target = Path(target_root) / "models" / run
    target.mkdir(parents=True)
    for name in ("model.pt", "metrics.json"):
        shutil.copy2(Path(source_root) / "models" / run / name, target / name)
    (Path(target_root) / "models" / "LATEST").write_text(run + "\n")
    return run


def full_ingest(catalogue: str, root: str, files_per_task: int) -> dict[str, Any]:
    from genre_batch.config import IngestConfig
    from pipelines.ingest import run_ingest

    report = run_ingest(catalogue, root, config=IngestConfig(files_per_task=files_per_task))
    return {"songs": report.songs, "tiles": report.tiles, "errors": report.errors}


def full_index(root: str, index_config: Any) -> dict[str, Any]:
    from pipelines.index import run_index

    report = run_index(root, index_config)
    return {"songs": report.songs, "version": report.version}


def nightly(catalogue: str, root: str, files_per_task: int, index_config: Any) -> dict[str, Any]:
    from genre_batch.config import IngestConfig
    from pipelines.nightly import run_nightly

    report = run_nightly(catalogue, root, ingest_config=IngestConfig(files_per_task=files_per_task),
                         index_config=index_config)
    logger.info("%s", report.summary())
    return {"counts": report.counts, "tiles_written": report.tiles_written, "published": report.published,
            "seconds": report.seconds, "index_version": report.index_version}


def probe_in_process(root: str, added: list[str], catalogue: Path, scratch: Path) -> dict[str, float]:
    """The nightly's work on the new songs, in this process without Ray: what it costs
    without task scheduling, worker start-up, Ray Data planning and actor start-up."""
    from genre_batch.artifacts import published_ingest, published_model_run
    from genre_batch.catalogue import list_catalogue
    from genre_batch.inference import TileClassifier, predict_songs_in_process
    from genre_batch.ingest import ingest_group
    from genre_batch.layout import RootLayout
    from genre_batch.storage import read_bytes

    ingest = published_ingest(root)
    features = ingest.feature_config
    files = [f for f in list_catalogue(str(catalogue), "folder") if f.relative_path in set(added)]
    seconds: dict[str, float] = {}
    # Twice: the first call in a process also loads librosa's numba code (from NUMBA_CACHE_DIR).
    for attempt in ("cold", "warm"):
        started = time.perf_counter()
        songs, _ = ingest_group(files, str(scratch / attempt), "", features, ingest.manifest.split_config)
        seconds[f"decode_tile_write_{attempt}"] = time.perf_counter() - started
    started = time.perf_counter()
    model = TileClassifier.load(read_bytes(RootLayout(root).model_file(published_model_run(root))), features)
    seconds["model_load"] = time.perf_counter() - started
    started = time.perf_counter()
    shard = str(scratch / "warm" / songs[0]["tiles_file"])
    pooled = predict_songs_in_process([shard], model, {song["song_id"] for song in songs})
    seconds["embed_and_pool"] = time.perf_counter() - started
    seconds["songs"] = len(files)
    seconds["tiles"] = int(pooled["n_tiles"].sum())
    return seconds


def investigate_embed(root: str, added: list[str]) -> dict[str, float]:
    """Where ``embed_songs`` spends its time on the new songs' shard(s): the whole
    ``predict_songs``; its read + TileModel actor-pool map alone (each batch already reduced
    to per-song sums); and the merge of those sums in the driver."""
    import ray

    from genre_batch.artifacts import published_ingest, published_model_run
    from genre_batch.layout import RootLayout
    from genre_batch.storage import filesystem, join, pyarrow_filesystem
    from genre_batch.tables import read_frame
    from genre_batch.inference import pooled_frame
    from pipelines.inference import TileModel, predict_songs

    layout = RootLayout(root)
    ingest = published_ingest(root)
    songs = read_frame(ingest.songs_uri)
    shards = sorted(set(songs.loc[songs["relative_path"].isin(added), "tiles_file"]))
    uris = [join(layout.ingest_area, shard) for shard in shards]
    model_uri = layout.model_file(published_model_run(root))
    features = ingest.feature_config
    seconds: dict[str, float] = {"shards": len(uris)}

    started = time.perf_counter()
    predict_songs(uris, model_uri, features)
    seconds["predict_songs"] = time.perf_counter() - started

    started = time.perf_counter()
    fs, _ = pyarrow_filesystem(uris[0])
    tiles = ray.data.read_parquet([filesystem(uri)[1] for uri in uris], filesystem=fs,
                                  columns=["song_id", "tile", "label", "split"])
    sums = tiles.map_batches(
        TileModel, fn_constructor_kwargs={"model_uri": model_uri, "features": features.to_dict(), "use_gpu": False},
        batch_size=64, batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=1), num_cpus=1,
    ).materialize()
    seconds["read_and_actor_map"] = time.perf_counter() - started
    started = time.perf_counter()
    pooled_frame(list(sums.iter_batches(batch_size=None, batch_format="numpy")))
    seconds["merge_in_driver"] = time.perf_counter() - started
    return seconds


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from benchmarks import machine as described

    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if shutil.which("uptime") else ""
    return {**described.machine(), "uptime": uptime}


def row(label: str, seconds: float | None, note: str = "") -> str:
    shown = "-" if seconds is None else f"{seconds:8.3f}" if label.startswith("    ") else f"{seconds:8.2f}"
    return f"| {label:<58} | {shown:>8} | {note} |"


def summarise(steps: dict[str, Step], added: int, songs_total: int) -> dict[str, Any]:
    """The comparison the target is about, from the timed steps."""
    ingest_a, index_a = steps["full_ingest"], steps["full_index"]
    rebuild_a = index_a.calls.get("publish_index", 0.0)
    embed_a = index_a.calls.get("embed_songs", 0.0)
    full_excl = ingest_a.wall_s + index_a.wall_s - rebuild_a
    night = steps["nightly"].notes["seconds"]
    rebuild_b = night.get("index", 0.0)
    nightly_excl = night["total"] - rebuild_b
    strict_b = sum(night.get(stage, 0.0) for stage in ("list_and_compare", "ingest", "publish_ingest", "embed"))
    strict_a = ingest_a.wall_s + embed_a
    return {
        "full_total_s": ingest_a.wall_s + index_a.wall_s,
        "full_excl_rebuild_s": full_excl,
        "full_rebuild_s": rebuild_a,
        "nightly_total_s": night["total"],
        "nightly_excl_rebuild_s": nightly_excl,
        "nightly_rebuild_s": rebuild_b,
        "ratio": nightly_excl / full_excl,
        "ratio_strict": strict_b / strict_a,
        "ratio_with_rebuild": night["total"] / (ingest_a.wall_s + index_a.wall_s),
        "added": added,
        "songs_total": songs_total,
    }


def print_tables(steps: dict[str, Step], summary: dict[str, Any], probe: dict[str, float] | None) -> list[str]:
    """Markdown tables (ready for RESULTS.md); returns the lines printed."""
    ingest_a, index_a = steps["full_ingest"], steps["full_index"]
    night, again = steps["nightly"].notes["seconds"], steps["nightly_again"].notes["seconds"]
    calls_a, calls_b = index_a.calls, steps["nightly"].calls
    lines = [
        f"ray.init (ensure_ray), before anything else: {steps['ray_init'].wall_s:.2f} s "
        f"(set-up chain, untimed for the comparison: {steps['setup'].wall_s:.0f} s)",
        "",
        f"(a) FULL: fresh run_ingest + run_index over {summary['songs_total']} songs, empty root",
        "",
        "| step | seconds | |",
        "|---|---:|---|",
        row("ingest (run_ingest: list, decode, tile, tables, publish)", ingest_a.wall_s,
            f"load {ingest_a.load_before:.1f}->{ingest_a.load_after:.1f}"),
        row("index (run_index)", index_a.wall_s, f"load {index_a.load_before:.1f}->{index_a.load_after:.1f}"),
        row("  embed (embed_songs: Ray Data inference over every tile)", calls_a.get("embed_songs")),
        row("  reads before embedding (manifest, songs table, model)",
            index_a.wall_s - calls_a.get("embed_songs", 0) - calls_a.get("publish_index", 0)),
        row("  index rebuild (publish_index)", calls_a.get("publish_index")),
        row("    of which Annoy build", calls_a.get("annoy_build")),
        row("    of which Annoy save + upload", calls_a.get("upload_file")),
        row("    of which predictions.parquet", calls_a.get("write_rows")),
        row("    of which embedding-map plot", calls_a.get("save_plots")),
        row("**full total**", summary["full_total_s"]),
        row("**full without index rebuild** (ingest + index - publish_index)", summary["full_excl_rebuild_s"]),
        "",
        f"(b) NIGHTLY: run_nightly after adding {summary['added']} new songs "
        f"({steps['nightly'].notes['counts']}, {steps['nightly'].notes['tiles_written']} tiles written, "
        f"published {steps['nightly'].notes['published']}), load "
        f"{steps['nightly'].load_before:.1f}->{steps['nightly'].load_after:.1f}",
        "",
        "| stage | seconds | |",
        "|---|---:|---|",
    ]
    for stage in NIGHTLY_STAGES:
        note = {"embed": f"embed_songs {calls_b.get('embed_songs', 0):.2f} s + reuse of stored embeddings",
                "index": (f"index rebuild: Annoy build {calls_b.get('annoy_build', 0):.2f}, save+upload "
                          f"{calls_b.get('upload_file', 0):.2f}, predictions {calls_b.get('write_rows', 0):.2f}, "
                          f"plot {calls_b.get('save_plots', 0):.2f}")}.get(stage, "")
        lines.append(row(stage, night.get(stage), note))
    lines += [
        row("**nightly total**", night["total"]),
        row("**nightly without index rebuild** (total - index)", summary["nightly_excl_rebuild_s"]),
        "",
        "| comparison | value | target |",
        "|---|---:|---|",
        f"| (b) without rebuild / (a) without rebuild | {summary['ratio']:.1%} | <= {TARGET_RATIO:.0%} "
        f"**{'PASS' if summary['ratio'] <= TARGET_RATIO else 'FAIL'}** |",
        f"| same, stages only: (list_and_compare+ingest+publish_ingest+embed) / (ingest+embed_songs) "
        f"| {summary['ratio_strict']:.1%} | |",
        f"| index rebuild: nightly / full | {summary['nightly_rebuild_s']:.2f} s / {summary['full_rebuild_s']:.2f} s | "
        "reported apart |",
        f"| with the rebuild: nightly total / full total | {summary['ratio_with_rebuild']:.1%} | |",
        "",
        f"(b2) second nightly, no change: {again['total']:.2f} s "
        f"({steps['nightly_again'].notes['counts']}, {steps['nightly_again'].notes['tiles_written']} tiles written, "
        f"published {steps['nightly_again'].notes['published'] or 'nothing'}; stages "
        + ", ".join(f"{k} {v:.2f}" for k, v in again.items() if k != "total") + ")",
    ]
    if probe:
        lines += [
            "",
            f"Probe: the {int(probe['songs'])} new songs ({int(probe['tiles'])} tiles) in this process, no Ray: "
            f"decode+tile+write {probe['decode_tile_write_cold']:.2f} s on the first call in a process (numba code "
            f"loaded), {probe['decode_tile_write_warm']:.2f} s after (nightly ingest stage {night.get('ingest', 0):.2f} s); "
            f"model load {probe['model_load']:.2f} s + embed+pool {probe['embed_and_pool']:.2f} s "
            f"(nightly embed_songs {calls_b.get('embed_songs', 0):.2f} s)",
        ]
    for line in lines:
        print(line)
    return lines


def recommendations(steps: dict[str, Step], summary: dict[str, Any], probe: dict[str, float] | None,
                    investigation: dict[str, float] | None) -> list[str]:
    """Where the nightly's time goes, and what the ratio would be on a bigger catalogue."""
    night = steps["nightly"].notes["seconds"]
    parts = {stage: night.get(stage, 0.0) for stage in NIGHTLY_STAGES if stage != "index"}
    dominant = max(parts, key=parts.get)
    full_per_song = summary["full_excl_rebuild_s"] / summary["songs_total"]
    fixed = max(0.0, summary["nightly_excl_rebuild_s"] - summary["added"] * full_per_song)
    # ratio(M) ~ (fixed + 0.01 M c) / (M c) with c the full cost per song: <= 5 % once M >= fixed / (0.04 c)
    growth = summary["added"] / (summary["songs_total"] - summary["added"])
    needed = math.ceil(fixed / ((TARGET_RATIO - growth) * full_per_song)) if TARGET_RATIO > growth else None
    lines = [
        f"Dominant nightly stage (rebuild excluded): {dominant} ({parts[dominant]:.2f} s of "
        f"{summary['nightly_excl_rebuild_s']:.2f} s); "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])),
        f"Full run costs {full_per_song * 1000:.0f} ms per song (rebuild excluded); the nightly's work on "
        f"{summary['added']} songs is worth ~{summary['added'] * full_per_song:.2f} s of that, so ~{fixed:.1f} s "
        "of the nightly is fixed cost that does not grow with the catalogue.",
    ]
    if needed:
        lines.append(f"With that fixed cost and {growth:.0%} new songs a night, the ratio reaches "
                     f"{TARGET_RATIO:.0%} at ~{needed} songs on this machine (ratio ~ growth + fixed / full).")
    if probe:
        lines.append(
            f"Fixed costs of Ray for {int(probe['songs'])} files: ingest stage {night.get('ingest', 0):.2f} s vs "
            f"{probe['decode_tile_write_cold']:.2f} s in process (first call); embed_songs "
            f"{steps['nightly'].calls.get('embed_songs', 0):.2f} s vs "
            f"{probe['model_load'] + probe['embed_and_pool']:.2f} s in process (model load included).")
    if investigation:
        lines.append(
            f"embed_songs on the new songs alone: read + TileModel actor pool (worker start, torch import, model "
            f"load) {investigation['read_and_actor_map']:.2f} s; merge of the per-song sums in the driver "
            f"{investigation['merge_in_driver']:.2f} s")
    return lines


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("ray", "genre_batch", "pipelines", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from genre_batch.config import IndexConfig

    index_config = IndexConfig() if args.n_trees is None else IndexConfig(n_trees=args.n_trees)
    info = machine()
    print(f"{info['date']}, nproc {info['nproc']} ({info['cpu']}), commit {info['commit']}, Python {info['python']}")
    print(f"uptime before: {info['uptime']}")

    temporary = tempfile.TemporaryDirectory(prefix="nightly-bench-")
    catalogue = Path(args.catalogue).resolve() if args.catalogue else Path(temporary.name) / "catalogue"
    work = Path(args.work_dir).resolve() if args.work_dir else Path(temporary.name) / "work"
    work.mkdir(parents=True, exist_ok=True)
    root_a, root_b = work / "root-nightly", work / "root-full"
    for root in (root_a, root_b):
        if root.exists():
            shutil.rmtree(root)
    steps: dict[str, Step] = {}
    try:
        written_s = prepare_catalogue(catalogue, args.songs, args.duration, args.seed, args.source_format)
        print(f"catalogue: {args.songs} songs x {args.duration:.0f} s in {catalogue}"
              + (f" (written in {written_s:.0f} s)" if written_s else " (reused)"))
        steps["ray_init"] = timed("ray.init", ray_init)
        steps["setup"] = timed("set-up: ingest + train (1 epoch) + index",
                               lambda: setup_chain(str(catalogue), str(root_a), args, index_config))
        n_added = max(1, math.ceil(args.songs * args.add_percent / 100))
        added = add_songs(catalogue, n_added, args.duration, seed=args.seed + 1000, source_format=args.source_format)
        logger.info("added %d songs: %s", n_added, added)
        steps["nightly"] = timed("(b) nightly", lambda: nightly(str(catalogue), str(root_a), args.files_per_task,
                                                                 index_config))
        steps["nightly_again"] = timed("(b2) nightly, no change",
                                       lambda: nightly(str(catalogue), str(root_a), args.files_per_task, index_config))
        copy_published_model(str(root_a), str(root_b))
        steps["full_ingest"] = timed("(a) full ingest", lambda: full_ingest(str(catalogue), str(root_b),
                                                                            args.files_per_task))
        steps["full_index"] = timed("(a) full index", lambda: full_index(str(root_b), index_config))
        probe = None if args.no_probe else probe_in_process(str(root_a), added, catalogue, work / "probe")
        investigation = investigate_embed(str(root_a), added) if args.investigate else None
        check(steps, n_added, args.songs)
        info["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

        print()
        summary = summarise(steps, n_added, args.songs + n_added)
        tables = print_tables(steps, summary, probe)
        print()
        advice = recommendations(steps, summary, probe, investigation)
        for line in advice:
            print(f"- {line}")
        print(f"\nuptime after: {info['uptime_after']}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "machine": info, "args": vars(args), "summary": summary, "probe": probe, "investigation": investigation,
                "steps": {name: dataclasses.asdict(step) for name, step in steps.items()},
                "tables": tables, "recommendations": advice,
            }, indent=2, default=str))
    finally:
        if not args.keep:
            remove_added_songs(catalogue)
            shutil.rmtree(work / "probe", ignore_errors=True)
            for root in (root_a, root_b):
                shutil.rmtree(root, ignore_errors=True)
            temporary.cleanup()
    return 0


def check(steps: dict[str, Step], added: int, songs: int) -> None:
    """The runs did what they are meant to, or the timings mean nothing."""
    night, again = steps["nightly"].notes, steps["nightly_again"].notes
    problems = []
    if night["counts"].get("new") != added or not night["tiles_written"] or "index" not in night["published"]:
        problems.append(f"nightly: expected {added} new songs ingested and a new index, got {night}")
    if again["tiles_written"] or again["published"] or "ingest" in again["seconds"]:
        problems.append(f"second nightly: expected nothing decoded or published, got {again}")
    if steps["full_ingest"].notes["songs"] != songs + added:
        problems.append(f"full ingest: {steps['full_ingest'].notes['songs']} songs, expected {songs + added}")
    if problems:
        raise SystemExit("benchmark runs did not do what they should:\n" + "\n".join(problems))


if __name__ == "__main__":
    raise SystemExit(main(build_parser().parse_args()))
