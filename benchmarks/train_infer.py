"""Training and batch inference on CPU and on GPU, on the same ingested catalogue, in one run.

    .venv/bin/python benchmarks/train_infer.py [--songs 120] [--epochs 3] [--devices cpu,gpu]
                                               [--batch-size 32] [--catalogue DIR] [--json out.json]

1. A catalogue of ``--songs`` songs of ``--duration`` s (benchmarks/catalogue.py; reused when a
   directory already holds the same songs), ingested once with ``run_ingest`` (untimed here:
   benchmarks/ingest.py measures ingest).
2. ``ray.init``, timed apart.
3. Per device (``cpu`` always first: the baseline of the ratios; ``gpu`` when CUDA is there):
   ``run_train`` with one Ray Train worker (``use_gpu``) for ``--epochs`` epochs, a run of its own
   per device; then ``run_index`` with inference on that device.
4. Printed per device: median epoch seconds and training tiles/s (Ray Train's own per-epoch
   figures, first epoch left out when there are more: it pays the workers' warm-up), the whole
   ``run_train`` call (start-up, evaluation and plots included), ``run_index`` seconds and
   tiles/s over every tile; then GPU / CPU ratios of each.

On a 2-core CPU machine only the CPU rows appear; the GPU rows are the point on a lent GPU machine
(record them in benchmarks/RESULTS.md with the machine's description).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("benchmarks.train_infer")


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def device_figures(root: str, device: str, epochs: int, batch_size: int, tiles: int) -> dict[str, Any]:
    """Train one run and index with it on ``device``; the figures of both."""
    from genre_batch.config import TrainConfig
    from pipelines.index import run_index
    from pipelines.train import run_train

    on_gpu = device == "gpu"
    started = time.perf_counter()
    report = run_train(root, TrainConfig(epochs=epochs, batch_size=batch_size, use_gpu=on_gpu),
                       run=f"bench-{device}-{int(time.time())}")
    train_seconds = time.perf_counter() - started
    history = report.metrics.history
    steady = history[1:] if len(history) > 1 else history
    started = time.perf_counter()
    index = run_index(root, use_gpu=on_gpu)
    index_seconds = time.perf_counter() - started
    return {
        "device": device,
        "epochs": len(history),
        "median_epoch_s": statistics.median(h["epoch_seconds"] for h in steady),
        "train_tiles_per_s": statistics.median(h["tiles_per_s"] for h in steady),
        "run_train_s": train_seconds,
        "test_song_accuracy": report.metrics.test.song_accuracy,
        "run_index_s": index_seconds,
        "index_tiles_per_s": tiles / index_seconds,
        "index_songs": index.songs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=120, help="songs in the catalogue")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per song")
    parser.add_argument("--seed", type=int, default=0, help="catalogue seed")
    parser.add_argument("--source-format", default="mixed", help="'mixed' (the demo's) or RATExCHANNELS")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per device")
    parser.add_argument("--batch-size", type=int, default=32, help="tiles per optimiser step")
    parser.add_argument("--devices", default=None,
                        help="comma-separated, of cpu and gpu (default: cpu, and gpu when CUDA is there)")
    parser.add_argument("--catalogue", type=Path, default=None, help="catalogue directory to write or reuse")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")

    from benchmarks.catalogue import prepare_catalogue
    from benchmarks.machine import machine
    from pipelines._ray import ensure_ray
    from pipelines.ingest import run_ingest

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["gpu"] if cuda_available() else [])
    if "gpu" in devices and not cuda_available():
        raise SystemExit("--devices asks for gpu, but torch sees no CUDA device")
    info = {**machine(), "gpu": gpu_name()}
    print(f"{info['date']}, {info['nproc']} cores ({info['cpu']}), GPU {info['gpu']}, commit {info['commit']}, "
          f"Python {info['python']}")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    work = Path(tempfile.mkdtemp(prefix="gb-bench-train-"))
    catalogue = args.catalogue or work / "catalogue"
    prepare_catalogue(catalogue, args.songs, args.duration, args.seed, args.source_format)
    started = time.perf_counter()
    ensure_ray()
    ray_init_s = time.perf_counter() - started
    root = str(work / "root")
    try:
        ingest = run_ingest(str(catalogue), root)
        logger.info("ingested %d songs, %d tiles; ray.init %.1f s", ingest.songs, ingest.tiles, ray_init_s)
        rows = [device_figures(root, device, args.epochs, args.batch_size, ingest.tiles) for device in devices]
    finally:
        shutil.rmtree(work, ignore_errors=True)  # a --catalogue given lies elsewhere and stays
    print(f"\n{ingest.songs} songs, {ingest.tiles} tiles, {args.epochs} epochs, batch {args.batch_size}, "
          f"ray.init {ray_init_s:.1f} s")
    header = ("device", "median epoch s", "train tiles/s", "run_train s", "test song acc", "run_index s",
              "index tiles/s")
    print(" | ".join(header))
    for row in rows:
        accuracy = row["test_song_accuracy"]
        print(f"{row['device']} | {row['median_epoch_s']:.2f} | {row['train_tiles_per_s']:.0f} | "
              f"{row['run_train_s']:.1f} | {'n/a' if accuracy is None else f'{accuracy:.3f}'} | "
              f"{row['run_index_s']:.1f} | {row['index_tiles_per_s']:.0f}")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    by_device = {row["device"]: row for row in rows}
    if "cpu" in by_device and "gpu" in by_device:
        cpu, gpu = by_device["cpu"], by_device["gpu"]
        print(f"GPU / CPU: train tiles/s {gpu['train_tiles_per_s'] / cpu['train_tiles_per_s']:.2f}x, "
              f"epoch time {cpu['median_epoch_s'] / gpu['median_epoch_s']:.2f}x faster, "
              f"run_train {cpu['run_train_s'] / gpu['run_train_s']:.2f}x, "
              f"index tiles/s {gpu['index_tiles_per_s'] / cpu['index_tiles_per_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "songs": ingest.songs, "tiles": ingest.tiles, "epochs": args.epochs,
                                         "batch_size": args.batch_size, "ray_init_s": ray_init_s,
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
