"""Model families and training-recipe switches against the MFCC baseline of the same songs,
on the hard demo catalogue, in one run.

    .venv/bin/python benchmarks/models.py [--songs 120] [--difficulty hard] [--seeds 3] [--epochs 20]
        [--models cnn,crnn,rnn,resnet,musicnn] [--recipes none,mixup,stretch,crop,shift,...]
        [--recipe-family FAMILY] [--work-dir DIR] [--json out.json]

1. A demo catalogue of ``--songs`` songs at ``--difficulty`` (written once, reused when the work
   directory already holds it), ingested with its labels.csv (the curated artist split: every
   genre on train, valid and test).
2. ``compare`` over ``--models`` x ``--seeds`` with the default recipe: per family, valid and test
   song accuracy, mean and sd over seeds, beside the MFCC + logistic-regression baseline fitted on
   the same songs (``genre_batch.baseline``).
3. For ``--recipe-family`` (default: the family with the best mean *validation* accuracy in 2),
   each recipe switch of ``--recipes`` on alone, the same seeds: the change in mean valid and test
   song accuracy against the default recipe.
4. Verdicts: the best family's mean test accuracy minus the baseline's, in points, against the
   target (+15 on the hard demo); which switches helped on validation.

Figures go into benchmarks/RESULTS.md by hand, with the machine (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("benchmarks.models")

TARGET_POINTS = 15.0  # issue #14: the best family >= the baseline + 15 points of test song accuracy
RECIPES: dict[str, dict[str, Any]] = {
    "none": {},
    "mixup": {"mixup_alpha": 0.3},
    "stretch": {"time_stretch": 0.15},
    "crop": {"crop_frames": 192},
    "shift": {"freq_shift": 8},
    "patience": {"patience": 5},
    "ema": {"ema_decay": 0.99},
    "bandnorm": {"band_norm": True},
    # Fields of the model config (a recipe's part of ModelConfig.RECIPE_FIELDS) go under "model".
    "nodropout": {"model": {"dropout": 0.0}},
    "dropout": {"model": {"dropout": 0.5}},
    "decay": {"weight_decay": 0.05},
    "windows": {"model": {"eval_windows": 3}},
    "cropwindows": {"crop_frames": 192, "model": {"eval_windows": 3}},
}


def with_recipe(base: Any, name: str) -> Any:
    """``base`` (a TrainConfig) with the switch ``name`` of RECIPES on."""
    recipe = dict(RECIPES[name])
    model = dataclasses.replace(base.model, **recipe.pop("model", {}))
    return dataclasses.replace(base, model=model, **recipe)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=120, help="songs in the catalogue")
    parser.add_argument("--difficulty", default="hard", choices=["normal", "hard"], help="demo catalogue difficulty")
    parser.add_argument("--catalogue-seed", type=int, default=0, help="seed of the catalogue")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per family and recipe")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run")
    parser.add_argument("--batch-size", type=int, default=32, help="tiles per optimiser step")
    parser.add_argument("--models", default="cnn,crnn,rnn,resnet,musicnn", help="families compared")
    parser.add_argument("--recipes", default="none,mixup,stretch,crop,shift",
                        help=f"recipe switches tried on one family ({', '.join(RECIPES)}); 'none' alone skips step 3")
    parser.add_argument("--recipe-family", default=None, help="family for the recipe switches (default: the best)")
    parser.add_argument("--work-dir", type=Path, default=None, help="catalogue and root (default: a temporary dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    return parser.parse_args(argv)


def prepare(work: Path, args: argparse.Namespace) -> str:
    """The catalogue and a root with its published ingest; returns the root."""
    from genre_batch.commands import write_demo_catalogue
    from genre_batch.errors import NotPublishedError
    from pipelines.ingest import run_ingest

    catalogue, root = work / "catalogue", work / "root"
    marker = work / "catalogue.json"
    wanted = {"songs": args.songs, "difficulty": args.difficulty, "seed": args.catalogue_seed}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        try:
            from genre_batch.artifacts import published_ingest

            published_ingest(str(root))
            logger.info("reusing the catalogue and ingest in %s", work)
            return str(root)
        except NotPublishedError:
            pass
    summary = write_demo_catalogue(catalogue, args.songs, args.catalogue_seed, difficulty=args.difficulty)
    run_ingest(str(catalogue), str(root), labels=summary.labels_csv)
    marker.write_text(json.dumps(wanted))
    return str(root)


def mean_sd(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v == v]
    if not finite:
        return float("nan"), float("nan")
    return statistics.mean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def run_recipes(root: str, family: str, names: list[str], seeds: int, base: Any) -> dict[str, dict[str, Any]]:
    """Each switch on alone for one family: mean and sd of valid / test song accuracy over seeds."""
    from pipelines.compare import run_compare

    out = {}
    for name in names:
        config = with_recipe(base, name)
        report = run_compare(root, (family,), seeds, config).comparison
        out[name] = {split: mean_sd([getattr(row, f"{split}_song_accuracy") for row in report.rows])
                     for split in ("valid", "test")}
        out[name]["seconds"] = sum(row.seconds for row in report.rows)
        logger.info("recipe %s on %s: %s", name, family, out[name])
    return out


def report(compare: Any, recipes: dict[str, dict[str, Any]], family: str) -> list[str]:
    baseline = compare.baseline
    summary = compare.summary()
    best = max(summary, key=lambda f: summary[f]["valid_song_accuracy"][0])
    gain = 100 * (summary[best]["test_song_accuracy"][0] - baseline.test_song_accuracy)
    lines = ["", compare.table(), "",
             f"best family on validation: {best}; its mean test song accuracy minus the baseline's: "
             f"{gain:+.1f} points (target >= +{TARGET_POINTS:.0f}) {'PASS' if gain >= TARGET_POINTS else 'FAIL'}"]
    if len(recipes) > 1:
        base = recipes.get("none") or next(iter(recipes.values()))
        lines += ["", f"recipe switches on {family} (mean over seeds; change against 'none'):",
                  "| recipe | valid song acc | test song acc | valid change | test change | seconds |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, numbers in recipes.items():
            lines.append(
                f"| {name} | {numbers['valid'][0]:.3f} ± {numbers['valid'][1]:.3f} | "
                f"{numbers['test'][0]:.3f} ± {numbers['test'][1]:.3f} | "
                f"{100 * (numbers['valid'][0] - base['valid'][0]):+.1f} | {100 * (numbers['test'][0] - base['test'][0]):+.1f} | "
                f"{numbers['seconds']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    from benchmarks.machine import machine
    from genre_batch.config import TrainConfig
    from genre_batch.entry import configure_logging
    from pipelines._ray import ensure_ray
    from pipelines.compare import run_compare

    args = parse_args(argv)
    configure_logging()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gb-bench-models-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ensure_ray()
    root = prepare(work, args)
    base = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
    families = tuple(args.models.split(","))
    compare = run_compare(root, families, args.seeds, base).comparison
    summary = compare.summary()
    family = args.recipe_family or max(summary, key=lambda f: summary[f]["valid_song_accuracy"][0])
    names = [name for name in args.recipes.split(",") if name]
    recipes = run_recipes(root, family, names, args.seeds, base) if names != ["none"] else {}
    lines = report(compare, recipes, family)
    print("\n".join([f"machine: {machine()}", f"catalogue: {args.songs} songs, {args.difficulty}; "
                     f"{args.seeds} seeds x {args.epochs} epochs; {time.perf_counter() - started:.0f} s"] + lines))
    if args.json:
        args.json.write_text(json.dumps({"compare": compare.to_dict(), "recipes": recipes, "family": family,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
