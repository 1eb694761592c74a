"""Self-supervised pretraining against training from scratch, on the hard demo catalogue (issue #16).

    .venv/bin/python benchmarks/pretrain.py [--songs 120] [--seeds 3] [--epochs 15] [--pretrain-epochs 30]
        [--keep-share 0.1] [--work-dir DIR] [--json out.json]

1. The hard demo catalogue (``synth --difficulty hard``, curated split), ingested twice: with
   every label, and with ``--keep-share`` of the training songs' labels (at least one per
   genre; valid and test keep theirs, to choose epochs and to score).
2. Per seed: from scratch on 10 % of the labels; pretrained on every song of that root (labelled
   or not), then fine-tuned on the same 10 % (``train --init``); from scratch on 100 %. Target:
   pretraining recovers at least half of the gap between "10 % from scratch" and "100 % from
   scratch" (mean test song accuracy).
3. Similarity without labels: genre precision@10 of the test songs' neighbours in an index of the
   pretrain run (the songs' labels hidden from it, used only to score) against the index of the
   supervised model (100 %). Target: >= 0.8x.
4. Cost: pretraining tiles/s per worker on CPU, 1 worker and 2 workers (one epoch each).

Figures go into benchmarks/RESULTS.md by hand, with the machine (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def keep_some_labels(labels_csv: Path, out: Path, share: float, seed: int = 0) -> int:
    """A labels CSV with ``share`` of each genre's training songs labelled (at least one), every
    valid and test song labelled; returns how many training songs keep their label."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(labels_csv)
    rng = np.random.default_rng(seed)
    train = frame[frame["split"] == "train"]
    keep: set[int] = set()
    for _, rows in train.groupby("genre"):
        n = max(1, math.ceil(share * len(rows)))
        keep.update(rng.choice(rows.index.to_numpy(), size=n, replace=False).tolist())
    hidden = (frame["split"] == "train") & ~frame.index.isin(sorted(keep))
    frame.loc[hidden, "genre"] = None
    frame.to_csv(out, index=False)
    return len(keep)


def prepare(work: Path, songs: int, share: float) -> dict[str, Any]:
    from genre_batch.commands import write_demo_catalogue
    from pipelines.ingest import run_ingest

    marker = work / "pretrain-bench.json"
    if marker.exists():
        return json.loads(marker.read_text())
    summary = write_demo_catalogue(work / "catalogue", songs, 0, difficulty="hard")
    full, few = work / "root-100", work / "root-few"
    run_ingest(str(work / "catalogue"), str(full), labels=summary.labels_csv)
    kept = keep_some_labels(Path(summary.labels_csv), work / "labels-few.csv", share)
    run_ingest(str(work / "catalogue"), str(few), labels=str(work / "labels-few.csv"))
    info = {"full": str(full), "few": str(few), "kept_train_labels": kept}
    marker.write_text(json.dumps(info))
    return info


def test_accuracy(root: str, config: Any, run: str) -> float:
    from pipelines.train import run_train

    return float(run_train(root, config, run=run).metrics.test.song_accuracy)


def precision_of_index(root: str, model_run: str) -> float:
    from genre_batch.answers import PublishedIndex
    from pipelines.index import run_index

    run_index(root, model_run=model_run)
    return float(PublishedIndex(root).evaluate(k=10)["test"]["genre_precision_at_10"])


def mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.mean(finite) if finite else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the genre runs")
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--keep-share", type=float, default=0.1, help="share of training labels kept")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from benchmarks.machine import machine
    from genre_batch.config import TrainConfig
    from genre_batch.entry import configure_logging
    from pipelines._ray import ensure_ray
    from pipelines.pretrain import run_pretrain

    configure_logging()
    started = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gb-bench-pretrain-"))
    work.mkdir(parents=True, exist_ok=True)
    ensure_ray()
    roots = prepare(work, args.songs, args.keep_share)
    rows = []
    for seed in range(args.seeds):
        genre = TrainConfig(epochs=args.epochs, seed=seed)
        ssl = f"ssl-seed{seed}"
        run_pretrain(roots["few"], TrainConfig(epochs=args.pretrain_epochs, seed=seed), run=ssl)
        supervised = f"full-seed{seed}"
        row = {
            "seed": seed,
            "scratch_few": test_accuracy(roots["few"], genre, f"scratch-few-seed{seed}"),
            "pretrained_few": test_accuracy(roots["few"], TrainConfig(epochs=args.epochs, seed=seed, init=ssl),
                                            f"init-few-seed{seed}"),
            "scratch_full": test_accuracy(roots["full"], genre, supervised),
        }
        # The pretrain run saw the same tiles under the few-labels root; index the full root with
        # a pretrain run of its own tiles so the scored labels are all there.
        run_pretrain(roots["full"], TrainConfig(epochs=args.pretrain_epochs, seed=seed), run=ssl)
        row["precision_pretrain"] = precision_of_index(roots["full"], ssl)
        row["precision_supervised"] = precision_of_index(roots["full"], supervised)
        rows.append(row)
        print(json.dumps(row), flush=True)
    cost = {}
    for workers in (1, 2):
        report = run_pretrain(roots["full"], TrainConfig(epochs=1, num_workers=workers), run=f"cost-{workers}w")
        cost[workers] = report.history[-1]["tiles_per_s"] / 1  # per worker: each reports its own share
    few, pre, full = (mean([r[k] for r in rows]) for k in ("scratch_few", "pretrained_few", "scratch_full"))
    recovered = (pre - few) / (full - few) if full != few else float("nan")
    p_pre, p_sup = mean([r["precision_pretrain"] for r in rows]), mean([r["precision_supervised"] for r in rows])
    lines = [
        f"machine: {machine()}",
        f"catalogue: {args.songs} songs (hard); {roots['kept_train_labels']} training songs keep their label "
        f"({args.keep_share:.0%}); {args.seeds} seeds; {time.perf_counter() - started:.0f} s",
        "| seed | scratch, few labels | pretrained + few labels | scratch, all labels | precision@10 pretrain-only | "
        "precision@10 supervised |", "|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['seed']} | {r['scratch_few']:.3f} | {r['pretrained_few']:.3f} | {r['scratch_full']:.3f} | "
          f"{r['precision_pretrain']:.3f} | {r['precision_supervised']:.3f} |" for r in rows],
        f"gap recovered by pretraining: {recovered:.2f} (target >= 0.5) {'PASS' if recovered >= 0.5 else 'FAIL'}",
        f"precision@10 pretrain-only / supervised: {p_pre / p_sup:.2f} (target >= 0.8) "
        f"{'PASS' if p_pre / p_sup >= 0.8 else 'FAIL'}",
        f"pretraining tiles/s of rank 0: 1 worker {cost[1]:.0f}, 2 workers {cost[2]:.0f} each",
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cost": cost, "recovered": recovered,
                                         "precision_ratio": p_pre / p_sup}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
